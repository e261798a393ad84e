/**
 * "Revoked" means the user is gone from the server where it was created, and the reaper
 * reports what it really did, on the throwaway SCRAM PostgreSQL cluster and the local
 * MariaDB, through the built bin/sy. Every name a test makes starts with this file's prefix,
 * and every assertion is about those names only: the servers may hold other stores' users.
 */
import { execa } from 'execa';
import pg from 'pg';
import { type Lease, leaseRunner, makeHome, SY_BIN, type SyHome } from '../helpers/cli.js';
import {
  createMyDatabase,
  createPgDatabase,
  dropMyDatabase,
  dropMyUsers,
  dropPgDatabase,
  dropPgRoles,
  expectExit,
  MARIADB,
  myUserExists,
  pgAdminQuery,
  pgConnect,
  pgLoginError,
  pgManagedRoles,
  pgRoleExists,
  scramCluster,
  tag,
} from '../helpers/db.js';
import { auditLines, syLookingName } from '../helpers/revocation.js';

const T = tag();
const DB = `sy_tr_${T}`;
const DB2 = `sy_tr2_${T}`;
const MY_DB = `sy_tr_${T}`;
const PREFIX = `tr${T}_`;
const LIMITED = `sy_tradmin_${T}`;
const LIMITED_PASSWORD = `Tr-${T}-pw`;
const admin = scramCluster();

let sy: SyHome;
let other: SyHome;
const runner = leaseRunner(() => sy);
const { ok, run, create } = runner;

const baseData = (over: Record<string, unknown> = {}) =>
  JSON.stringify({ host: admin.host, port: admin.port, username: admin.user, password: admin.password, database: DB, ...over });

async function pgOrphan(name: string, setup: string[] = []): Promise<void> {
  await pgAdminQuery(`CREATE ROLE ${pg.escapeIdentifier(name)} LOGIN PASSWORD 'orphan-Pw-1'`);
  for (const statement of setup) await pgAdminQuery(statement.replaceAll('{{role}}', pg.escapeIdentifier(name)), [], DB2);
}

beforeAll(async () => {
  await createPgDatabase(DB, [
    `CREATE SCHEMA app; CREATE TABLE app.items (id int); INSERT INTO app.items VALUES (1);
     CREATE ROLE ${LIMITED} LOGIN CREATEROLE PASSWORD '${LIMITED_PASSWORD}';
     GRANT CONNECT ON DATABASE ${DB} TO ${LIMITED} WITH GRANT OPTION;
     GRANT USAGE ON SCHEMA app TO ${LIMITED} WITH GRANT OPTION; GRANT SELECT ON app.items TO ${LIMITED} WITH GRANT OPTION`,
  ]);
  await createPgDatabase(DB2, ['CREATE TABLE public.other_items (id int)']);
  await createMyDatabase(MY_DB, ['CREATE TABLE {{db}}.t (id INT)']);
  sy = await makeHome();
  other = await makeHome();
  await ok(['secret', 'create', 'db:pg:root', '--attributes', '{"type": "postgresql"}', '--data', '-'], { input: baseData() });
  await ok(['secret', 'create', 'db:pg:app', '--attributes', '-'], {
    input: JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: 'db:pg:root' }, grantPermissions: { what: 'SELECT', where: 'app.items' }, userPrefix: PREFIX, ttl: 600 }),
  });
  await ok(['secret', 'create', 'db:my:root', '--attributes', '{"type": "mariadb"}', '--data', '-'], {
    input: JSON.stringify({ host: MARIADB.host, port: MARIADB.port, username: MARIADB.user, password: MARIADB.password, database: MY_DB }),
  });
  await ok(['secret', 'create', 'db:my:app', '--attributes', '-'], {
    input: JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: 'db:my:root' }, grantPermissions: { what: 'SELECT', where: `${MY_DB}.*` }, userPrefix: PREFIX, ttl: 600 }),
  });
});

afterAll(async () => {
  const pgNames = [...runner.issued.map((l) => l.username), ...(await pgManagedRoles(PREFIX))];
  const extra = (await pgAdminQuery<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)', [PREFIX])).map((r) => r.rolname);
  await dropPgRoles([...new Set([...pgNames, ...extra])], [DB, DB2]);
  await dropPgDatabase(DB);
  await dropPgDatabase(DB2);
  await pgAdminQuery(`DROP ROLE IF EXISTS ${LIMITED}`).catch(() => undefined);
  await dropMyUsers(runner.issued.map((l) => l.username));
  await dropMyDatabase(MY_DB);
  sy?.cleanup();
  other?.cleanup();
});

test('revoke goes where the user was created, after the base secret moved to another port and database', async () => {
  const pgLease = await create('db:pg:app');
  const myLease = await create('db:my:app');
  // The base secrets now point elsewhere: the machine's own PostgreSQL, a closed MariaDB port.
  await ok(['secret', 'update', 'db:pg:root', '--data', '-'], { input: JSON.stringify({ port: 5432, database: 'postgres', password: 'not-the-cluster' }) });
  await ok(['secret', 'update', 'db:my:root', '--data', '-'], { input: JSON.stringify({ port: 1 }) });
  const connection = `postgresql://${encodeURIComponent(pgLease.username)}:${encodeURIComponent(pgLease.password)}@${admin.host}:${admin.port}/${DB}`;
  expect(await pgLoginError(connection)).toBeUndefined();

  for (const lease of [pgLease, myLease]) {
    const revoked = await ok(['dynamic', 'lease', 'revoke', lease.lease_id]);
    expect(revoked.state).toBe('revoked');
  }
  expect(await pgRoleExists(pgLease.username)).toBe(false);
  expect(await pgLoginError(connection)).toBe('28P01');
  expect(await myUserExists(myLease.username)).toBe(false);
  const lines = auditLines(sy).filter((l) => l.action === 'lease.revoke');
  expect(lines.map((l) => [l.db_user, l.outcome])).toEqual([
    [pgLease.username, 'success'],
    [myLease.username, 'success'],
  ]);
  await ok(['secret', 'update', 'db:pg:root', '--data', '-'], { input: baseData() });
  await ok(['secret', 'update', 'db:my:root', '--data', '-'], { input: JSON.stringify({ port: MARIADB.port }) });
});

test('revoke removes privileges the lease holds in a second database, then drops the role', async () => {
  const lease = await create('db:pg:app');
  await pgAdminQuery(`GRANT SELECT ON public.other_items TO ${pg.escapeIdentifier(lease.username)}`, [], DB2);
  const [{ oid }] = await pgAdminQuery<{ oid: number }>('SELECT oid::int AS oid FROM pg_roles WHERE rolname = $1', [lease.username]);

  const revoked = await ok(['dynamic', 'lease', 'revoke', lease.lease_id]);
  expect(revoked.state).toBe('revoked');
  expect(await pgRoleExists(lease.username)).toBe(false);
  const [left] = await pgAdminQuery<{ n: number }>("SELECT count(*)::int AS n FROM pg_shdepend WHERE refclassid = 'pg_authid'::regclass AND refobjid = $1", [oid]);
  expect(left.n).toBe(0);
});

test('a lease whose user cannot be dropped stays failed, with the reason, and cannot log in', async () => {
  // Through a CREATEROLE admin: a privilege only the superuser can revoke keeps the role.
  await ok(['secret', 'create', 'db:pg:limited', '--attributes', '{"type": "postgresql"}', '--data', '-'], {
    input: baseData({ username: LIMITED, password: LIMITED_PASSWORD }),
  });
  await ok(['secret', 'create', 'db:pg:limited-app', '--attributes', '-'], {
    input: JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: 'db:pg:limited' }, grantPermissions: { what: 'SELECT', where: 'app.items' }, userPrefix: PREFIX }),
  });
  const lease = await create('db:pg:limited-app');
  await pgAdminQuery(`GRANT SELECT ON public.other_items TO ${pg.escapeIdentifier(lease.username)}`, [], DB2);
  await pgAdminQuery(`REVOKE CONNECT ON DATABASE ${DB2} FROM PUBLIC`);

  const result = await run(['dynamic', 'lease', 'revoke', lease.lease_id]);
  expectExit(result, 1);
  expect(result.stderr).toContain(`database "${DB2}"`);
  const [looked] = [await ok(['dynamic', 'lease', 'lookup', lease.lease_id])];
  expect(looked.state).toBe('failed');
  expect(await pgRoleExists(lease.username)).toBe(true);
  const connection = `postgresql://${encodeURIComponent(lease.username)}:${encodeURIComponent(lease.password)}@${admin.host}:${admin.port}/${DB}`;
  expect(await pgLoginError(connection)).toBe('28000');
  const failure = auditLines(sy).filter((l) => l.lease_id === lease.lease_id && l.action === 'lease.revoke');
  expect(failure.map((l) => l.outcome)).toEqual(['failure']);

  await pgAdminQuery(`GRANT CONNECT ON DATABASE ${DB2} TO PUBLIC`);
  await pgAdminQuery(`REVOKE ALL ON public.other_items FROM ${pg.escapeIdentifier(lease.username)}`, [], DB2);
  expect((await ok(['dynamic', 'lease', 'revoke', lease.lease_id])).state).toBe('revoked');
  expect(await pgRoleExists(lease.username)).toBe(false);
});

test('the reaper works role by role: exact counts, an audit line per drop, the undroppable one named', async () => {
  const past = new Date(Date.now() - 86400_000);
  const plain = [1, 2, 3].map((i) => syLookingName(PREFIX, past, `plain${i}${tag(5)}`.slice(0, 10)));
  const elsewhere = syLookingName(PREFIX, past, `else${tag(6)}`.slice(0, 10));
  const stuck = syLookingName(PREFIX, past, `stuck${tag(5)}`.slice(0, 10));
  const live = syLookingName(PREFIX, new Date(Date.now() + 86400_000 * 365), `live${tag(6)}`.slice(0, 10));
  for (const name of [...plain, live]) await pgOrphan(name);
  // It owns a table in a second database, which must be cleaned before it can be dropped.
  await pgOrphan(elsewhere, ['CREATE TABLE public.{{role}} (x int)', 'ALTER TABLE public.{{role}} OWNER TO {{role}}']);
  // A superuser role: a CREATEROLE admin may not drop it.
  await pgAdminQuery(`CREATE ROLE ${pg.escapeIdentifier(stuck)} SUPERUSER NOLOGIN`);

  // A store whose only base secret is the CREATEROLE admin.
  await other.json(['secret', 'create', 'db:pg:limited', '--attributes', '{"type": "postgresql"}', '--data', '-'], {
    input: baseData({ username: LIMITED, password: LIMITED_PASSWORD }),
  });
  const result = await other.run(['dynamic', 'sweep']);
  expectExit(result, 1);
  const report = JSON.parse(result.stdout);
  const mine = auditLines(other).filter((l) => l.action === 'reaper.drop' && l.db_user?.startsWith(PREFIX));
  expect(mine.filter((l) => l.outcome === 'success').map((l) => l.db_user).sort()).toEqual([...plain, elsewhere].sort());
  expect(mine.filter((l) => l.outcome === 'failure').map((l) => l.db_user)).toEqual([stuck]);
  // The count is what was dropped, all of it audited (other stores' orphans on this shared server included).
  expect(report.reaped).toBe(auditLines(other).filter((l) => l.action === 'reaper.drop' && l.outcome === 'success').length);
  expect(report.reap_errors).toContainEqual({ target: `${admin.host}:${admin.port}/${DB}`, db_user: stuck, error: expect.any(String), unreachable: false });
  expect(result.stderr).not.toMatch(/could not reach/);
  expect(result.stderr).toContain(stuck);
  for (const name of [...plain, elsewhere]) expect(await pgRoleExists(name)).toBe(false);
  expect(await pgRoleExists(stuck)).toBe(true);
  expect(await pgRoleExists(live)).toBe(true);
  expect(await pgAdminQuery('SELECT 1 FROM pg_class WHERE relname = $1', [elsewhere], DB2)).toEqual([]);
  await pgAdminQuery(`DROP ROLE ${pg.escapeIdentifier(stuck)}`);
  await pgAdminQuery(`DROP ROLE ${pg.escapeIdentifier(live)}`);
});

test('a role past its VALID UNTIL plus the grace is reaped before the bound in its name; one inside the grace is not', async () => {
  const farBound = new Date(Date.now() + 86400_000);
  const expired = syLookingName(PREFIX, farBound, `vexp${tag(6)}`.slice(0, 10));
  const recent = syLookingName(PREFIX, farBound, `vrec${tag(6)}`.slice(0, 10));
  await pgAdminQuery(`CREATE ROLE ${pg.escapeIdentifier(expired)} LOGIN VALID UNTIL '${new Date(Date.now() - 3600_000).toISOString()}'`);
  await pgAdminQuery(`CREATE ROLE ${pg.escapeIdentifier(recent)} LOGIN VALID UNTIL '${new Date(Date.now() - 5_000).toISOString()}'`);
  const result = await sy.run(['dynamic', 'sweep']);
  // Only this file's roles are asserted on: the exit status also reflects other stores' orphans.
  expect(JSON.parse(result.stdout)).toHaveProperty('reaped');
  expect(auditLines(sy).filter((l) => l.action === 'reaper.drop' && l.db_user === expired).map((l) => l.outcome)).toEqual(['success']);
  expect(await pgRoleExists(expired)).toBe(false);
  expect(await pgRoleExists(recent)).toBe(true);
  await pgAdminQuery(`DROP ROLE ${pg.escapeIdentifier(recent)}`);
});

test('a machine whose clock runs two days ahead reaps no live lease of another store', async () => {
  // The other store's lease: bound in its name = now + 10 min + grace, by the server's clock.
  await other.json(['secret', 'create', 'db:pg:root', '--attributes', '{"type": "postgresql"}', '--data', '-'], { input: baseData() });
  await other.json(['secret', 'create', 'db:pg:short', '--attributes', '-'], {
    input: JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: 'db:pg:root' }, grantPermissions: { what: 'SELECT', where: 'app.items' }, userPrefix: PREFIX, ttl: 600, maxTtl: 600 }),
  });
  const lease = await other.json<Lease>(['dynamic', 'lease', 'create', '--path', 'db:pg:short']);
  runner.remember(lease);
  // A control: an orphan past its bound by the server's clock, which the skewed reaper must take.
  const control = syLookingName(PREFIX, new Date(Date.now() - 3600_000), `ctrl${tag(6)}`.slice(0, 10));
  await pgOrphan(control);

  const skewed = await execa('faketime', ['-f', '+2d', SY_BIN, 'dynamic', 'sweep'], {
    env: { PATH: process.env.PATH, ...sy.env },
    extendEnv: false,
    reject: false,
    stdin: 'ignore',
    timeout: 60_000,
  });
  // The skew is real: the sweep's own clock is two days ahead.
  const clock = await execa('faketime', ['-f', '+2d', 'node', '-e', 'console.log(Date.now())'], { reject: false });
  expect(Number(clock.stdout) - Date.now()).toBeGreaterThan(86400_000);
  expect(JSON.parse(String(skewed.stdout))).toHaveProperty('reaped');
  expect(await pgRoleExists(control)).toBe(false);
  expect(await pgRoleExists(lease.username)).toBe(true);
  expect(auditLines(sy).filter((l) => l.db_user === lease.username)).toEqual([]);
  await other.json(['dynamic', 'lease', 'revoke', lease.lease_id]);
});

test('the pre-command sweep keeps its budget when a revocation meets a held lock', async () => {
  await ok(['secret', 'create', 'db:pg:brief', '--attributes', '-'], {
    input: JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: 'db:pg:root' }, grantPermissions: { what: 'SELECT', where: 'app.items' }, userPrefix: PREFIX, ttl: 1 }),
  });
  const lease = await create('db:pg:brief');
  const locker = await pgConnect({ host: admin.host, port: admin.port, user: admin.user, password: admin.password, database: DB });
  try {
    // An open transaction that changed app.items' ACL: revoking the lease's SELECT must wait for it.
    await locker.query(`BEGIN; GRANT SELECT ON app.items TO ${LIMITED}`);
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    const started = Date.now();
    const result = await run(['secret', 'search'], { env: { SY_NO_SWEEP: '0' } });
    const elapsed = Date.now() - started;
    expect(result.exitCode).toBe(0);
    expect(result.stderr).toMatch(/could not be revoked yet/);
    // 1.5 s of budget plus start-up; a wait for the lock would take 5 s.
    expect(elapsed).toBeLessThan(4_000);
  } finally {
    await locker.query('ROLLBACK').catch(() => undefined);
    await locker.end();
  }
  // The attempt that ran out of budget left the lease failed, to be retried; once the lock is gone it goes.
  expect((await ok(['dynamic', 'lease', 'lookup', lease.lease_id])).state).toBe('failed');
  expect((await ok(['dynamic', 'lease', 'revoke', lease.lease_id])).state).toBe('revoked');
  expect(await pgRoleExists(lease.username)).toBe(false);
});
