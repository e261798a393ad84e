/**
 * examples/kubernetes/store-role.sql, applied with psql as its header says, on the machine's
 * PostgreSQL 15 and on every version of the test matrix: once as a superuser, once as a
 * managed service's administrator (CREATEROLE, owner of the database, not superuser). Then
 * `sy init` is played by the owner role creating sy's tables, the file is applied again,
 * and the two roles are tried: sy_app can do with the rows what sy does, and nothing else;
 * sy_owner can change schema sy and nothing else. The role names are psql variables
 * (`-v owner=... -v app=...`) with no default: without them the file changes nothing, and
 * two stores on one server each get their own roles. Every database and role is the test's
 * own (its tag in the names) and is dropped after.
 */
import { join } from 'node:path';
import pg from 'pg';
import { ROOT } from '../helpers/cli.js';
import { LOCAL_PG, pgConnect, pgMatrix, psql, tag, type PgAdmin } from '../helpers/db.js';

/**
 * The store's tables as `sy init` creates them (src/store/postgres/schema.ts), played here
 * by sy_owner with stand-in columns so the role's grants are tried on every PostgreSQL
 * version of the matrix. The real `sy init` as sy_owner, then sy as sy_app, runs in
 * test/e2e/store.postgres.test.ts on the machine's server.
 */
const STORE_TABLES = ['meta', 'secrets', 'secret_versions', 'leases', 'audit_lines', 'schema_migrations', 'daemons', 'clients'];
/** A bigserial column, so the grants on sequences are tried too. */
const tableDdl = (table: string) => `CREATE TABLE sy.${table} (id bigserial PRIMARY KEY, k text NOT NULL DEFAULT '', v text)`;

const FILE = join(ROOT, 'examples/kubernetes/store-role.sql');

interface Server extends PgAdmin {
  label: string;
  major: number;
}

const servers = (): Server[] => [
  { ...LOCAL_PG, password: '', label: 'the machine\u2019s PostgreSQL 15', major: 15 },
  // The matrix's own cluster of the machine's version is the same server build: skipped.
  ...pgMatrix().filter((c) => c.major !== 15).map((c) => ({ ...c, label: `PostgreSQL ${c.version}` })),
];

/** A client on `database` as `user`; the clusters check passwords, the machine's server trusts 127.0.0.1. */
const connect = (server: Server, user: string, password: string, database: string) =>
  pgConnect({ host: server.host, port: server.port, user, password: password || undefined, database });

async function asSuperuser(server: Server, sql: string, database = 'postgres'): Promise<void> {
  const client = await connect(server, server.user, server.password, database);
  try {
    await client.query(sql);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The SQLSTATE a statement fails with, or 'ok'. */
async function outcome(client: pg.Client, sql: string): Promise<string> {
  try {
    await client.query(sql);
    return 'ok';
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
}

/** Fails naming the statement when it does not end as `code` ('ok' or a SQLSTATE). */
async function expectOutcome(client: pg.Client, sql: string, code: string): Promise<void> {
  expect({ sql, code: await outcome(client, sql) }).toEqual({ sql, code });
}

const id = pg.escapeIdentifier;
const INSUFFICIENT_PRIVILEGE = '42501';

describe.each([
  { how: 'a superuser', admin: false },
  { how: 'a managed service\u2019s administrator (CREATEROLE, owns the database)', admin: true },
])('store-role.sql applied by $how', ({ admin }) => {
  test.each(servers())('on $label: sy_app reads and writes rows only, sy_owner changes schema sy only', async (server) => {
    const T = tag();
    const names = { db: `sy_store_role_${T}`, owner: `sy_owner_${T}`, app: `sy_app_${T}`, dba: `sy_dba_${T}`, other: `sy_other_${T}` };
    const password = `pw-${T}`;
    const runAs = admin ? { user: names.dba, password } : { user: server.user, password: server.password };
    const apply = () =>
      psql(['-h', server.host, '-p', String(server.port), '-U', runAs.user, '-d', names.db, '-v', `owner=${names.owner}`, '-v', `app=${names.app}`, '-f', FILE], runAs.password ? { PGPASSWORD: runAs.password } : {});
    const clients: pg.Client[] = [];
    try {
      await asSuperuser(server, `CREATE ROLE ${id(names.other)} LOGIN PASSWORD '${password}'`);
      if (admin) {
        await asSuperuser(server, `CREATE ROLE ${id(names.dba)} LOGIN CREATEROLE PASSWORD '${password}'`);
        await asSuperuser(server, `CREATE DATABASE ${id(names.db)} OWNER ${id(names.dba)}`);
      } else {
        await asSuperuser(server, `CREATE DATABASE ${id(names.db)}`);
      }
      const first = await apply();
      if (admin && server.major < 15) {
        // Before 15, schema public belongs to the bootstrap superuser, and PUBLIC may create
        // in it: only a superuser can take that back, and the file says so rather than pass.
        expect(first.exitCode).not.toBe(0);
        expect(first.stderr).toContain(`${names.app} can create objects in schema public (run as its owner: REVOKE CREATE ON SCHEMA public FROM PUBLIC)`);
        return;
      }
      expect({ exitCode: first.exitCode, stderr: first.stderr.replace(/^.*NOTICE.*\n?/gm, '') }).toEqual({ exitCode: 0, stderr: '' });
      await asSuperuser(server, `ALTER ROLE ${id(names.owner)} PASSWORD '${password}'; ALTER ROLE ${id(names.app)} PASSWORD '${password}'`);

      // `sy init`, as sy_owner: its tables appear in schema sy, and nowhere else can it create.
      const owner = await connect(server, names.owner, password, names.db);
      clients.push(owner);
      for (const table of STORE_TABLES) await owner.query(tableDdl(table));
      await expectOutcome(owner, 'CREATE TABLE public.t (x int)', INSUFFICIENT_PRIVILEGE);
      await expectOutcome(owner, 'CREATE SCHEMA elsewhere', INSUFFICIENT_PRIVILEGE);
      await expectOutcome(owner, 'CREATE TEMP TABLE t (x int)', INSUFFICIENT_PRIVILEGE);
      await expectOutcome(owner, `CREATE ROLE ${id(`sy_x_${T}`)}`, INSUFFICIENT_PRIVILEGE);
      await expectOutcome(owner, `CREATE DATABASE ${id(`sy_x_${T}`)}`, INSUFFICIENT_PRIVILEGE);
      await expectOutcome(owner, 'SELECT rolpassword FROM pg_authid', INSUFFICIENT_PRIVILEGE);

      // Applied again after init: no error, nothing new needed.
      const again = await apply();
      expect({ exitCode: again.exitCode, stderr: again.stderr.replace(/^.*NOTICE.*\n?/gm, '') }).toEqual({ exitCode: 0, stderr: '' });

      // A newer sy's migration adds a table: sy_app may use it as soon as it exists.
      await expectOutcome(owner, tableDdl('later'), 'ok');
      const tables = [...STORE_TABLES, 'later'];

      const app = await connect(server, names.app, password, names.db);
      clients.push(app);
      for (const table of tables) {
        const t = `sy.${id(table)}`;
        await expectOutcome(app, `INSERT INTO ${t} DEFAULT VALUES`, 'ok');
        await expectOutcome(app, `UPDATE ${t} SET v = 'x' WHERE id = (SELECT id FROM ${t} ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)`, 'ok');
        await expectOutcome(app, `SELECT * FROM ${t}`, 'ok');
        await expectOutcome(app, `DELETE FROM ${t}`, 'ok');
        await expectOutcome(app, `TRUNCATE ${t}`, INSUFFICIENT_PRIVILEGE);
        await expectOutcome(app, `ALTER TABLE ${t} ADD COLUMN y int`, INSUFFICIENT_PRIVILEGE);
        await expectOutcome(app, `DROP TABLE ${t}`, INSUFFICIENT_PRIVILEGE);
        await expectOutcome(app, `CREATE TRIGGER t BEFORE INSERT ON ${t} FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()`, INSUFFICIENT_PRIVILEGE);
      }
      await expectOutcome(app, `SELECT nextval('sy.leases_id_seq')`, 'ok');
      // The daemons' wake-up calls.
      const notified = new Promise<string | undefined>((resolve) => app.once('notification', (n) => resolve(n.payload)));
      await expectOutcome(app, 'LISTEN sy_leases', 'ok');
      await expectOutcome(app, "SELECT pg_notify('sy_leases', 'changed')", 'ok');
      expect(await notified).toBe('changed');

      for (const sql of [
        'CREATE TABLE sy.t (x int)',
        'CREATE TABLE public.t (x int)',
        'CREATE SCHEMA elsewhere',
        'CREATE TEMP TABLE t (x int)',
        `CREATE ROLE ${id(`sy_x_${T}`)}`,
        `CREATE DATABASE ${id(`sy_x_${T}`)}`,
        'SELECT rolpassword FROM pg_authid',
        `SET ROLE ${id(names.owner)}`,
        "COPY sy.leases TO '/tmp/sy-store-role-copy'",
        "SELECT pg_read_file('/etc/hostname')",
      ]) {
        await expectOutcome(app, sql, INSUFFICIENT_PRIVILEGE);
      }

      const roles = (await app.query(
        `SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls,
                (SELECT count(*)::int FROM pg_auth_members m WHERE m.member = r.oid) AS memberships
         FROM pg_roles r WHERE rolname = ANY($1) ORDER BY rolname`,
        [[names.app, names.owner]],
      )).rows;
      const clean = { rolsuper: false, rolcreaterole: false, rolcreatedb: false, rolreplication: false, rolbypassrls: false, memberships: 0 };
      expect(roles).toEqual([{ rolname: names.app, ...clean }, { rolname: names.owner, ...clean }]);

      // Anyone else cannot even connect to the store's database.
      const other = await pgConnect({ host: server.host, port: server.port, user: names.other, password: password, database: names.db }).then(
        (c) => { clients.push(c); return 'connected'; },
        (error: { code?: string }) => error.code,
      );
      expect(other).toBe(INSUFFICIENT_PRIVILEGE);
    } finally {
      for (const client of clients) await client.end().catch(() => undefined);
      await asSuperuser(server, `DROP DATABASE IF EXISTS ${id(names.db)} WITH (FORCE)`);
      for (const role of [names.app, names.owner, names.dba, names.other]) await asSuperuser(server, `DROP ROLE IF EXISTS ${id(role)}`);
    }
  });
});

describe('store-role.sql on the machine\u2019s PostgreSQL 15', () => {
  const server = servers()[0];
  const applyTo = (db: string, vars: string[]) =>
    psql(['-h', server.host, '-p', String(server.port), '-U', server.user, '-d', db, ...vars.flatMap((v) => ['-v', v]), '-f', FILE]);
  const rolesLike = async (pattern: string) => {
    const client = await connect(server, server.user, server.password, 'postgres');
    try {
      return (await client.query('SELECT rolname FROM pg_roles WHERE rolname LIKE $1 ORDER BY rolname', [pattern])).rows.map((r) => r.rolname as string);
    } finally {
      await client.end().catch(() => undefined);
    }
  };
  const schemaOwner = async (db: string) => {
    const client = await connect(server, server.user, server.password, db);
    try {
      return (await client.query("SELECT nspowner::regrole::text AS owner FROM pg_namespace WHERE nspname = 'sy'")).rows[0]?.owner as string | undefined;
    } finally {
      await client.end().catch(() => undefined);
    }
  };

  test('without both role names, it stops before it changes anything and says which variables it needs', async () => {
    const T = tag();
    const db = `sy_store_role_${T}`;
    try {
      await asSuperuser(server, `CREATE DATABASE ${id(db)}`);
      for (const vars of [[], [`owner=sy_owner_${T}`], [`app=sy_app_${T}`], [`owner=sy_same_${T}`, `app=sy_same_${T}`]]) {
        const result = await applyTo(db, vars);
        expect({ vars, exitCode: result.exitCode }).toEqual({ vars, exitCode: 3 });
        expect(result.stderr).toMatch(vars.length === 2 ? /must be two roles/ : /needs the names of the store's two roles: psql -v owner=NAME -v app=NAME/);
        expect(await schemaOwner(db)).toBeUndefined();
      }
      expect(await rolesLike(`sy\\_%\\_${T}`)).toEqual([]);
    } finally {
      await asSuperuser(server, `DROP DATABASE IF EXISTS ${id(db)} WITH (FORCE)`);
      for (const role of [`sy_owner_${T}`, `sy_app_${T}`, `sy_same_${T}`]) await asSuperuser(server, `DROP ROLE IF EXISTS ${id(role)}`);
    }
  });

  test('two stores on one server: each has its own database and roles, and neither role reaches the other store', async () => {
    const T = tag();
    const stores = ['a', 'b'].map((s) => ({ db: `sy_store_${s}_${T}`, owner: `sy_owner_${s}_${T}`, app: `sy_app_${s}_${T}` }));
    const password = `pw-${T}`;
    try {
      for (const store of stores) {
        await asSuperuser(server, `CREATE DATABASE ${id(store.db)}`);
        const result = await applyTo(store.db, [`owner=${store.owner}`, `app=${store.app}`]);
        expect({ db: store.db, exitCode: result.exitCode, stderr: result.stderr.replace(/^.*NOTICE.*\n?/gm, '') }).toEqual({ db: store.db, exitCode: 0, stderr: '' });
        expect(await schemaOwner(store.db)).toBe(store.owner);
        await asSuperuser(server, `ALTER ROLE ${id(store.app)} PASSWORD '${password}'`);
      }
      // The first store's app role cannot connect to the second store's database.
      const crossed = await pgConnect({ host: server.host, port: server.port, user: stores[0].app, password, database: stores[1].db }).then(
        async (c) => { await c.end(); return 'connected'; },
        (error: { code?: string }) => error.code,
      );
      expect(crossed).toBe(INSUFFICIENT_PRIVILEGE);
    } finally {
      for (const store of stores) {
        await asSuperuser(server, `DROP DATABASE IF EXISTS ${id(store.db)} WITH (FORCE)`);
        for (const role of [store.app, store.owner]) await asSuperuser(server, `DROP ROLE IF EXISTS ${id(role)}`);
      }
    }
  });
});
