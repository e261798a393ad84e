/**
 * End-to-end tests of revocation on expiry through the built bin/sy, against the machine's
 * PostgreSQL (127.0.0.1:5432) and the local MariaDB: the sweep that runs before every
 * command (and the switches that turn it off), a target that is down when its leases
 * expire (notice, `failed`, backoff, recovery), a target that hangs, and the road to
 * `irrevocable` and `revoke --force`.
 */
import { makeHome, type SyHome } from '../helpers/cli.js';
import { startProxy, type Proxy } from '../helpers/proxy.js';
import { myAdminQuery, tag } from '../helpers/db.js';
import {
  auditLines,
  changeLease,
  createLease,
  createSecrets,
  dropMyPrefix,
  dropPgPrefix,
  ledger,
  leaseStates,
  mustJson,
  myExists,
  myUsers,
  pgExists,
  pgUsers,
  type Setup,
  sleep,
} from '../helpers/revocation.js';

const T = tag(4);
const PG_PREFIX = `rv${T}_`;
const MY_PREFIX = `rv${T}_`;
const MY_DB = `sy_rv_${T}`;
const SWEEP_ON = { SY_NO_SWEEP: '0' };

let sy: SyHome;
/** Forwarders to the real servers: a target that goes away at the address sealed with its leases. */
const proxies: Proxy[] = [];
async function proxy(port: number): Promise<Proxy> {
  const p = await startProxy(port);
  proxies.push(p);
  return p;
}

/** Milliseconds until `iso` (a lease's expires_at, whole seconds) is past by `marginMs`. */
async function waitPast(iso: string, marginMs = 1000): Promise<void> {
  const wait = Date.parse(iso) + marginMs - Date.now();
  if (wait > 0) await sleep(wait);
}

const stderrLines = (stderr: string): string[] => stderr.split('\n').filter((l) => l.trim() !== '');

beforeAll(async () => {
  await myAdminQuery(`CREATE DATABASE IF NOT EXISTS \`${MY_DB}\``);
  await myAdminQuery(`CREATE TABLE IF NOT EXISTS \`${MY_DB}\`.t (id INT)`);
  sy = await makeHome();
});

afterAll(async () => {
  for (const p of proxies) await p.close();
  await dropPgPrefix(PG_PREFIX);
  await dropMyPrefix(MY_PREFIX);
  await myAdminQuery(`DROP DATABASE IF EXISTS \`${MY_DB}\``);
  sy?.cleanup();
});

describe('the sweep before each command', () => {
  let setup: Setup;
  beforeAll(async () => {
    setup = await createSecrets(sy, { pgPrefix: PG_PREFIX, myPrefix: MY_PREFIX, myDatabase: MY_DB, suffix: '1', pool: 'p1' });
  });
  afterEach(async () => {
    await sy.run(['dynamic', 'sweep', '--pool', 'p1', '--no-reap']);
  });

  /** A 2-second lease on each server, 3 s old (expired) when this returns. */
  async function expiredPair() {
    const [pgLease, myLease] = await Promise.all([createLease(sy, setup.pgDyn, 2), createLease(sy, setup.myDyn, 2)]);
    expect(await pgExists(pgLease.username)).toBe(true);
    expect(await myExists(myLease.username)).toBe(true);
    // expires_at is in whole seconds: wait past it + 1 s.
    await waitPast(pgLease.expires_at > myLease.expires_at ? pgLease.expires_at : myLease.expires_at, 1000);
    return { pgLease, myLease };
  }

  test('an unrelated command with sweeping on drops expired 2-second leases on PostgreSQL and MariaDB', async () => {
    const { pgLease, myLease } = await expiredPair();
    const on = await sy.run(['secret', 'search', '--query', 'db'], { env: { SY_NO_SWEEP: undefined } });
    expect({ exitCode: on.exitCode, stderr: on.stderr }).toEqual({ exitCode: 0, stderr: '' });
    expect(JSON.parse(on.stdout).data.map((s: { path: string }) => s.path)).toContain(setup.pgDyn);
    expect(await pgExists(pgLease.username)).toBe(false);
    expect(await myExists(myLease.username)).toBe(false);
    const after = await leaseStates(sy);
    expect([after.get(pgLease.lease_id), after.get(myLease.lease_id)]).toEqual(['revoked', 'revoked']);
    const revocations = auditLines(sy).filter((l) => l.action === 'sweep.revoke' && (l.lease_id === pgLease.lease_id || l.lease_id === myLease.lease_id));
    expect(revocations.map((l) => [l.lease_id, l.outcome]).sort()).toEqual(
      [[pgLease.lease_id, 'success'], [myLease.lease_id, 'success']].sort(),
    );
  });

  test('SY_NO_SWEEP=0 sweeps too', async () => {
    const { pgLease, myLease } = await expiredPair();
    const on = await sy.run(['dynamic', 'lease', 'list'], { env: SWEEP_ON });
    expect(on.exitCode).toBe(0);
    expect(JSON.parse(on.stdout).data.map((l: { lease_id: string }) => l.lease_id)).not.toContain(pgLease.lease_id);
    expect(await pgExists(pgLease.username)).toBe(false);
    expect(await myExists(myLease.username)).toBe(false);
  });

  test('SY_NO_SWEEP=1 leaves them', async () => {
    const { pgLease, myLease } = await expiredPair();
    const off = await sy.run(['secret', 'search', '--query', 'db'], { env: { SY_NO_SWEEP: '1' } });
    expect(off.exitCode).toBe(0);
    expect(await pgExists(pgLease.username)).toBe(true);
    expect(await myExists(myLease.username)).toBe(true);
    const states = await leaseStates(sy);
    expect([states.get(pgLease.lease_id), states.get(myLease.lease_id)]).toEqual(['active', 'active']);
  });

  test.each([
    ['before the command', ['--no-sweep', 'secret', 'search', '--query', 'db']],
    ['after the command', ['secret', 'search', '--query', 'db', '--no-sweep']],
    ['after the command (lease list)', ['dynamic', 'lease', 'list', '--no-sweep']],
  ])('--no-sweep %s leaves them', async (_where, args) => {
    const { pgLease, myLease } = await expiredPair();
    const off = await sy.run(args, { env: { SY_NO_SWEEP: undefined } });
    expect(off.exitCode).toBe(0);
    expect(await pgExists(pgLease.username)).toBe(true);
    expect(await myExists(myLease.username)).toBe(true);
  });
});

describe('a target that is down when its leases expire', () => {
  let setup: Setup;
  let pgProxy: Proxy;
  let myProxy: Proxy;
  beforeAll(async () => {
    pgProxy = await proxy(5432);
    myProxy = await proxy(3306);
    setup = await createSecrets(sy, { pgPrefix: PG_PREFIX, myPrefix: MY_PREFIX, myDatabase: MY_DB, suffix: '2', pool: 'p2', pgPort: pgProxy.port, myPort: myProxy.port });
  });

  test('the command still succeeds quickly with one notice, the leases are kept as failed, and a later sweep drops them', async () => {
    const pgLease = await createLease(sy, setup.pgDyn, 2);
    const myLease = await createLease(sy, setup.myDyn, 2);
    // The servers "go away" at the address sealed with the leases.
    await pgProxy.down();
    await myProxy.down();
    await waitPast(myLease.expires_at, 1000);

    const started = Date.now();
    const result = await sy.run(['secret', 'describe', setup.pgDyn], { env: { SY_NO_SWEEP: undefined } });
    const failedAt = Date.now();
    const wall = failedAt - started;
    expect(result.exitCode).toBe(0);
    expect(JSON.parse(result.stdout).path).toBe(setup.pgDyn);
    expect(wall).toBeLessThan(3000);
    const lines = stderrLines(result.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/2 expired leases could not be revoked yet .*refused.*retrying later/i);

    // Kept, as failed, and the users are still there.
    const states = await leaseStates(sy);
    expect([states.get(pgLease.lease_id), states.get(myLease.lease_id)]).toEqual(['failed', 'failed']);
    expect(await pgExists(pgLease.username)).toBe(true);
    expect(await myExists(myLease.username)).toBe(true);
    const lookup = await mustJson(sy, ['dynamic', 'lease', 'lookup', pgLease.lease_id]);
    expect(lookup).toMatchObject({ state: 'failed', attempts: 1, last_error: expect.stringMatching(new RegExp(`127\\.0\\.0\\.1:${pgProxy.port}\\b.*refused`)) });

    // The servers come back. Within the 5 s backoff nothing is retried.
    await pgProxy.up();
    await myProxy.up();
    const early = await mustJson(sy, ['dynamic', 'sweep', '--no-reap', '--pool', 'p2']);
    if (Date.now() - started < 4500) {
      expect(early).toMatchObject({ revoked: 0, failed: 0 });
      expect(await pgExists(pgLease.username)).toBe(true);
    }

    // Past the backoff, `sy dynamic sweep` drops both users.
    const wait = started + 5500 - Date.now();
    if (wait > 0) await sleep(wait);
    const late = await sy.run(['dynamic', 'sweep', '--no-reap', '--pool', 'p2']);
    expect({ exitCode: late.exitCode, stderr: late.stderr }).toEqual({ exitCode: 0, stderr: '' });
    expect(JSON.parse(late.stdout)).toMatchObject({ revoked: 2 - (early.revoked ?? 0), failed: 0, errors: [] });
    expect(await pgExists(pgLease.username)).toBe(false);
    expect(await myExists(myLease.username)).toBe(false);
    const ended = await leaseStates(sy);
    expect([ended.get(pgLease.lease_id), ended.get(myLease.lease_id)]).toEqual(['revoked', 'revoked']);

    // The audit log tells the story: one failure (attempt 1), then one success, per lease.
    for (const lease of [pgLease, myLease]) {
      const story = auditLines(sy)
        .filter((l) => l.lease_id === lease.lease_id && l.action === 'sweep.revoke')
        .map((l) => [l.outcome, l.detail?.attempts ?? null]);
      expect(story).toEqual([['failure', 1], ['success', null]]);
    }
  });

  test('targets that accept connections but never answer cost the command at most about the sweep budget', async () => {
    // Five silent "servers": TCP accepted, not a byte sent back. Each costs a 1 s connect timeout.
    const silent: Proxy[] = [];
    const leases = [];
    for (let i = 0; i < 5; i++) {
      const p = await proxy(5432);
      silent.push(p);
      const s = await createSecrets(sy, { pgPrefix: PG_PREFIX, myPrefix: MY_PREFIX, myDatabase: MY_DB, suffix: `hang${i}`, pool: 'phang', pgPort: p.port });
      leases.push(await createLease(sy, s.pgDyn, 2));
    }
    try {
      for (const p of silent) await p.silent();
      await waitPast(leases[leases.length - 1].expires_at, 1000);
      const started = Date.now();
      const result = await sy.run(['secret', 'search', '--query', 'hang'], { env: { SY_NO_SWEEP: undefined } });
      const wall = Date.now() - started;
      expect(result.exitCode).toBe(0);
      expect(stderrLines(result.stderr)).toHaveLength(1);
      expect(result.stderr).toMatch(/could not be revoked yet/);
      // Budget 1.5 s, plus at most one 1 s connect timeout in flight, plus process start: under 3 s
      // however many targets hang.
      expect(wall).toBeLessThan(3000);
    } finally {
      // The silent targets "come back"; the final test lets the sweep drop their users.
      for (const p of silent) await p.up();
    }
  });
});

describe('a revocation that keeps failing', () => {
  let setup: Setup;
  let pgProxy: Proxy;
  beforeAll(async () => {
    pgProxy = await proxy(5432);
    setup = await createSecrets(sy, { pgPrefix: PG_PREFIX, myPrefix: MY_PREFIX, myDatabase: MY_DB, suffix: '3', pool: 'p3', pgPort: pgProxy.port });
  });

  test('is retried with backoff, becomes irrevocable after 8 attempts, and revoke --force forgets it', async () => {
    const lease = await createLease(sy, setup.pgDyn, 2);
    await pgProxy.down();
    await waitPast(lease.expires_at, 1000);

    // Attempt 1 fails: exit 1, the report says so, the lease is `failed` with attempts 1.
    const before = Date.now();
    const first = await sy.run(['dynamic', 'sweep', '--no-reap', '--pool', 'p3']);
    expect(first.exitCode).toBe(1);
    expect(first.stderr).toMatch(/revocation.* failed/);
    expect(JSON.parse(first.stdout)).toMatchObject({ revoked: 0, failed: 1, irrevocable: 0, errors: [{ lease_id: lease.lease_id }] });
    expect(await mustJson(sy, ['dynamic', 'lease', 'lookup', lease.lease_id])).toMatchObject({ state: 'failed', attempts: 1, last_error: expect.stringMatching(/refused/) });
    // The next attempt is 5 s later (lookup does not show it; the ledger does).
    const next = await ledger(sy, (db) => (db.prepare('SELECT next_attempt_at AS t FROM leases WHERE id = ?').get(lease.lease_id) as { t: number }).t);
    expect(next - before).toBeGreaterThanOrEqual(5000);
    expect(next - Date.now()).toBeLessThanOrEqual(5000);

    // An immediate second sweep does not retry it.
    const second = await sy.run(['dynamic', 'sweep', '--no-reap', '--pool', 'p3']);
    expect(second.exitCode).toBe(0);
    expect(JSON.parse(second.stdout)).toMatchObject({ revoked: 0, failed: 0 });
    expect(await mustJson(sy, ['dynamic', 'lease', 'lookup', lease.lease_id])).toMatchObject({ state: 'failed', attempts: 1 });

    // Seven attempts have failed (set in the ledger instead of waiting 5+10+...+320 s) and the next is due.
    changeLease(sy, lease.lease_id, 'failed', { attempts: 7, nextAttemptAt: Date.now() - 1000 });
    const eighth = await sy.run(['dynamic', 'sweep', '--no-reap', '--pool', 'p3']);
    expect(eighth.exitCode).toBe(1);
    expect(JSON.parse(eighth.stdout)).toMatchObject({ revoked: 0, failed: 1, irrevocable: 1, irrevocable_total: 1 });
    const listed = await mustJson<{ data: { lease_id: string; state: string }[] }>(sy, ['dynamic', 'lease', 'list']);
    expect(listed.data.find((l) => l.lease_id === lease.lease_id)?.state).toBe('irrevocable');
    expect(await mustJson(sy, ['dynamic', 'lease', 'lookup', lease.lease_id])).toMatchObject({ state: 'irrevocable', attempts: 8 });
    const retry = await ledger(sy, (db) => (db.prepare('SELECT next_attempt_at AS t FROM leases WHERE id = ?').get(lease.lease_id) as { t: number }).t);
    expect(retry - Date.now()).toBeGreaterThan(5.9 * 3600_000);
    const failures = auditLines(sy).filter((l) => l.lease_id === lease.lease_id && l.action === 'sweep.revoke');
    expect(failures.map((l) => [l.outcome, l.detail?.attempts, l.detail?.state])).toEqual([
      ['failure', 1, 'failed'],
      ['failure', 8, 'irrevocable'],
    ]);
    // A later sweep still counts it in irrevocable_total, without retrying it.
    const later = await sy.run(['dynamic', 'sweep', '--no-reap', '--pool', 'p3']);
    expect(later.exitCode).toBe(0);
    expect(JSON.parse(later.stdout)).toMatchObject({ revoked: 0, failed: 0, irrevocable_total: 1 });

    // Without --force, revoke fails (exit 1) and keeps the lease.
    const plain = await sy.run(['dynamic', 'lease', 'revoke', lease.lease_id]);
    expect(plain.exitCode).toBe(1);
    expect(plain.stderr).toMatch(/Could not revoke lease/);

    // revoke --force: exit 0, a warning that the user may remain, state forgotten.
    const forced = await sy.run(['dynamic', 'lease', 'revoke', lease.lease_id, '--force', '--yes']);
    expect(forced.exitCode).toBe(0);
    expect(forced.stderr).toMatch(/warning: .*Forgot lease .*may remain/);
    expect(JSON.parse(forced.stdout)).toMatchObject({ lease_id: lease.lease_id, state: 'forgotten' });
    expect((await leaseStates(sy)).get(lease.lease_id)).toBe('forgotten');
    const active = await mustJson<{ data: { lease_id: string }[] }>(sy, ['dynamic', 'lease', 'list']);
    expect(active.data.map((l) => l.lease_id)).not.toContain(lease.lease_id);
    const swept = await sy.run(['dynamic', 'sweep', '--no-reap', '--pool', 'p3']);
    expect(JSON.parse(swept.stdout)).toMatchObject({ failed: 0, irrevocable_total: 0 });
    // Forgotten, not dropped: the user is still on the target (afterAll drops it).
    expect(await pgExists(lease.username)).toBe(true);
    expect(auditLines(sy).filter((l) => l.lease_id === lease.lease_id).pop()).toMatchObject({
      action: 'lease.revoke',
      outcome: 'failure',
      error: expect.stringMatching(/forgotten with --force/),
    });
  });
});

test('nothing with this file\'s prefix is left on the targets but the forgotten user', async () => {
  // The leases of the silent targets wait for their backoff (5 s) before the retry that drops them.
  const deadline = Date.now() + 15_000;
  let states = await leaseStates(sy);
  while ([...states.values()].some((s) => s !== 'revoked' && s !== 'forgotten') && Date.now() < deadline) {
    await sleep(1000);
    await sy.run(['dynamic', 'sweep', '--no-reap']);
    states = await leaseStates(sy);
  }
  const forgotten = [...states.values()].filter((s) => s === 'forgotten').length;
  expect([...states.values()].filter((s) => s !== 'revoked' && s !== 'forgotten')).toEqual([]);
  expect((await pgUsers(PG_PREFIX)).length + (await myUsers(MY_PREFIX)).length).toBe(forgotten);
});
