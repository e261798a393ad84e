/**
 * `CREATE` on a PostgreSQL schema in grantPermissions, through the built bin/sy on every
 * PostgreSQL version the tests run (pgMatrix(): 13 to 18): a lease that may create objects
 * in schema `mig` (a migration, `pgbench -i`) creates them there, unqualified; revoking it
 * drops every one of them with the role, or hands them to `reassignTo`. `*.*` with CREATE
 * reaches every non-system schema and never pg_catalog or information_schema. The admin is
 * the superuser and the README's least-privilege CREATEROLE admin.
 */
import { execa } from 'execa';
import pg from 'pg';
import { leaseRunner, makeHome, type Lease, type SyHome } from '../helpers/cli.js';
import { expectExit, pgConnect, pgMatrix, pgQueryOn, tag, type PgAdmin } from '../helpers/db.js';

const T = tag();
const ident = (name: string): string => pg.escapeIdentifier(name);
const PGBENCH_TABLES = ['pgbench_accounts', 'pgbench_branches', 'pgbench_history', 'pgbench_tellers'];

describe.each(pgMatrix())('PostgreSQL $version', (cluster) => {
  const DB = `sy_crt${cluster.major}_${T}`;
  const LEAST: PgAdmin = { host: cluster.host, port: cluster.port, user: `syc${cluster.major}_${T}`, password: `Lc9-${tag(24)}` };
  const GRAVEYARD = `grave${cluster.major}_${T}`;
  const PREFIX = `c${cluster.major}${T}_`;
  const asSuperuser = <R extends pg.QueryResultRow = any>(sql: string, params: unknown[] = [], database = DB) => pgQueryOn<R>(cluster, sql, params, database);
  const roleExists = async (name: string): Promise<boolean> => (await asSuperuser('SELECT 1 FROM pg_roles WHERE rolname = $1', [name])).length === 1;
  /** Every relation, routine and type in the non-system schemas, with its owner. */
  const objectsOf = (owner: string) =>
    asSuperuser<{ object: string }>(
      `SELECT n.nspname || '.' || c.relname AS object FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relowner = (SELECT oid FROM pg_roles WHERE rolname = $1) AND n.nspname NOT LIKE 'pg\\_%'
       UNION ALL SELECT n.nspname || '.' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE p.proowner = (SELECT oid FROM pg_roles WHERE rolname = $1)`,
      [owner],
    ).then((rows) => rows.map((r) => r.object).sort());
  let sy: SyHome;
  const { run, ok, create } = leaseRunner(() => sy);
  const asLease = async <R extends pg.QueryResultRow = any>(lease: Lease, statements: string[]): Promise<R[]> => {
    const client = await pgConnect({ host: lease.host, port: lease.port, user: lease.username, password: lease.password, database: lease.database, ssl: { rejectUnauthorized: false } });
    try {
      let rows: R[] = [];
      for (const sql of statements) rows = (await client.query<R>(sql)).rows;
      return rows;
    } finally {
      await client.end().catch(() => undefined);
    }
  };
  const outcome = (lease: Lease, sql: string) => asLease(lease, [sql]).then(() => 'created', (error: { code?: string }) => error.code);
  const dynamic = (path: string, base: string, attributes: object) =>
    ok(['secret', 'create', path, '--attributes', JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: base }, userPrefix: PREFIX, ttl: 600, ...attributes })]);

  beforeAll(async () => {
    await asSuperuser(`CREATE DATABASE ${ident(DB)}`, [], 'postgres');
    for (const statement of [
      'CREATE SCHEMA mig',
      'CREATE SCHEMA app',
      'CREATE TABLE app.orders (id int)',
      `CREATE ROLE ${ident(GRAVEYARD)} NOLOGIN`,
      `CREATE ROLE ${ident(LEAST.user)} WITH LOGIN CREATEROLE PASSWORD ${pg.escapeLiteral(LEAST.password)}`,
      `GRANT ${ident(GRAVEYARD)} TO ${ident(LEAST.user)}${cluster.major >= 16 ? ' WITH ADMIN OPTION' : ''}`,
      `GRANT USAGE ON SCHEMA mig TO ${ident(LEAST.user)} WITH GRANT OPTION`,
    ]) {
      await asSuperuser(statement);
    }
    sy = await makeHome();
    for (const [path, admin] of [['db:pg:super', cluster], ['db:pg:least', LEAST]] as const) {
      await ok(['secret', 'create', path, '--attributes', '{"type":"postgresql"}', '--data', '-'], {
        input: JSON.stringify({ host: cluster.host, port: cluster.port, username: admin.user, password: admin.password, database: DB, ssl: { rejectUnauthorized: false } }),
      });
    }
  });

  afterAll(async () => {
    if (sy) {
      await sy.run(['dynamic', 'lease', 'revoke', '--prefix', 'db', '--yes', '--force']).catch(() => undefined);
      sy.cleanup();
    }
    await asSuperuser(`DROP DATABASE IF EXISTS ${ident(DB)} WITH (FORCE)`, [], 'postgres').catch(() => undefined);
    const roles = await asSuperuser<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)', [PREFIX], 'postgres').catch(() => []);
    for (const name of [...roles.map((r) => r.rolname), GRAVEYARD, LEAST.user]) await asSuperuser(`DROP ROLE IF EXISTS ${ident(name)}`, [], 'postgres').catch(() => undefined);
  });

  test('the recipe check refuses CREATE on a schema the admin cannot grant it on, naming it; granted WITH GRANT OPTION it passes', async () => {
    const attributes = { linkConfig: { linkType: 'dynamic', linkedSecret: 'db:pg:least' }, grantPermissions: { what: 'CREATE', where: 'mig.*' }, userPrefix: PREFIX };
    const refused = await run(['secret', 'create', 'db:pg:least-mig', '--attributes', JSON.stringify(attributes)]);
    expectExit(refused, 2);
    expect(refused.stderr).toContain(`does not hold CREATE on schema mig WITH GRANT OPTION`);
    await asSuperuser(`GRANT CREATE ON SCHEMA mig TO ${ident(LEAST.user)} WITH GRANT OPTION`);
    await ok(['secret', 'create', 'db:pg:least-mig', '--attributes', JSON.stringify(attributes)]);
  });

  test('CREATE on a table is refused at create time (exit 2): it is a schema privilege', async () => {
    const refused = await run(['secret', 'create', 'db:pg:bad', '--attributes', JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: 'db:pg:super' }, grantPermissions: { what: 'CREATE', where: 'app.orders' } })]);
    expectExit(refused, 2);
    expect(refused.stderr).toMatch(/CREATE is a privilege on a whole schema/);
  });

  for (const base of ['super', 'least'] as const) {
    test(`with the ${base === 'super' ? 'superuser' : 'least-privilege admin'}: the lease creates unqualified objects in mig only; revoke drops them all with the role`, async () => {
      const path = base === 'super' ? 'db:pg:super-mig' : 'db:pg:least-mig';
      if (base === 'super') await dynamic(path, 'db:pg:super', { grantPermissions: { what: 'CREATE', where: 'mig.*' } });
      const lease = await create(path);
      // A migration, as a tool runs it: unqualified names land in mig.
      const made = await asLease<{ schema: string; n: number }>(lease, [
        'CREATE TABLE items (id serial PRIMARY KEY, name text)',
        'CREATE INDEX items_name ON items (name)',
        "INSERT INTO items (name) VALUES ('a'), ('b')",
        'CREATE VIEW item_names AS SELECT name FROM items',
        "CREATE FUNCTION item_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM items'",
        'SELECT current_schema() AS schema, item_count()::int AS n',
      ]);
      expect(made).toEqual([{ schema: 'mig', n: 2 }]);
      expect(await objectsOf(lease.username)).toEqual(['mig.item_count', 'mig.item_names', 'mig.items', 'mig.items_id_seq', 'mig.items_name', 'mig.items_pkey']);
      // Nowhere else: not app (no CREATE there), not the system schemas.
      expect(await outcome(lease, 'CREATE TABLE app.planted (id int)')).toBe('42501');
      expect(await outcome(lease, 'CREATE TABLE pg_catalog.planted (id int)')).toBe('42501');

      expectExit(await run(['dynamic', 'lease', 'revoke', lease.lease_id]), 0);
      expect(await roleExists(lease.username)).toBe(false);
      expect(await asSuperuser("SELECT relname FROM pg_class WHERE relnamespace = 'mig'::regnamespace")).toEqual([]);
      expect(await asSuperuser("SELECT proname FROM pg_proc WHERE pronamespace = 'mig'::regnamespace")).toEqual([]);
    });
  }

  test('with reassignTo, what the lease created goes to that role, never to the admin', async () => {
    await dynamic('db:pg:mig-keep', 'db:pg:least', { grantPermissions: { what: 'CREATE, SELECT', where: 'mig.*' }, reassignTo: GRAVEYARD });
    const lease = await create('db:pg:mig-keep');
    await asLease(lease, ['CREATE TABLE kept (id int)', 'INSERT INTO kept VALUES (1)']);
    expectExit(await run(['dynamic', 'lease', 'revoke', lease.lease_id]), 0);
    expect(await roleExists(lease.username)).toBe(false);
    expect(await objectsOf(GRAVEYARD)).toEqual(['mig.kept']);
    await asSuperuser('DROP TABLE mig.kept');
  });

  test('`*.*` with CREATE reaches every non-system schema (public, app, mig) and never pg_catalog or information_schema', async () => {
    await dynamic('db:pg:everywhere', 'db:pg:super', { grantPermissions: { what: 'CREATE', where: '*.*' } });
    const lease = await create('db:pg:everywhere');
    const outcomes = {
      public: await outcome(lease, 'CREATE TABLE public.e (id int)'),
      app: await outcome(lease, 'CREATE TABLE app.e (id int)'),
      mig: await outcome(lease, 'CREATE TABLE mig.e (id int)'),
      pg_catalog: await outcome(lease, 'CREATE TABLE pg_catalog.e (id int)'),
      information_schema: await outcome(lease, 'CREATE TABLE information_schema.e (id int)'),
    };
    expect(outcomes).toEqual({ public: 'created', app: 'created', mig: 'created', pg_catalog: '42501', information_schema: '42501' });
    const held = await asSuperuser<{ schema: string }>(
      "SELECT nspname AS schema FROM pg_namespace WHERE has_schema_privilege($1, oid, 'CREATE') ORDER BY 1",
      [lease.username],
    );
    expect(held.map((h) => h.schema)).toEqual(['app', 'mig', 'public']);
    expectExit(await run(['dynamic', 'lease', 'revoke', lease.lease_id]), 0);
    expect(await objectsOf(lease.username).catch(() => [])).toEqual([]);
    expect(await asSuperuser("SELECT relname FROM pg_class WHERE relname = 'e'")).toEqual([]);
  });

  test('creationStatements done right: the statements make the role, grantPermissions is granted on top (never ignored)', async () => {
    await dynamic('db:pg:templated', 'db:pg:super', {
      grantPermissions: { what: 'SELECT', where: 'app.orders' },
      // The recipe's connectionLimit is the cap, applied after the statements, whatever they say.
      creationStatements: [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' CONNECTION LIMIT 50 IN ROLE ${ident(GRAVEYARD)}`],
      connectionLimit: 3,
    });
    const lease = await create('db:pg:templated');
    expect(await asLease(lease, ['SELECT count(*)::int AS n FROM app.orders'])).toEqual([{ n: 0 }]);
    const [role] = await asSuperuser<{ limit: number; member: boolean }>(
      `SELECT rolconnlimit AS limit, pg_has_role(oid, ${pg.escapeLiteral(GRAVEYARD)}, 'MEMBER') AS member FROM pg_roles WHERE rolname = $1`,
      [lease.username],
    );
    expect(role).toEqual({ limit: 3, member: true });
    expectExit(await run(['dynamic', 'lease', 'revoke', lease.lease_id]), 0);
    expect(await roleExists(lease.username)).toBe(false);
  });

  test('pgbench -i runs as a lease (no flags, its tables in mig); revoke drops its tables and the role', async () => {
    const lease = await create('db:pg:least-mig');
    const env = { PATH: process.env.PATH, PGHOST: lease.host, PGPORT: String(lease.port), PGDATABASE: lease.database, PGUSER: lease.username, PGPASSWORD: lease.password, PGSSLMODE: 'require' };
    const bench = await execa('pgbench', ['-i', '-s', '1', '-q'], { env, extendEnv: false, reject: false, timeout: 120_000 });
    expect({ exitCode: bench.exitCode, stderr: bench.exitCode === 0 ? '' : bench.stderr }).toEqual({ exitCode: 0, stderr: '' });
    const tables = await asSuperuser<{ name: string; owner: string }>(
      "SELECT relname AS name, relowner::regrole::text AS owner FROM pg_class WHERE relnamespace = 'mig'::regnamespace AND relkind = 'r' ORDER BY 1",
    );
    expect(tables).toEqual(PGBENCH_TABLES.map((name) => ({ name, owner: lease.username })));
    const [{ n }] = await asSuperuser<{ n: number }>('SELECT count(*)::int AS n FROM mig.pgbench_accounts');
    expect(n).toBe(100_000);

    expectExit(await run(['dynamic', 'lease', 'revoke', lease.lease_id]), 0);
    expect(await roleExists(lease.username)).toBe(false);
    expect(await asSuperuser("SELECT relname FROM pg_class WHERE relnamespace = 'mig'::regnamespace")).toEqual([]);
  });
});
