/**
 * A lease holder who wants more than the recipe gave, on the throwaway SCRAM PostgreSQL
 * cluster, through the built bin/sy with a superuser admin (the worst case). Each test logs
 * in as the lease user, tries one route to more power or to outliving the lease, and checks
 * the outcome on the server: owners, grants, pg_shdepend, who can log in.
 *
 * The schema `scratch` is writable by PUBLIC, as `public` is by default on PostgreSQL 14 and
 * older, so a lease can create objects there.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { type Lease, leaseRunner, makeHome, type SyHome } from '../helpers/cli.js';
import { createPgDatabase, dropPgDatabase, dropPgRoles, expectExit, pgAdminQuery, pgConnect, pgManagedRoles, pgRoleExists, scramCluster, tag } from '../helpers/db.js';
import { serverLogOf } from '../helpers/pg-cluster.js';
import { auditLines, sleep } from '../helpers/revocation.js';

const T = tag();
const DB = `sy_atk_${T}`;
const DB2 = `sy_atk2_${T}`;
const PREFIX = `atk${T}_`;
const GRAVE = `sy_grave_${T}`;
const OUTSIDER = `sy_outsider_${T}`;
const admin = scramCluster();

let sy: SyHome;
const { ok, run, create, issued, passwords } = leaseRunner(() => sy);

async function asLease(lease: Lease, database = DB): Promise<pg.Client> {
  return pgConnect({ host: admin.host, port: admin.port, user: lease.username, password: lease.password, database });
}

const recipe = (attributes: Record<string, unknown>): string =>
  JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: 'db:pg:root' }, userPrefix: PREFIX, ttl: 600, ...attributes });

async function dynamic(path: string, attributes: Record<string, unknown>, flags: string[] = []): Promise<void> {
  await ok(['secret', 'create', path, ...flags, '--attributes', '-'], { input: recipe(attributes) });
}

const revoke = (lease: Lease) => ok(['dynamic', 'lease', 'revoke', lease.lease_id]);

/** Roles that reference the old role's oid in pg_shdepend (0 once it is really gone). */
async function shdependCount(oid: number): Promise<number> {
  const [row] = await pgAdminQuery<{ n: number }>("SELECT count(*)::int AS n FROM pg_shdepend WHERE refclassid = 'pg_authid'::regclass AND refobjid = $1", [oid]);
  return row.n;
}

async function roleOid(name: string): Promise<number> {
  const [row] = await pgAdminQuery<{ oid: number }>('SELECT oid::int AS oid FROM pg_roles WHERE rolname = $1', [name]);
  return row.oid;
}

beforeAll(async () => {
  await createPgDatabase(DB, [
    `CREATE SCHEMA app; CREATE TABLE app.items (id int PRIMARY KEY, name text); INSERT INTO app.items VALUES (1, 'one');
     CREATE TABLE app.audit (id serial, note text);
     CREATE SCHEMA scratch; GRANT CREATE, USAGE ON SCHEMA scratch TO PUBLIC;
     CREATE ROLE ${GRAVE} NOLOGIN; CREATE ROLE ${OUTSIDER} LOGIN PASSWORD 'outsider-Pw-1';
     GRANT USAGE ON SCHEMA scratch TO ${OUTSIDER}`,
  ]);
  await createPgDatabase(DB2, ['GRANT CREATE ON SCHEMA public TO PUBLIC']);
  sy = await makeHome();
  await ok(['secret', 'create', 'db:pg:root', '--attributes', '{"type": "postgresql"}', '--data', '-'], {
    input: JSON.stringify({ host: admin.host, port: admin.port, username: admin.user, password: admin.password, database: DB }),
  });
  await dynamic('db:pg:app', { grantPermissions: { what: 'SELECT', where: 'app.items' } });
});

afterAll(async () => {
  const names = [...issued.map((l) => l.username), ...(await pgManagedRoles(PREFIX))];
  await dropPgRoles(names, [DB, DB2]);
  await dropPgDatabase(DB);
  await dropPgDatabase(DB2);
  await pgAdminQuery(`DROP ROLE IF EXISTS ${GRAVE}`).catch(() => undefined);
  await pgAdminQuery(`DROP ROLE IF EXISTS ${OUTSIDER}`).catch(() => undefined);
  sy?.cleanup();
});

afterAll(async () => {
  const text = JSON.stringify(auditLines(sy));
  for (const password of passwords) expect(text).not.toContain(password);
});

test('a SECURITY DEFINER function a lease created is not handed to the admin on revoke', async () => {
  const lease = await create('db:pg:app');
  const session = await asLease(lease);
  await session.query(`CREATE FUNCTION scratch.escalate() RETURNS text LANGUAGE sql SECURITY DEFINER AS 'SELECT current_user::text'`);
  await session.end();
  await revoke(lease);

  // No function of that name is left for anyone to call with the admin's power.
  const owners = await pgAdminQuery("SELECT pg_get_userbyid(proowner) AS owner FROM pg_proc WHERE proname = 'escalate'", [], DB);
  expect(owners).toEqual([]);
  const outsider = await pgConnect({ host: admin.host, port: admin.port, user: OUTSIDER, password: 'outsider-Pw-1', database: DB });
  try {
    await expect(outsider.query('SELECT scratch.escalate()')).rejects.toThrow(/does not exist/);
  } finally {
    await outsider.end();
  }
});

test('a prepared transaction of a lease is rolled back by revoke, with a superuser admin too', async () => {
  const lease = await create('db:pg:app');
  const gid = `sy_atk_gid_${T}`;
  const session = await asLease(lease);
  await session.query(`BEGIN; ALTER ROLE ${pg.escapeIdentifier(lease.username)} PASSWORD 'Changed-1'; PREPARE TRANSACTION ${pg.escapeLiteral(gid)}`);
  await session.end();
  try {
    await revoke(lease);
    expect(await pgRoleExists(lease.username)).toBe(false);
    expect(await pgAdminQuery('SELECT gid FROM pg_prepared_xacts WHERE gid = $1', [gid])).toEqual([]);
  } finally {
    await pgAdminQuery(`ROLLBACK PREPARED ${pg.escapeLiteral(gid)}`, [], DB).catch(() => undefined);
  }
});

test('tables, views, sequences, large objects and default privileges a lease made go with it', async () => {
  const lease = await create('db:pg:app');
  const oid = await roleOid(lease.username);
  const session = await asLease(lease);
  await session.query(`
    CREATE TABLE scratch.loot (x int); GRANT ALL ON scratch.loot TO PUBLIC;
    CREATE VIEW scratch.peek AS SELECT * FROM app.items; GRANT SELECT ON scratch.peek TO PUBLIC;
    CREATE SEQUENCE scratch.counter;
    ALTER DEFAULT PRIVILEGES IN SCHEMA scratch GRANT ALL ON TABLES TO PUBLIC;
    SELECT lo_create(0);`);
  await session.end();
  await revoke(lease);

  expect(await pgRoleExists(lease.username)).toBe(false);
  expect(await shdependCount(oid)).toBe(0);
  const left = await pgAdminQuery("SELECT relname FROM pg_class WHERE relname IN ('loot', 'peek', 'counter')", [], DB);
  expect(left).toEqual([]);
  const adminObjects = await pgAdminQuery('SELECT count(*)::int AS n FROM pg_largeobject_metadata WHERE lomowner = $1', [oid], DB);
  expect(adminObjects[0].n).toBe(0);
  const defaults = await pgAdminQuery('SELECT count(*)::int AS n FROM pg_default_acl WHERE defaclrole = $1', [oid], DB);
  expect(defaults[0].n).toBe(0);
});

test('objects a lease made in another database of the cluster are removed, and the role is dropped', async () => {
  const lease = await create('db:pg:app');
  const oid = await roleOid(lease.username);
  // CONNECT is granted to PUBLIC on a new database: the lease can go there.
  const elsewhere = await asLease(lease, DB2);
  await elsewhere.query('CREATE TABLE public.stash (x int); INSERT INTO public.stash VALUES (1)');
  await elsewhere.end();

  await revoke(lease);

  expect(await pgRoleExists(lease.username)).toBe(false);
  expect(await shdependCount(oid)).toBe(0);
  expect(await pgAdminQuery("SELECT 1 FROM pg_class WHERE relname = 'stash'", [], DB2)).toEqual([]);
});

test('with reassignTo, what the lease made goes to that NOLOGIN role, never to the admin, and loses SECURITY DEFINER', async () => {
  await dynamic('db:pg:keep', { grantPermissions: { what: 'SELECT', where: 'app.items' }, reassignTo: GRAVE });
  const lease = await create('db:pg:keep');
  const session = await asLease(lease);
  await session.query(`CREATE TABLE scratch.kept (x int);
    CREATE FUNCTION scratch.kept_fn() RETURNS text LANGUAGE sql SECURITY DEFINER AS 'SELECT current_user::text'`);
  await session.end();
  await revoke(lease);

  expect(await pgRoleExists(lease.username)).toBe(false);
  const [table] = await pgAdminQuery("SELECT pg_get_userbyid(relowner) AS owner FROM pg_class WHERE relname = 'kept'", [], DB);
  expect(table.owner).toBe(GRAVE);
  const [fn] = await pgAdminQuery("SELECT pg_get_userbyid(proowner) AS owner, prosecdef FROM pg_proc WHERE proname = 'kept_fn'", [], DB);
  expect(fn).toEqual({ owner: GRAVE, prosecdef: false });
});

test('a reassignTo role that can log in is refused before any user is created', async () => {
  const attributes = { grantPermissions: { what: 'SELECT', where: 'app.items' }, reassignTo: OUTSIDER };
  const refused = await run(['secret', 'create', 'db:pg:badgrave', '--attributes', '-'], { input: recipe(attributes) });
  expectExit(refused, 2);
  expect(refused.stderr).toContain(`reassignTo: the role "${OUTSIDER}"`);
  // Stored unchecked, the lease is refused too.
  await dynamic('db:pg:badgrave', attributes, ['--no-verify']);
  const before = await pgManagedRoles(PREFIX);
  const result = await run(['dynamic', 'lease', 'create', '--path', 'db:pg:badgrave']);
  expectExit(result, 1);
  expect(result.stderr).toContain(`reassignTo role "${OUTSIDER}"`);
  expect(await pgManagedRoles(PREFIX)).toEqual(before);
});

test('ALL means data privileges: no TRIGGER, no MAINTAIN, no grant option; TRIGGER and system schemas are refused', async () => {
  await dynamic('db:pg:all', { grantPermissions: { what: 'ALL', where: 'app.*' } });
  const lease = await create('db:pg:all');
  const [row] = await pgAdminQuery<{ trigger: boolean; select: boolean; grant: boolean }>(
    `SELECT has_table_privilege($1, 'app.items', 'TRIGGER') AS trigger, has_table_privilege($1, 'app.items', 'SELECT') AS select,
            has_table_privilege($1, 'app.items', 'SELECT WITH GRANT OPTION') AS grant`,
    [lease.username],
    DB,
  );
  expect(row).toEqual({ trigger: false, select: true, grant: false });
  const session = await asLease(lease);
  try {
    // A trigger would run the lease's function as whoever writes the table (the admin).
    await session.query("CREATE FUNCTION scratch.t() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'");
    await expect(session.query('CREATE TRIGGER t BEFORE INSERT ON app.items FOR EACH ROW EXECUTE FUNCTION scratch.t()')).rejects.toThrow(/permission denied/);
  } finally {
    await session.end();
  }
  await revoke(lease);

  for (const [what, where, message] of [
    ['TRIGGER', 'app.items', /TRIGGER/],
    ['SELECT', 'pg_catalog.pg_authid', /system schema/],
    ['SELECT', 'information_schema.*', /system schema/],
    ['SELECT', 'pg_toast.*', /system schema/],
  ] as const) {
    const result = await run(['secret', 'create', `db:pg:refused${tag(3)}`, '--attributes', '-'], {
      input: JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: 'db:pg:root' }, grantPermissions: { what, where } }),
    });
    expectExit(result, 2);
    expect(result.stderr).toMatch(message);
  }
});

test('a lease cannot block other leases with the advisory lock sy used to take', async () => {
  const holder = await create('db:pg:app');
  const session = await asLease(holder);
  try {
    for (const key of [`sy:grants:${DB}`]) await session.query('SELECT pg_advisory_lock(hashtext($1))', [key]);
    const started = Date.now();
    const other = await create('db:pg:app');
    expect(Date.now() - started).toBeLessThan(10_000);
    await revoke(other);
    expect(await pgRoleExists(other.username)).toBe(false);
  } finally {
    await session.end();
  }
  await revoke(holder);
});

test('a held lock makes create fail within the bound with one sentence, and leaves no user', async () => {
  await dynamic('db:pg:all2', { grantPermissions: { what: 'SELECT', where: 'app.*' } });
  const before = await pgManagedRoles(PREFIX);
  const locker = await pgConnect({ host: admin.host, port: admin.port, user: admin.user, password: admin.password, database: DB });
  try {
    // An open transaction that changed app.items' ACL holds its catalog row until it ends.
    await locker.query(`BEGIN; GRANT SELECT ON app.items TO ${OUTSIDER}`);
    const started = Date.now();
    const result = await run(['dynamic', 'lease', 'create', '--path', 'db:pg:all2']);
    const elapsed = Date.now() - started;
    expectExit(result, 1);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/held a lock/);
    expect(elapsed).toBeLessThan(20_000);
  } finally {
    await locker.query('ROLLBACK').catch(() => undefined);
    await locker.end();
  }
  expect(await pgManagedRoles(PREFIX)).toEqual(before);
});

test('{{password}} in creationStatements never reaches the server log in clear text', async () => {
  await dynamic('db:pg:custom', {
    grantPermissions: { what: 'SELECT', where: 'app.items' },
    creationStatements: [
      `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`,
      `GRANT CONNECT ON DATABASE ${DB} TO "{{name}}"`,
      'GRANT USAGE ON SCHEMA app TO "{{name}}"',
      'GRANT SELECT ON app.items TO "{{name}}"',
    ],
  });
  const lease = await create('db:pg:custom');
  const session = await asLease(lease);
  expect((await session.query('SELECT count(*)::int AS n FROM app.items')).rows[0].n).toBe(1);
  await session.end();
  await sleep(200); // the server writes its log asynchronously
  const log = readFileSync(serverLogOf(process.env.SY_TEST_PG_DIR ?? ''), 'utf8');
  expect(log).toContain(lease.username);
  expect(log).not.toContain(lease.password);
  await revoke(lease);
});
