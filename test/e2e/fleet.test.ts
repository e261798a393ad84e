/**
 * A fleet on one ledger, end to end through the built bin/sy: three daemons of one pool and
 * two CLI machines issuing 300 short leases (PostgreSQL on 127.0.0.1:5432 and the local
 * MariaDB, alternately) on a shared store in a throwaway PostgreSQL cluster of its own, so
 * that it can be restarted. Mid-run one daemon is SIGKILLed and, later, the store's server
 * is restarted. Afterwards, from the store's own tables and audit log:
 * - every lease is ended, and each one that was issued was revoked exactly once (one
 *   successful revocation line in the audit log per lease id);
 * - within 2 s of its expiry (the ledger's, to the millisecond), except where the run
 *   explicitly allows more: leases the killed daemon had claimed (taken over when its claim
 *   ran out), leases due while the store was down (after it is back, plus a reconnect), and
 *   claims caught in flight by the restart (taken over when they ran out);
 * - creates failed only while the store was down, and no user is left on either target;
 * - the surviving daemons logged the outage in one line each, and never exited.
 * The CLIs run without the pre-command sweep, so that on-time revocation is the daemons'.
 */
import pg from 'pg';
import { freshKey } from '../helpers/cli.js';
import { localPgQuery, myAdminQuery, tag } from '../helpers/db.js';
import { auditLog, cleanupMachines, machine, revocationsByLease } from '../helpers/fleet.js';
import { type PgCluster, restartCluster, startCluster, stopCluster } from '../helpers/pg-cluster.js';
import { type Daemon, createSecrets, dropMyPrefix, dropPgPrefix, myUsers, pgUsers, sleep, startDaemon, waitFor } from '../helpers/revocation.js';
import { DAEMON_CLAIM_MS } from '../../src/daemon/loop.js';

const T = tag(4);
const PREFIX = `fl${T}_`;
const MY_DB = `sy_fleet_${T}`;
/** The PostgreSQL target's own database: one table to grant on, whatever else the server holds. */
const PG_DB = `sy_fleet_${T}`;
const POOL = `fleet${T}`;
const KEY = freshKey();
const LEASES = 300;
/** Creates in flight at once, per CLI machine. */
const PARALLEL = 3;
/** The daemons' slowest reconnect after the store is back: the backoff's cap, and a pass. */
const RECONNECT_MS = 3000;
const ON_TIME_MS = 2000;

let cluster: PgCluster;
let storeUrl: string;
const daemons: Daemon[] = [];

async function storeQuery<R extends pg.QueryResultRow = any>(sql: string, params: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ host: '127.0.0.1', port: cluster.port, user: 'postgres', password: cluster.password, database: 'postgres', connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query<R>(sql, params)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}

beforeAll(async () => {
  await myAdminQuery(`CREATE DATABASE IF NOT EXISTS \`${MY_DB}\``);
  await myAdminQuery(`CREATE TABLE IF NOT EXISTS \`${MY_DB}\`.t (id INT)`);
  await localPgQuery(`CREATE DATABASE ${pg.escapeIdentifier(PG_DB)}`);
  await localPgQuery('CREATE TABLE public.t (id int)', [], PG_DB);
  cluster = await startCluster();
  storeUrl = `postgresql://postgres:${encodeURIComponent(cluster.password)}@127.0.0.1:${cluster.port}/postgres?sslmode=disable`;
});

afterAll(async () => {
  for (const d of daemons) if (d.child.exitCode === null && d.child.signalCode === null) await d.stop('SIGKILL');
  // The target database first: its grants would keep a leftover role from being dropped.
  await localPgQuery(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(PG_DB)} WITH (FORCE)`);
  await dropPgPrefix(PREFIX);
  await dropMyPrefix(PREFIX);
  await myAdminQuery(`DROP DATABASE IF EXISTS \`${MY_DB}\``);
  if (cluster) stopCluster(cluster.dir);
  cleanupMachines();
});

interface Attempt {
  startedAt: number;
  endedAt: number;
  exitCode: number;
  stderr: string;
  lease?: { lease_id: string; username: string };
}

test('three daemons and two CLIs over 300 leases: a daemon SIGKILLed and the store restarted mid-run; each lease revoked once and on time', async () => {
  const laptop = machine(storeUrl, KEY, 'laptop', { SY_NO_SWEEP: '1' });
  expect((await laptop.run(['init'])).exitCode).toBe(0);
  await createSecrets(laptop, { pgPrefix: PREFIX, myPrefix: PREFIX, myDatabase: MY_DB, pool: POOL, ttl: 2, pgDatabase: PG_DB, pgWhere: 'public.*' });

  for (let i = 1; i <= 3; i++) daemons.push(startDaemon(machine(storeUrl, KEY, `daemon-${i}`), ['--pool', POOL]));
  await Promise.all(daemons.map((d) => d.waitForEvent((e) => e.event === 'start')));
  await waitFor('three daemons in the pool', async () =>
    ((await laptop.json<{ data: { pool: string; daemons: unknown[] }[] }>(['pool', 'list'])).data.find((p) => p.pool === POOL)?.daemons.length ?? 0) === 3, 20_000, 250);
  const [, victim] = daemons;

  const clis = [machine(storeUrl, KEY, 'cli-a', { SY_NO_SWEEP: '1' }), machine(storeUrl, KEY, 'cli-b', { SY_NO_SWEEP: '1' })];
  const attempts: Attempt[] = [];
  let next = 0;
  let killedAt = 0;
  let killedClaims: { id: string; claimed_until: number }[] = [];
  let restart: { stoppedAt: number; startedAt: number; calledAt: number } | undefined;
  let stranded: { id: string; claimed_until: number }[] = [];
  const events: Promise<void>[] = [];

  const worker = async (cli: (typeof clis)[number]) => {
    while (next < LEASES) {
      const i = next++;
      if (i === Math.floor(LEASES / 3)) {
        events.push((async () => {
          await victim.stop('SIGKILL');
          killedAt = Date.now();
          // What it held when it died: taken over only once these claims run out.
          killedClaims = await storeQuery("SELECT id, claimed_until FROM sy.leases WHERE state = 'revoking' AND claimant LIKE $1", [`${victim.child.pid}:%`]);
        })());
      }
      if (i === Math.floor((2 * LEASES) / 3)) {
        events.push((async () => {
          const calledAt = Date.now();
          const { stoppedAt, startedAt } = await restartCluster(cluster.dir, 1000);
          restart = { calledAt, stoppedAt, startedAt };
          // Claims made before the stop end before startedAt + a claim; claims made since, after it.
          stranded = await storeQuery("SELECT id, claimed_until FROM sy.leases WHERE state = 'revoking' AND claimed_until < $1", [startedAt + DAEMON_CLAIM_MS]);
        })());
      }
      const engine = i % 2 === 0 ? 'db:postgresql:dyn' : 'db:mariadb:dyn';
      const startedAt = Date.now();
      const result = await cli.run(['dynamic', 'lease', 'create', '--path', engine, '--ttl', String(2 + (i % 4))]);
      const attempt: Attempt = { startedAt, endedAt: Date.now(), exitCode: result.exitCode, stderr: result.stderr };
      if (result.exitCode === 0) attempt.lease = JSON.parse(result.stdout);
      attempts.push(attempt);
    }
  };
  const runStarted = Date.now();
  await Promise.all(clis.flatMap((cli) => Array.from({ length: PARALLEL }, () => worker(cli))));
  await Promise.all(events);
  const createdIn = Date.now() - runStarted;

  // Everything in the ledger ends, the stranded claims last of all.
  await waitFor('every lease to end', async () =>
    (await storeQuery("SELECT count(*)::int AS n FROM sy.leases WHERE state NOT IN ('revoked', 'forgotten')"))[0].n === 0, 60_000, 500);
  const survivors = daemons.filter((d) => d !== victim);
  const stops = await Promise.all(survivors.map((d) => d.stop('SIGTERM')));
  console.log(`${LEASES} creates in ${createdIn} ms; all ended ${Date.now() - runStarted} ms after the start; `
    + `${killedClaims.length} claims of the killed daemon, ${stranded.length} claims caught by the restart`);

  // The survivors never exited on their own, and said the outage once each. A revocation
  // settled just before the store stopped may find it gone for its audit line: that line is
  // lost with a warning (README, Audit log), and nothing else is said on stderr.
  expect(stops.map((s) => s.code)).toEqual([0, 0]);
  const auditLost = /^sy: warning: could not write the audit log \(the store database did not answer\)\.$/;
  expect(survivors.map((d) => d.stderr().split('\n').filter((line) => line !== '' && !auditLost.test(line)))).toEqual([[], []]);
  for (const d of survivors) {
    const kinds = d.events.map((e) => e.event);
    expect(kinds.filter((k) => k === 'store_unreachable').length).toBeLessThanOrEqual(1);
    expect(kinds.filter((k) => k === 'store_reconnected').length).toBe(kinds.filter((k) => k === 'store_unreachable').length);
    expect(kinds.filter((k) => !['start', 'stop', 'revoked', 'reaped', 'store_unreachable', 'store_reconnected'].includes(k))).toEqual([]);
  }

  // Creates failed only around the restart, saying the store could not be reached.
  expect(restart).toBeDefined();
  const { calledAt, startedAt: backAt } = restart!;
  const failedCreates = attempts.filter((a) => a.exitCode !== 0);
  for (const a of failedCreates) {
    expect({ exitCode: a.exitCode, during: a.endedAt >= calledAt && a.startedAt <= backAt + RECONNECT_MS }).toEqual({ exitCode: 1, during: true });
    expect(a.stderr).toMatch(/store/);
  }
  const issued = attempts.filter((a) => a.lease).map((a) => a.lease!);
  expect(issued.length).toBeGreaterThan(LEASES / 2);

  // Exactly once, counted in the store's audit log; every lease in the ledger ended as revoked.
  const ledger = await storeQuery<{ id: string; state: string; expires_at: number }>('SELECT id, state, expires_at::float8 AS expires_at FROM sy.leases');
  expect(ledger.filter((l) => l.state !== 'revoked')).toEqual([]);
  const revocations = revocationsByLease(await auditLog(laptop));
  expect([...revocations].filter(([, lines]) => lines.length > 1).map(([id]) => id)).toEqual([]);
  expect(issued.filter((l) => revocations.get(l.lease_id)?.length !== 1).map((l) => l.lease_id)).toEqual([]);

  // On time, except where the run explicitly allows more.
  const expiry = new Map(ledger.map((l) => [l.id, Number(l.expires_at)]));
  const claimEnd = new Map([...killedClaims, ...stranded].map((c) => [c.id, Number(c.claimed_until)]));
  const late: string[] = [];
  for (const lease of issued) {
    const expires = expiry.get(lease.lease_id)!;
    const revokedAt = Date.parse(revocations.get(lease.lease_id)![0].time);
    let allowed = expires + ON_TIME_MS;
    if (claimEnd.has(lease.lease_id)) allowed = Math.max(allowed, claimEnd.get(lease.lease_id)! + ON_TIME_MS);
    if (expires >= calledAt - ON_TIME_MS && expires <= backAt + RECONNECT_MS) allowed = Math.max(allowed, backAt + RECONNECT_MS + ON_TIME_MS);
    if (revokedAt < expires || revokedAt > allowed) late.push(`${lease.lease_id}: ${revokedAt - expires} ms after expiry`);
  }
  expect(late).toEqual([]);
  expect(killedAt).toBeGreaterThan(0);

  // Nothing left on either target; one chain, whoever appended.
  expect(await pgUsers(PREFIX)).toEqual([]);
  expect(await myUsers(PREFIX)).toEqual([]);
  const verify = await laptop.run(['audit', 'verify']);
  expect({ exitCode: verify.exitCode, stderr: verify.stderr }).toEqual({ exitCode: 0, stderr: '' });
}, 180_000);
