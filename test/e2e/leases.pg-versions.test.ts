/**
 * The core lease flow through the built bin/sy on every PostgreSQL version the tests run
 * (pgMatrix(): 13 to 18, each a throwaway SCRAM + TLS cluster), once with the superuser as
 * the admin and once with the least-privilege CREATEROLE admin of the README.
 *
 * Two server changes matter here. Up to 14 every role may create objects in schema public,
 * so a lease can leave a table or a SECURITY DEFINER function behind; revoking must not hand
 * those to a login role, least of all to the admin (a SECURITY DEFINER function owned by the
 * admin runs as the admin for whoever calls it). From 16 on, CREATEROLE no longer reaches
 * every role: an admin may only manage the roles it holds ADMIN OPTION on, which the server
 * gives it for the roles it creates.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { leaseRunner, makeHome, type Lease, type SyHome } from '../helpers/cli.js';
import { expectExit, pgConnect, pgLoginError, pgMatrix, pgQueryOn, SY_MARKER, tag, type PgAdmin } from '../helpers/db.js';
import { syLookingName } from '../helpers/revocation.js';

const T = tag();
const ident = (name: string): string => pg.escapeIdentifier(name);

/** The two admins a base secret may name; `key` starts their leases' user prefix. */
const ADMINS = [
  { key: 's', label: 'the superuser as admin' },
  { key: 'l', label: 'a least-privilege CREATEROLE admin' },
] as const;

describe.each(pgMatrix())('PostgreSQL $version', (cluster) => {
  const DB = `sy_ver${cluster.major}_${T}`;
  const LEAST: PgAdmin = { host: cluster.host, port: cluster.port, user: `sya${cluster.major}_${T}`, password: `Ly9-${tag(24)}` };
  const prefixes = ADMINS.map((a) => `${a.key}${cluster.major}${T}_`);
  const ca = readFileSync(cluster.certFile, 'utf8');
  const asSuperuser = <R extends pg.QueryResultRow = any>(sql: string, params: unknown[] = [], database = DB) => pgQueryOn<R>(cluster, sql, params, database);
  const roleExists = async (name: string): Promise<boolean> => (await asSuperuser('SELECT 1 FROM pg_roles WHERE rolname = $1', [name])).length === 1;
  /** A lease's login, over TLS verified against the cluster's certificate. */
  const leaseLogin = (lease: Lease, password = lease.password): pg.ClientConfig => ({
    host: lease.host, port: lease.port, user: lease.username, password, database: lease.database, ssl: { ca, servername: 'localhost' },
  });

  beforeAll(async () => {
    await asSuperuser(`CREATE DATABASE ${ident(DB)}`, [], 'postgres');
    for (const statement of [
      'CREATE SCHEMA app',
      'CREATE TABLE app.orders (id int)',
      'INSERT INTO app.orders VALUES (7)',
      'CREATE TABLE app.hidden (secret text)',
      "INSERT INTO app.hidden VALUES ('not for leases')",
      // The README's least-privilege admin, as it stands.
      `CREATE ROLE ${ident(LEAST.user)} WITH LOGIN CREATEROLE PASSWORD ${pg.escapeLiteral(LEAST.password)}`,
      `GRANT USAGE ON SCHEMA app TO ${ident(LEAST.user)} WITH GRANT OPTION`,
      `GRANT SELECT ON app.orders TO ${ident(LEAST.user)} WITH GRANT OPTION`,
    ]) {
      await asSuperuser(statement);
    }
  });

  afterAll(async () => {
    await asSuperuser(`DROP DATABASE IF EXISTS ${ident(DB)} WITH (FORCE)`, [], 'postgres').catch(() => undefined);
    // With the database gone these roles own nothing and hold no privilege: they drop as they are.
    const roles = await asSuperuser<{ rolname: string }>(
      'SELECT rolname FROM pg_roles WHERE rolname = $1 OR starts_with(rolname, $2) OR starts_with(rolname, $3)',
      [LEAST.user, ...prefixes],
      'postgres',
    ).catch(() => []);
    // The admin last: on 16+ it is the grantor of its memberships in the others.
    const names = [...roles.map((r) => r.rolname).filter((name) => name !== LEAST.user), LEAST.user];
    for (const name of names) await asSuperuser(`DROP ROLE IF EXISTS ${ident(name)}`, [], 'postgres').catch(() => undefined);
  });

  describe.each(ADMINS)('with $label', ({ key }) => {
    const PREFIX = `${key}${cluster.major}${T}_`;
    const admin: PgAdmin = key === 's' ? cluster : LEAST;
    const TABLE = `made_t_${PREFIX}`;
    const FUNCTION = `made_f_${PREFIX}`;
    let sy: SyHome;
    const { run, ok, create } = leaseRunner(() => sy);
    let lease: Lease;
    /** The lease's session that stays open until revoke ends it. */
    let session: pg.Client | undefined;

    beforeAll(async () => {
      sy = await makeHome();
      await ok(['secret', 'create', '--body', '-'], {
        input: JSON.stringify({
          path: 'db:postgresql:admin',
          attributes: { type: 'postgresql' },
          data: { host: cluster.host, port: cluster.port, username: admin.user, password: admin.password, database: DB, ssl: { ca, servername: 'localhost' } },
        }),
      });
      await ok([
        'secret', 'create', 'db:postgresql:orders', '--attributes',
        JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: 'db:postgresql:admin' }, grantPermissions: { what: 'SELECT', where: 'app.orders' }, userPrefix: PREFIX, ttl: 600 }),
      ]);
    });

    afterAll(async () => {
      await session?.end().catch(() => undefined);
      if (sy) {
        await sy.run(['dynamic', 'lease', 'revoke', '--prefix', 'db', '--yes', '--force']).catch(() => undefined);
        sy.cleanup();
      }
    });

    test('lease create gives a SCRAM login over TLS that reads its table and nothing else', async () => {
      lease = await create('db:postgresql:orders');
      expect(lease).toMatchObject({ host: cluster.host, port: cluster.port, database: DB });
      expect(lease.username).toMatch(new RegExp(`^${PREFIX}${SY_MARKER.source}`));
      expect(await pgLoginError(leaseLogin(lease))).toBeUndefined();
      expect(await pgLoginError(leaseLogin(lease, `${lease.password}x`))).toBe('28P01');

      session = await pgConnect(leaseLogin(lease));
      const who = await session.query(
        "SELECT current_user AS user, current_setting('server_version_num')::int / 10000 AS major, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
      );
      expect(who.rows).toEqual([{ user: lease.username, major: cluster.major, ssl: true }]);
      expect((await session.query('SELECT id FROM app.orders')).rows).toEqual([{ id: 7 }]);
      await expect(session.query('SELECT secret FROM app.hidden')).rejects.toMatchObject({ code: '42501' });
    });

    test('the lease can create objects in schema public before PostgreSQL 15, and cannot from 15 on', async () => {
      const outcome = (sql: string) => session!.query(sql).then(() => 'created', (error: { code?: string }) => error.code);
      const made = {
        table: await outcome(`CREATE TABLE public.${ident(TABLE)} (id int)`),
        function: await outcome(`CREATE FUNCTION public.${ident(FUNCTION)}() RETURNS text LANGUAGE sql SECURITY DEFINER AS 'SELECT current_user::text'`),
      };
      expect(made).toEqual(cluster.major < 15 ? { table: 'created', function: 'created' } : { table: '42501', function: '42501' });
      const owners = await asSuperuser<{ owner: string }>(
        'SELECT relowner::regrole::text AS owner FROM pg_class WHERE relname = $1 UNION ALL SELECT proowner::regrole::text FROM pg_proc WHERE proname = $2',
        [TABLE, FUNCTION],
      );
      expect(owners).toEqual(cluster.major < 15 ? [{ owner: lease.username }, { owner: lease.username }] : []);
    });

    test('lease revoke ends the open session, drops the role and leaves nothing depending on it', async () => {
      const [{ oid }] = await asSuperuser<{ oid: string }>('SELECT oid FROM pg_roles WHERE rolname = $1', [lease.username]);
      expect((await session!.query('SELECT 1 AS alive')).rows).toEqual([{ alive: 1 }]);

      expectExit(await run(['dynamic', 'lease', 'revoke', lease.lease_id]), 0);
      await expect(session!.query('SELECT 1')).rejects.toThrow();
      expect(await roleExists(lease.username)).toBe(false);
      const [{ n }] = await asSuperuser<{ n: number }>("SELECT count(*)::int AS n FROM pg_shdepend WHERE refclassid = 'pg_authid'::regclass AND refobjid = $1::oid", [oid]);
      expect(n).toBe(0);
      expect(await pgLoginError(leaseLogin(lease))).toMatch(/^28/);
      expect(await ok(['dynamic', 'lease', 'lookup', lease.lease_id])).toMatchObject({ state: 'revoked' });
    });

    test('what the lease created is gone or owned by a role that cannot log in, never by the admin', async () => {
      const leftovers = await asSuperuser<{ object: string; owner: string; login: boolean }>(
        `SELECT 'table ' || c.relname AS object, r.rolname AS owner, r.rolcanlogin AS login
           FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE c.relname = $1
         UNION ALL
         SELECT 'function ' || p.proname, r.rolname, r.rolcanlogin
           FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner WHERE p.proname = $2`,
        [TABLE, FUNCTION],
      );
      expect(leftovers.filter((o) => o.login)).toEqual([]);
    });

    test('dynamic sweep reaps an orphan past the bound in its name and keeps one whose bound is ahead', async () => {
      const past = syLookingName(PREFIX, new Date(Date.now() - 60_000), tag(10));
      const ahead = syLookingName(PREFIX, new Date(Date.now() + 3600_000), tag(10));
      // Made by the admin itself, as a crash between creating a user and recording it leaves them.
      for (const name of [past, ahead]) await pgQueryOn(admin, `CREATE ROLE ${ident(name)} LOGIN`, [], DB);

      const sweep = await ok(['dynamic', 'sweep']);
      expect(sweep).toMatchObject({ failed: 0, reap_errors: [] });
      expect(sweep.reaped).toBeGreaterThanOrEqual(1);
      expect({ past: await roleExists(past), ahead: await roleExists(ahead) }).toEqual({ past: false, ahead: true });
    });
  });
});
