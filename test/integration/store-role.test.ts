/**
 * examples/kubernetes/store-role.sql, applied with psql as its header says, on the machine's
 * PostgreSQL 15 and on every version of the test matrix: once as a superuser, once as a
 * managed service's administrator (CREATEROLE, owner of the database, not superuser). Then
 * `sy init` is played by the owner role creating sy's tables, the file is applied again,
 * and the two roles are tried: sy_app can do with the rows what sy does, and nothing else;
 * sy_owner can change schema sy and nothing else. Every database and role is the test's
 * own (its tag in the names) and is dropped after.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
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

const SQL = readFileSync(join(ROOT, 'examples/kubernetes/store-role.sql'), 'utf8');
const dir = mkdtempSync(join(tmpdir(), 'sy-store-role-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

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
    const file = join(dir, `${T}.sql`);
    writeFileSync(file, SQL.replace(/\bsy_owner\b/g, names.owner).replace(/\bsy_app\b/g, names.app));
    const runAs = admin ? { user: names.dba, password } : { user: server.user, password: server.password };
    const apply = () =>
      psql(['-h', server.host, '-p', String(server.port), '-U', runAs.user, '-d', names.db, '-f', file], runAs.password ? { PGPASSWORD: runAs.password } : {});
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
      rmSync(file, { force: true });
    }
  });
});
