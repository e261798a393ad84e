/**
 * End-to-end tests of the orphan reaper through the built bin/sy, against the machine's
 * PostgreSQL (127.0.0.1:5432) and the local MariaDB: after the whole store is lost, a new
 * store with the same base secrets drops the old users once they are past the bound in
 * their names, and leaves alone the users its ledger still holds, users whose bound is in
 * the future, and users that are not sy's.
 *
 * These servers are shared and never clean: other stores leave users named as sy names them,
 * past their bound (which this store's reaper drops too, and counts) or not, and some of them
 * may not be droppable. The tests assert on the users they created (PREFIX) and on what the
 * product must say whatever else is there, never on a count for the whole server.
 */
import { rmSync } from 'node:fs';
import { makeHome, type SyHome } from '../helpers/cli.js';
import { myAdminQuery, tag } from '../helpers/db.js';
import {
  auditLines,
  createLease,
  createSecrets,
  dropMyPrefix,
  dropPgPrefix,
  type IssuedLease,
  leaseStates,
  mustJson,
  myCreateUser,
  myExists,
  myUsers,
  pgCreateRole,
  pgExists,
  pgUsers,
  type Setup,
  sleep,
  startDaemon,
  syLookingName,
} from '../helpers/revocation.js';

const T = tag(4);
const PREFIX = `rp${T}_`;
const MY_DB = `sy_rp_${T}`;
/** The reap-after bound of a user whose lease was created at `createdAt` with maxTtl 4: + 4 s + 10 s grace. */
const boundOf = (lease: IssuedLease): number => {
  const match = /_sy([0-9a-z]{7})$/.exec(lease.username);
  return parseInt(match![1], 36) * 1000;
};

let sy: SyHome;

/** The two machine servers the base secrets point at (as sy labels them: host:port/database). */
const REACHABLE = /^127\.0\.0\.1:(5432|3306)\//;

interface ReapError {
  target: string;
  db_user?: string;
  error: string;
  unreachable: boolean;
}

interface SweepRun {
  exitCode: number;
  stderr: string;
  report: any;
}

/**
 * `sy dynamic sweep` with the reaper on. Its report is printed even when the sweep fails, and
 * whatever other users the shared servers hold, no reap error is about one of this test's users.
 */
async function sweepShared(args: string[] = []): Promise<SweepRun> {
  const result = await sy.run(['dynamic', 'sweep', ...args]);
  let report;
  try {
    report = JSON.parse(result.stdout);
  } catch {
    throw new Error(`sy dynamic sweep printed no report (exit ${result.exitCode}): ${result.stderr}`);
  }
  expect((report.reap_errors as ReapError[]).filter((e) => JSON.stringify(e).includes(PREFIX))).toEqual([]);
  return { exitCode: result.exitCode, stderr: result.stderr, report };
}

/**
 * What the sweep says of itself, whatever else the servers hold: "could not reach" only of a
 * server that could not be reached; exit 1 exactly when something could not be revoked or
 * reaped (an unreachable server included: its orphans were not reaped), after the report;
 * nothing on stderr when nothing went wrong.
 */
function expectHonestStatus({ exitCode, stderr, report }: SweepRun): void {
  const errors = report.reap_errors as ReapError[];
  expect(stderr).not.toMatch(/could not reach 127\.0\.0\.1:(5432|3306)\//);
  for (const e of errors) expect(e.unreachable).toBe(!REACHABLE.test(e.target));
  expect({ exitCode, failed: report.failed, errors }).toEqual({ exitCode: report.failed > 0 || errors.length > 0 ? 1 : 0, failed: report.failed, errors });
  if (errors.length === 0 && report.failed === 0) expect(stderr).toBe('');
}

/** The successful `reaper.drop` lines of the audit log from index `from` on. */
const drops = (from = 0) => auditLines(sy).slice(from).filter((l) => l.action === 'reaper.drop' && l.outcome === 'success');

beforeAll(async () => {
  await myAdminQuery(`CREATE DATABASE IF NOT EXISTS \`${MY_DB}\``);
  await myAdminQuery(`CREATE TABLE IF NOT EXISTS \`${MY_DB}\`.t (id INT)`);
  sy = await makeHome();
});

afterAll(async () => {
  await dropPgPrefix(PREFIX);
  await dropMyPrefix(PREFIX);
  await myAdminQuery(`DROP DATABASE IF EXISTS \`${MY_DB}\``);
  sy?.cleanup();
});

test('after the store is lost, a new store reaps the old users past their bound and nothing else', async () => {
  // The first store issues 2 + 2 leases (maxTtl 4: bound = creation + 14 s), then is lost.
  let setup: Setup = await createSecrets(sy, { pgPrefix: PREFIX, myPrefix: PREFIX, myDatabase: MY_DB, ttl: 2, maxTtl: 4 });
  const old = [
    ...(await Promise.all([createLease(sy, setup.pgDyn), createLease(sy, setup.pgDyn)])),
    ...(await Promise.all([createLease(sy, setup.myDyn), createLease(sy, setup.myDyn)])),
  ];
  for (const lease of old) {
    // The bound in the name is the lease's max expiry + 10 s.
    expect(boundOf(lease) - Date.parse(lease.created_at)).toBeGreaterThanOrEqual(14_000);
    expect(boundOf(lease) - Date.parse(lease.created_at)).toBeLessThanOrEqual(16_000);
  }
  const oldPg = old.slice(0, 2).map((l) => l.username);
  const oldMy = old.slice(2).map((l) => l.username);
  rmSync(sy.env.SY_HOME, { recursive: true, force: true });

  // A new store, with the same base secrets.
  const init = await sy.run(['init']);
  expect(init.exitCode).toBe(0);
  setup = await createSecrets(sy, { pgPrefix: PREFIX, myPrefix: PREFIX, myDatabase: MY_DB, ttl: 4, maxTtl: 4, pool: 'keep' });
  // A live lease of the new store that will be past its bound when the reaper runs (its pool is
  // not swept then), and one whose bound is far away.
  const [livePg, liveMy] = await Promise.all([createLease(sy, setup.pgDyn), createLease(sy, setup.myDyn)]);
  await mustJson(sy, ['secret', 'create', 'db:postgresql:long', '--attributes', '-'], {
    input: JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: setup.pgBase }, grantPermissions: { what: 'SELECT', where: '*.*' }, userPrefix: PREFIX, ttl: 3600 }),
  });
  const longLease = await createLease(sy, 'db:postgresql:long');
  // Users that look like sy's, one whose bound is in an hour, and one with the prefix that is not sy's at all.
  const future = syLookingName(PREFIX, new Date(Date.now() + 3600_000), 'futurefutu');
  const plain = `${PREFIX}plain_user`;
  for (const name of [future, plain]) {
    await pgCreateRole(name);
    await myCreateUser(name);
  }

  // Wait until every old user and the live lease are past their bounds.
  const wait = Math.max(...[...old, livePg, liveMy].map(boundOf)) + 1000 - Date.now();
  expect(wait).toBeLessThan(20_000);
  if (wait > 0) await sleep(wait);
  // Still there: nothing has run.
  for (const name of oldPg) expect(await pgExists(name)).toBe(true);
  for (const name of oldMy) expect(await myExists(name)).toBe(true);
  // An orphan from nowhere, just past its bound (made now: any other sy store's reaper on these
  // shared servers would take it too).
  const past = syLookingName(PREFIX, new Date(Date.now() - 1000), 'pastpastpa');
  await pgCreateRole(past);
  await myCreateUser(past);

  const reap = await sweepShared(['--pool', 'other']);
  const { report } = reap;
  expect(report).toMatchObject({ revoked: 0, failed: 0 });
  // The old users and the orphan are gone, on both servers...
  for (const name of [...oldPg, past]) expect(await pgExists(name)).toBe(false);
  for (const name of [...oldMy, past]) expect(await myExists(name)).toBe(false);
  // ...each with its audit line (other stores' users past their bound may be dropped too)...
  const dropped = drops()
    .filter((l) => l.db_user?.startsWith(PREFIX))
    .map((l) => `${l.target?.includes(':5432/') ? 'pg' : 'my'}:${l.db_user}`);
  expect(dropped.sort()).toEqual([...oldPg.map((n) => `pg:${n}`), ...oldMy.map((n) => `my:${n}`), `pg:${past}`, `my:${past}`].sort());
  // ...and the count is what was dropped: one audit line per user, ours and others'.
  expect(report.reaped).toBe(drops().length);
  expectHonestStatus(reap);

  // Left alone: the live leases of this store (past their bound, but held by the ledger), the
  // long lease, the user whose bound is in the future, and the user that is not sy's.
  for (const name of [livePg.username, longLease.username, future, plain]) expect(await pgExists(name)).toBe(true);
  for (const name of [liveMy.username, future, plain]) expect(await myExists(name)).toBe(true);
  const states = await leaseStates(sy);
  expect([states.get(livePg.lease_id), states.get(liveMy.lease_id), states.get(longLease.lease_id)]).toEqual(['active', 'active', 'active']);

  // The live leases end through the ledger, not the reaper.
  const ledgerSweep = await sweepShared();
  expect(ledgerSweep.report).toMatchObject({ revoked: 2, failed: 0 });
  expect(await pgExists(livePg.username)).toBe(false);
  expect(await myExists(liveMy.username)).toBe(false);
  expect(auditLines(sy).filter((l) => l.action === 'reaper.drop' && (l.db_user === livePg.username || l.db_user === liveMy.username))).toEqual([]);
  expectHonestStatus(ledgerSweep);
  const revoke = await sy.run(['dynamic', 'lease', 'revoke', longLease.lease_id]);
  expect(revoke.exitCode).toBe(0);
  expect(await pgUsers(PREFIX)).toEqual([future, plain].sort());
  expect(await myUsers(PREFIX)).toEqual([future, plain].sort());
});

test('the daemon reaps at start; an unreachable target is reported, the others are still reaped, and the sweep exits 1', async () => {
  const orphan = syLookingName(PREFIX, new Date(Date.now() - 1000), 'daemondaem');
  await pgCreateRole(orphan);
  await myCreateUser(orphan);
  const auditFrom = auditLines(sy).length;
  const daemon = startDaemon(sy, ['--once']);
  const exit = await daemon.exited;
  expect(exit.code).toBe(0);
  const events = daemon.events.map((e) => e.event);
  expect([events[0], events[events.length - 1]]).toEqual(['start', 'stop']);
  expect(drops(auditFrom).filter((l) => l.db_user === orphan)).toHaveLength(2);
  expect(await pgExists(orphan)).toBe(false);
  expect(await myExists(orphan)).toBe(false);
  // What it says it reaped is what it dropped, each with an audit line (other stores' orphans included).
  const reaped = daemon.events.filter((e) => e.event === 'reaped').reduce((n, e) => n + (e.count ?? 0), 0);
  expect(reaped).toBe(drops(auditFrom).length);
  // A user it could not drop is someone else's, reported by name.
  const failures = daemon.events.filter((e) => e.event === 'reap_failed');
  expect(failures.filter((e) => JSON.stringify(e).includes(PREFIX))).toEqual([]);
  for (const failure of failures) expect(JSON.stringify(failure)).toMatch(/[a-z0-9]{10}_sy[0-9a-z]{7}/);

  // A base secret whose server is down: reported in reap_errors and on stderr, and the other
  // servers are still reaped; the sweep exits 1 after printing its report.
  await mustJson(sy, ['secret', 'create', 'db:postgresql:down', '--attributes', '{"type": "postgresql"}', '--data', '{"host": "127.0.0.1", "port": 1, "username": "postgres", "password": "x"}']);
  const another = syLookingName(PREFIX, new Date(Date.now() - 1000), 'anotherorp');
  await pgCreateRole(another);
  await myCreateUser(another);
  const downSweep = await sweepShared();
  const { report, stderr } = downSweep;
  expect(report.reap_errors.filter((e: ReapError) => !REACHABLE.test(e.target))).toEqual([{ target: '127.0.0.1:1/postgres', error: expect.stringMatching(/refused/), unreachable: true }]);
  expect(downSweep.exitCode).toBe(1);
  expect(stderr).toMatch(/reaper could not reach 127\.0\.0\.1:1\/postgres/);
  expect(await pgExists(another)).toBe(false);
  expect(await myExists(another)).toBe(false);
  expectHonestStatus(downSweep);
  // --no-reap skips it.
  const noReap = await sy.run(['dynamic', 'sweep', '--no-reap']);
  expect({ exitCode: noReap.exitCode, stderr: noReap.stderr }).toEqual({ exitCode: 0, stderr: '' });
  expect(JSON.parse(noReap.stdout)).toMatchObject({ reaped: 0, reap_errors: [] });
});
