/**
 * End-to-end tests of `sy daemon` through the built bin/sy, against the machine's
 * PostgreSQL (127.0.0.1:5432) and the local MariaDB: revocation on time with no command
 * run, SIGTERM/SIGINT while revoking, and two daemons racing a loop of sweeping CLI calls
 * over 200 short leases without revoking anything twice or leaving a user behind.
 */
import { makeHome, type SyHome } from '../helpers/cli.js';
import { myAdminQuery, tag } from '../helpers/db.js';
import {
  auditLines,
  createLease,
  createSecrets,
  type Daemon,
  type DaemonEvent,
  dropMyPrefix,
  dropPgPrefix,
  type IssuedLease,
  leaseStates,
  mustJson,
  myExists,
  myUsers,
  pgExists,
  pgUsers,
  type Setup,
  sleep,
  startDaemon,
  waitFor,
} from '../helpers/revocation.js';

const T = tag(4);
const PREFIX = `dm${T}_`;
const RACE_PREFIX = `dr${T}_`;
const MY_DB = `sy_dm_${T}`;

const daemons: Daemon[] = [];
const homes: SyHome[] = [];

function daemon(sy: SyHome, args: string[] = []): Daemon {
  const d = startDaemon(sy, args);
  daemons.push(d);
  return d;
}

async function home(): Promise<SyHome> {
  const sy = await makeHome();
  homes.push(sy);
  return sy;
}

/** Runs `count` jobs, `parallel` at a time. */
async function inParallel<T>(count: number, parallel: number, job: (i: number) => Promise<T>): Promise<T[]> {
  const results: T[] = new Array(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < count) {
        const i = next++;
        results[i] = await job(i);
      }
    }),
  );
  return results;
}

beforeAll(async () => {
  await myAdminQuery(`CREATE DATABASE IF NOT EXISTS \`${MY_DB}\``);
  await myAdminQuery(`CREATE TABLE IF NOT EXISTS \`${MY_DB}\`.t (id INT)`);
});

afterAll(async () => {
  for (const d of daemons) if (d.child.exitCode === null && d.child.signalCode === null) await d.stop('SIGKILL');
  await dropPgPrefix(PREFIX);
  await dropPgPrefix(RACE_PREFIX);
  await dropMyPrefix(PREFIX);
  await myAdminQuery(`DROP DATABASE IF EXISTS \`${MY_DB}\``);
  for (const sy of homes) sy.cleanup();
});

describe('one daemon', () => {
  let sy: SyHome;
  let setup: Setup;
  beforeAll(async () => {
    sy = await home();
    setup = await createSecrets(sy, { pgPrefix: PREFIX, myPrefix: PREFIX, myDatabase: MY_DB });
  });

  test('drops 2-second leases on PostgreSQL and MariaDB within 2 s of expires_at, with no command run', async () => {
    // A long interval: only the expiry itself (and the store watch) can wake the daemon on time.
    const d = daemon(sy, ['--interval', '60s']);
    await d.waitForEvent((e) => e.event === 'start');
    // Let its first pass (sweep and reaper) finish: it is then asleep with nothing due.
    await sleep(1500);
    const [pgLease, myLease] = await Promise.all([createLease(sy, setup.pgDyn, 2), createLease(sy, setup.myDyn, 2)]);

    // Poll both catalogs every 100 ms; no sy command runs meanwhile.
    const gone: Record<string, number> = {};
    const seen: Record<string, boolean> = {};
    const deadline = Date.now() + 10_000;
    while ((gone.pg === undefined || gone.my === undefined) && Date.now() < deadline) {
      const [pgThere, myThere] = await Promise.all([pgExists(pgLease.username), myExists(myLease.username)]);
      const now = Date.now();
      if (pgThere) seen.pg = true;
      else gone.pg ??= now;
      if (myThere) seen.my = true;
      else gone.my ??= now;
      await sleep(100);
    }
    expect(seen).toEqual({ pg: true, my: true });
    expect(Object.keys(gone).sort()).toEqual(['my', 'pg']);
    const lag = { pg: gone.pg - Date.parse(pgLease.expires_at), my: gone.my - Date.parse(myLease.expires_at) };
    // Not before expiry (expires_at is rounded down to the second, the real expiry is up to 1 s later)...
    expect(lag.pg).toBeGreaterThanOrEqual(0);
    expect(lag.my).toBeGreaterThanOrEqual(0);
    // ...and within 2 s of it.
    expect(lag.pg).toBeLessThan(2000);
    expect(lag.my).toBeLessThan(2000);

    const revoked = await d.waitForEvent((e) => e.event === 'revoked' && e.lease_id === myLease.lease_id);
    expect(revoked).toMatchObject({ db_user: myLease.username, state: 'revoked' });
    expect(d.events.filter((e) => e.event === 'revoked').map((e) => e.lease_id).sort()).toEqual([pgLease.lease_id, myLease.lease_id].sort());
    const states = await leaseStates(sy);
    expect([states.get(pgLease.lease_id), states.get(myLease.lease_id)]).toEqual(['revoked', 'revoked']);
    expect(auditLines(sy).filter((l) => l.action === 'sweep.revoke').map((l) => [l.lease_id, l.outcome]).sort()).toEqual(
      [[pgLease.lease_id, 'success'], [myLease.lease_id, 'success']].sort(),
    );

    // SIGINT stops it too: exit 0, `stop` logged last.
    const stopped = await d.stop('SIGINT');
    expect({ code: stopped.code, last: d.events[d.events.length - 1].event, stderr: d.stderr() }).toEqual({ code: 0, last: 'stop', stderr: '' });
    expect(stopped.ms).toBeLessThan(3000);
  });

  test('SIGTERM while revoking: exits 0 promptly, logs stop, leaves no claim behind; `dynamic sweep` finishes the rest', async () => {
    const COUNT = 30;
    let d: Daemon | undefined;
    let stopped: Promise<{ code: number | null; ms: number }> | undefined;
    // 30 leases of 2 s, created 3 at a time; the daemon starts once a third exist, so it
    // revokes while more are still being created and expiring.
    const leases = await inParallel(COUNT, 3, async (i) => {
      const lease = await createLease(sy, setup.pgDyn, 2);
      if (i === 10 && !d) {
        d = daemon(sy, ['--interval', '60s']);
        stopped = d.waitForEvent((e) => e.event === 'revoked', 20_000).then(() => d!.stop('SIGTERM'));
      }
      return lease;
    });
    const ids = leases.map((l) => l.lease_id);
    const result = await stopped!;
    expect(result.code).toBe(0);
    expect(result.ms).toBeLessThan(5000);
    const events = d!.events.map((e) => e.event);
    expect(events[0]).toBe('start');
    expect(events[events.length - 1]).toBe('stop');
    // Nothing failed but, perhaps, the reaper on a user of another store (these servers are shared
    // and never clean): such a failure names that user, never one of ours.
    const foreignReapFailure = (e: DaemonEvent) =>
      e.event === 'reap_failed' && /[a-z0-9]{10}_sy[0-9a-z]{7}/.test(JSON.stringify(e)) && !JSON.stringify(e).includes(PREFIX);
    expect(d!.events.filter((e) => !['start', 'stop', 'revoked', 'reaped'].includes(e.event) && !foreignReapFailure(e))).toEqual([]);
    const byDaemon = d!.events.filter((e) => e.event === 'revoked').map((e) => e.lease_id!);
    expect(byDaemon.length).toBeGreaterThan(0);

    // Nothing is left claimed (`revoking`) by the stopped daemon; what it logged as revoked is.
    const afterStop = await leaseStates(sy);
    const mine = ids.map((id) => afterStop.get(id));
    expect(mine.filter((s) => s !== 'revoked' && s !== 'active')).toEqual([]);
    for (const id of byDaemon) expect(afterStop.get(id)).toBe('revoked');
    for (const lease of leases.filter((l) => byDaemon.includes(l.lease_id))) expect(await pgExists(lease.username)).toBe(false);

    // Once all have expired, `sy dynamic sweep` completes what is left.
    const lastExpiry = Math.max(...leases.map((l) => Date.parse(l.expires_at)));
    const wait = lastExpiry + 1100 - Date.now();
    if (wait > 0) await sleep(wait);
    const sweep = await sy.run(['dynamic', 'sweep', '--no-reap']);
    expect({ exitCode: sweep.exitCode, stderr: sweep.stderr }).toEqual({ exitCode: 0, stderr: '' });
    const notByDaemon = mine.filter((s) => s === 'active').length;
    expect(JSON.parse(sweep.stdout)).toMatchObject({ revoked: notByDaemon, failed: 0 });
    const final = await leaseStates(sy);
    expect(ids.map((id) => final.get(id))).toEqual(ids.map(() => 'revoked'));
    for (const lease of leases) expect(await pgExists(lease.username)).toBe(false);
    // Each lease was revoked once: by the daemon or by the sweep.
    const successes = auditLines(sy).filter((l) => ids.includes(l.lease_id!) && l.outcome === 'success' && /revoke$/.test(l.action));
    expect(successes.map((l) => l.lease_id).sort()).toEqual([...ids].sort());
  });

  afterAll(async () => {
    expect(await pgUsers(PREFIX)).toEqual([]);
    expect(await myUsers(PREFIX)).toEqual([]);
  });
});

describe('two daemons and a loop of sweeping CLI calls over 200 short leases', () => {
  test('every lease is revoked exactly once and no user is left', async () => {
    const COUNT = 200;
    const sy = await home();
    const setup = await createSecrets(sy, { pgPrefix: RACE_PREFIX, myPrefix: RACE_PREFIX, myDatabase: MY_DB });
    const d1 = daemon(sy);
    const d2 = daemon(sy);
    await Promise.all([d1.waitForEvent((e) => e.event === 'start'), d2.waitForEvent((e) => e.event === 'start')]);

    // A loop of `lease list` with the sweep on, all the while.
    let looping = true;
    const loopResults: { exitCode: number; stderr: string }[] = [];
    const loop = (async () => {
      while (looping) loopResults.push(await sy.run(['dynamic', 'lease', 'list'], { env: { SY_NO_SWEEP: undefined } }));
    })();

    const started = Date.now();
    let leases: IssuedLease[];
    try {
      // TTLs of 2, 3 and 4 s, created 4 at a time: expiries are spread over the whole run.
      leases = await inParallel(COUNT, 4, (i) => createLease(sy, setup.pgDyn, 2 + (i % 3)));
      const createdIn = Date.now() - started;
      // All expired and processed: no live lease left in the ledger.
      await waitFor('every lease to be revoked', async () => (await mustJson<{ data: unknown[] }>(sy, ['dynamic', 'lease', 'list'])).data.length === 0, 30_000, 500);
      console.log(`200 leases created in ${createdIn} ms; all revoked ${Date.now() - started} ms after the first; ${loopResults.length} CLI sweeps ran`);
    } finally {
      looping = false;
      await loop;
    }
    const [s1, s2] = await Promise.all([d1.stop(), d2.stop()]);
    expect([s1.code, s2.code]).toEqual([0, 0]);
    expect([d1.stderr(), d2.stderr()]).toEqual(['', '']);

    const ids = leases.map((l) => l.lease_id);
    expect(new Set(ids).size).toBe(COUNT);
    // The CLI calls all succeeded, without a notice (the target never failed).
    expect(loopResults.filter((r) => r.exitCode !== 0 || r.stderr !== '')).toEqual([]);

    // Every lease id appears in exactly one successful revocation line; no revocation failed.
    const lines = auditLines(sy);
    const revocations = lines.filter((l) => l.action === 'sweep.revoke' || l.action === 'lease.revoke');
    expect(revocations.filter((l) => l.outcome !== 'success')).toEqual([]);
    const count = new Map<string, number>();
    for (const l of revocations) count.set(l.lease_id!, (count.get(l.lease_id!) ?? 0) + 1);
    expect(ids.filter((id) => count.get(id) !== 1)).toEqual([]);
    expect(count.size).toBe(COUNT);

    // The two daemons never logged the same lease; neither logged a failure.
    const by1 = new Set(d1.events.filter((e) => e.event === 'revoked').map((e) => e.lease_id));
    const by2 = new Set(d2.events.filter((e) => e.event === 'revoked').map((e) => e.lease_id));
    expect([...by1].filter((id) => by2.has(id))).toEqual([]);
    expect([...d1.events, ...d2.events].filter((e) => e.event === 'revoke_failed')).toEqual([]);

    const states = await leaseStates(sy);
    expect(ids.filter((id) => states.get(id) !== 'revoked')).toEqual([]);
    expect(await pgUsers(RACE_PREFIX)).toEqual([]);
    // The audit chain survived the concurrent appenders.
    const verify = await sy.run(['audit', 'verify']);
    expect({ exitCode: verify.exitCode, stderr: verify.stderr }).toEqual({ exitCode: 0, stderr: '' });
    console.log(`revoked by daemon 1: ${by1.size}, daemon 2: ${by2.size}, CLI sweeps: ${COUNT - by1.size - by2.size}`);
  });
});
