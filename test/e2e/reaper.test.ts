/**
 * End-to-end tests of the orphan reaper through the built bin/sy, against the machine's
 * PostgreSQL (127.0.0.1:5432) and the local MariaDB: after the whole store is lost, a new
 * store with the same base secrets drops the old users once they are past the bound in
 * their names, and leaves alone the users its ledger still holds, users whose bound is in
 * the future, and users that are not sy's.
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

  const result = await sy.run(['dynamic', 'sweep', '--pool', 'other']);
  expect({ exitCode: result.exitCode, stderr: result.stderr }).toEqual({ exitCode: 0, stderr: '' });
  const report = JSON.parse(result.stdout);
  expect(report).toMatchObject({ revoked: 0, failed: 0, reap_errors: [] });
  // The old users and the orphan are gone, on both servers...
  for (const name of [...oldPg, past]) expect(await pgExists(name)).toBe(false);
  for (const name of [...oldMy, past]) expect(await myExists(name)).toBe(false);
  // ...and counted (the servers are shared: other orphans past their bound may be counted too).
  const dropped = auditLines(sy)
    .filter((l) => l.action === 'reaper.drop' && l.outcome === 'success' && l.db_user?.startsWith(PREFIX))
    .map((l) => `${l.target?.includes(':5432/') ? 'pg' : 'my'}:${l.db_user}`);
  expect(dropped.sort()).toEqual([...oldPg.map((n) => `pg:${n}`), ...oldMy.map((n) => `my:${n}`), `pg:${past}`, `my:${past}`].sort());
  expect(report.reaped).toBeGreaterThanOrEqual(6);
  expect(report.reaped).toBe(auditLines(sy).filter((l) => l.action === 'reaper.drop' && l.outcome === 'success').length);

  // Left alone: the live leases of this store (past their bound, but held by the ledger), the
  // long lease, the user whose bound is in the future, and the user that is not sy's.
  for (const name of [livePg.username, longLease.username, future, plain]) expect(await pgExists(name)).toBe(true);
  for (const name of [liveMy.username, future, plain]) expect(await myExists(name)).toBe(true);
  const states = await leaseStates(sy);
  expect([states.get(livePg.lease_id), states.get(liveMy.lease_id), states.get(longLease.lease_id)]).toEqual(['active', 'active', 'active']);

  // The live leases end through the ledger, not the reaper.
  const sweep = await mustJson(sy, ['dynamic', 'sweep']);
  expect(sweep).toMatchObject({ revoked: 2, failed: 0 });
  expect(await pgExists(livePg.username)).toBe(false);
  expect(await myExists(liveMy.username)).toBe(false);
  expect(auditLines(sy).filter((l) => l.action === 'reaper.drop' && (l.db_user === livePg.username || l.db_user === liveMy.username))).toEqual([]);
  const revoke = await sy.run(['dynamic', 'lease', 'revoke', longLease.lease_id]);
  expect(revoke.exitCode).toBe(0);
  expect(await pgUsers(PREFIX)).toEqual([future, plain].sort());
  expect(await myUsers(PREFIX)).toEqual([future, plain].sort());
});

test('the daemon reaps at start; an unreachable target is reported and does not fail the sweep', async () => {
  const orphan = syLookingName(PREFIX, new Date(Date.now() - 1000), 'daemondaem');
  await pgCreateRole(orphan);
  await myCreateUser(orphan);
  const daemon = startDaemon(sy, ['--once']);
  const exit = await daemon.exited;
  expect(exit.code).toBe(0);
  const events = daemon.events.map((e) => e.event);
  expect([events[0], events[events.length - 1]]).toEqual(['start', 'stop']);
  expect(daemon.events.find((e) => e.event === 'reaped')?.count).toBeGreaterThanOrEqual(2);
  expect(auditLines(sy).filter((l) => l.action === 'reaper.drop' && l.db_user === orphan)).toHaveLength(2);
  expect(await pgExists(orphan)).toBe(false);
  expect(await myExists(orphan)).toBe(false);

  // A base secret whose server is down: reported in reap_errors and on stderr; exit 0.
  await mustJson(sy, ['secret', 'create', 'db:postgresql:down', '--attributes', '{"type": "postgresql"}', '--data', '{"host": "127.0.0.1", "port": 1, "username": "postgres", "password": "x"}']);
  const result = await sy.run(['dynamic', 'sweep']);
  expect(result.exitCode).toBe(0);
  expect(JSON.parse(result.stdout).reap_errors).toEqual([{ target: '127.0.0.1:1/postgres', error: expect.stringMatching(/refused/) }]);
  expect(result.stderr).toMatch(/reaper could not reach 127\.0\.0\.1:1\/postgres/);
  // --no-reap skips it.
  const noReap = await sy.run(['dynamic', 'sweep', '--no-reap']);
  expect({ exitCode: noReap.exitCode, stderr: noReap.stderr }).toEqual({ exitCode: 0, stderr: '' });
  expect(JSON.parse(noReap.stdout)).toMatchObject({ reaped: 0, reap_errors: [] });
});
