/**
 * A lease holder who plants code where the admin's statements would find it, on every
 * PostgreSQL version of the matrix (13 to 18), with the README's least-privilege CREATEROLE
 * admin, through the built bin/sy.
 *
 * The lease can create objects in schema `public` (PUBLIC may, as on PostgreSQL 14 and older
 * and on databases upgraded from them). It defines operators and functions that match the
 * argument types of sy's own catalog queries better than the catalog's do (`name ~ name`,
 * `has_schema_privilege(text, oid, text)`, `unnest(text[])`...), or, when someone put
 * `public` before `pg_catalog` in the admin's search_path, the very names sy calls. Each
 * one writes a row into a marker table that only the admin may write. Then sy does what it
 * does as the admin: the sweep and its reaper, the recipe check, lease create, revoke. The
 * marker stays empty and the lease never gains anything.
 */
import pg from 'pg';
import { leaseRunner, makeHome, type Lease, type SyHome } from '../helpers/cli.js';
import { pgConnect, pgMatrix, pgQueryOn, tag, type PgAdmin } from '../helpers/db.js';

const T = tag();
const ident = (name: string): string => pg.escapeIdentifier(name);

/** Writes one marker row as whoever runs it; a lease calling its own hijack fails quietly. */
const MARK = `CREATE FUNCTION public.sy_mark(via text) RETURNS void LANGUAGE plpgsql AS $f$
  BEGIN INSERT INTO public.sy_marker VALUES (CURRENT_USER::text, via); EXCEPTION WHEN others THEN NULL; END $f$`;

/** Operators and functions that a better match would pick over the catalog's, for sy's own queries. */
const BETTER_MATCHES = [
  MARK,
  `CREATE FUNCTION public.sy_re(name, name) RETURNS boolean LANGUAGE plpgsql AS $f$
     BEGIN PERFORM public.sy_mark('~'); RETURN pg_catalog.textregexeq($1::text, $2::text); END $f$`,
  'CREATE OPERATOR public.~ (LEFTARG = name, RIGHTARG = name, FUNCTION = public.sy_re)',
  `CREATE FUNCTION public.sy_like(name, name) RETURNS boolean LANGUAGE plpgsql AS $f$
     BEGIN PERFORM public.sy_mark('~~'); RETURN pg_catalog.textlike($1::text, $2::text); END $f$`,
  'CREATE OPERATOR public.~~ (LEFTARG = name, RIGHTARG = name, FUNCTION = public.sy_like)',
  `CREATE FUNCTION public.has_schema_privilege(text, oid, text) RETURNS boolean LANGUAGE plpgsql AS $f$
     BEGIN PERFORM public.sy_mark('has_schema_privilege'); RETURN pg_catalog.has_schema_privilege($1::name, $2, $3); END $f$`,
  `CREATE FUNCTION public.has_table_privilege(text, oid, text) RETURNS boolean LANGUAGE plpgsql AS $f$
     BEGIN PERFORM public.sy_mark('has_table_privilege'); RETURN pg_catalog.has_table_privilege($1::name, $2, $3); END $f$`,
  `CREATE FUNCTION public.cardinality(text[]) RETURNS integer LANGUAGE plpgsql AS $f$
     BEGIN PERFORM public.sy_mark('cardinality'); RETURN pg_catalog.cardinality($1); END $f$`,
  `CREATE FUNCTION public.unnest(text[]) RETURNS SETOF text LANGUAGE plpgsql AS $f$
     BEGIN PERFORM public.sy_mark('unnest(text[])'); RETURN QUERY SELECT pg_catalog.unnest($1); END $f$`,
  `CREATE FUNCTION public.unnest(oid[]) RETURNS SETOF oid LANGUAGE plpgsql AS $f$
     BEGIN PERFORM public.sy_mark('unnest(oid[])'); RETURN QUERY SELECT pg_catalog.unnest($1); END $f$`,
  `CREATE FUNCTION public.quote_ident(name) RETURNS text LANGUAGE plpgsql AS $f$
     BEGIN PERFORM public.sy_mark('quote_ident'); RETURN pg_catalog.quote_ident($1::text); END $f$`,
  `CREATE FUNCTION public.pg_terminate_backend(integer, integer) RETURNS boolean LANGUAGE plpgsql AS $f$
     BEGIN PERFORM public.sy_mark('pg_terminate_backend'); RETURN false; END $f$`,
  `CREATE FUNCTION public.to_regclass(name) RETURNS regclass LANGUAGE plpgsql AS $f$
     BEGIN PERFORM public.sy_mark('to_regclass'); RETURN pg_catalog.to_regclass($1::text); END $f$`,
];

/** The same names and argument types as the catalog's: only a search_path with public first reaches them. */
const SAME_NAMES = [
  MARK,
  `CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql AS $f$
     BEGIN PERFORM public.sy_mark('now'); RETURN pg_catalog.now(); END $f$`,
  `CREATE FUNCTION public.pg_backend_pid() RETURNS integer LANGUAGE plpgsql AS $f$
     BEGIN PERFORM public.sy_mark('pg_backend_pid'); RETURN pg_catalog.pg_backend_pid(); END $f$`,
  `CREATE FUNCTION public.current_setting(text) RETURNS text LANGUAGE plpgsql AS $f$
     BEGIN PERFORM public.sy_mark('current_setting'); RETURN pg_catalog.current_setting($1); END $f$`,
  `CREATE FUNCTION public.pg_has_role(oid, text) RETURNS boolean LANGUAGE plpgsql AS $f$
     BEGIN PERFORM public.sy_mark('pg_has_role'); RETURN pg_catalog.pg_has_role($1, $2); END $f$`,
  `CREATE FUNCTION public.sy_nameeq(name, name) RETURNS boolean LANGUAGE plpgsql AS $f$
     BEGIN PERFORM public.sy_mark('=(name,name)'); RETURN pg_catalog.nameeq($1, $2); END $f$`,
  'CREATE OPERATOR public.= (LEFTARG = name, RIGHTARG = name, FUNCTION = public.sy_nameeq)',
  `CREATE FUNCTION public.sy_texteq(name, text) RETURNS boolean LANGUAGE plpgsql AS $f$
     BEGIN PERFORM public.sy_mark('=(name,text)'); RETURN pg_catalog.texteq($1::text, $2); END $f$`,
  'CREATE OPERATOR public.= (LEFTARG = name, RIGHTARG = text, FUNCTION = public.sy_texteq)',
  // A relation named like a catalog view: found first only when pg_catalog comes after public.
  `CREATE VIEW public.pg_roles AS SELECT * FROM pg_catalog.pg_roles WHERE public.sy_mark('pg_roles') IS NOT NULL`,
  'GRANT SELECT ON public.pg_roles TO PUBLIC',
];

describe.each(pgMatrix())('PostgreSQL $version', (cluster) => {
  const DB = `sy_sp${cluster.major}_${T}`;
  const PREFIX = `sp${cluster.major}${T}_`;
  const LEAST: PgAdmin = { host: cluster.host, port: cluster.port, user: `sysp${cluster.major}_${T}`, password: `Sp9-${tag(24)}` };
  const asSuperuser = <R extends pg.QueryResultRow = any>(sql: string, params: unknown[] = [], database = DB) => pgQueryOn<R>(cluster, sql, params, database);
  let sy: SyHome;
  const { run, ok, create } = leaseRunner(() => sy);

  /** The marker rows: who ran a lease's code, and through what. */
  const marks = async (): Promise<{ who: string; via: string }[]> => asSuperuser('SELECT DISTINCT who, via FROM public.sy_marker ORDER BY via');
  const roleExists = async (name: string): Promise<boolean> => (await asSuperuser('SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) $1::text', [name])).length === 1;

  /** What the lease holds beyond its recipe: role attributes, memberships (read past the lease's own names). */
  const powers = async (lease: Lease) =>
    asSuperuser(
      `SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls OR rolreplication AS attributes,
              (SELECT count(*)::int FROM pg_catalog.pg_auth_members m WHERE m.member OPERATOR(pg_catalog.=) r.oid) AS memberships
         FROM pg_catalog.pg_roles r WHERE rolname OPERATOR(pg_catalog.=) $1::text`,
      [lease.username],
    );

  async function plant(lease: Lease, statements: string[]): Promise<void> {
    const session = await pgConnect({ host: cluster.host, port: cluster.port, user: lease.username, password: lease.password, database: DB });
    try {
      for (const statement of statements) await session.query(statement);
    } finally {
      await session.end();
    }
  }

  /** Everything sy does as the admin on this server, with the lease's code in place. */
  async function everyAdminPath(attacker: Lease): Promise<void> {
    // Sweep and reaper: the reaper lists sy's users with a regular expression.
    await ok(['dynamic', 'sweep']);
    // The recipe check, on a named schema and on *.* (LIKE on schema names).
    await ok(['secret', 'create', `db:pg:check${tag(3)}`, '--attributes', recipe({ what: 'SELECT', where: 'app.*' })]);
    await run(['secret', 'create', `db:pg:every${tag(3)}`, '--attributes', recipe({ what: 'SELECT', where: '*.*' })]);
    // Creating another lease (its grants are checked afterwards), then revoking both.
    const other = await create('db:pg:orders');
    await ok(['dynamic', 'lease', 'revoke', other.lease_id]);
    expect(await powers(attacker)).toEqual([{ attributes: false, memberships: 0 }]);
    await ok(['dynamic', 'lease', 'revoke', attacker.lease_id]);
    expect(await roleExists(attacker.username)).toBe(false);
    expect(await roleExists(other.username)).toBe(false);
  }

  const recipe = (grantPermissions: { what: string; where: string }): string =>
    JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: 'db:pg:root' }, grantPermissions, userPrefix: PREFIX, ttl: 600 });

  beforeAll(async () => {
    await asSuperuser(`CREATE DATABASE ${ident(DB)}`, [], 'postgres');
    for (const statement of [
      'CREATE SCHEMA app',
      'CREATE TABLE app.orders (id int)',
      // PostgreSQL 14 and older, and databases upgraded from them: anyone may create in public.
      'GRANT CREATE ON SCHEMA public TO PUBLIC',
      'CREATE TABLE public.sy_marker (who text, via text)',
      // The README's least-privilege admin; only it (and the superuser) may write the marker.
      `CREATE ROLE ${ident(LEAST.user)} WITH LOGIN CREATEROLE PASSWORD ${pg.escapeLiteral(LEAST.password)}`,
      `GRANT USAGE ON SCHEMA app TO ${ident(LEAST.user)} WITH GRANT OPTION`,
      `GRANT SELECT ON app.orders TO ${ident(LEAST.user)} WITH GRANT OPTION`,
      `GRANT INSERT ON public.sy_marker TO ${ident(LEAST.user)}`,
    ]) {
      await asSuperuser(statement);
    }
    sy = await makeHome();
    await ok(['secret', 'create', 'db:pg:root', '--attributes', '{"type": "postgresql"}', '--data', '-'], {
      input: JSON.stringify({ host: LEAST.host, port: LEAST.port, username: LEAST.user, password: LEAST.password, database: DB }),
    });
    await ok(['secret', 'create', 'db:pg:orders', '--attributes', recipe({ what: 'SELECT', where: 'app.orders' })]);
  });

  afterEach(async () => {
    // Whatever a failed test left planted must not reach the next one.
    const leases = await asSuperuser<{ rolname: string }>('SELECT rolname FROM pg_catalog.pg_roles WHERE pg_catalog.starts_with(rolname, $1::text)', [PREFIX]);
    for (const { rolname } of leases) await asSuperuser(`DROP OWNED BY ${ident(rolname)} CASCADE`).catch(() => undefined);
    await asSuperuser('DELETE FROM public.sy_marker');
    await asSuperuser(`ALTER ROLE ${ident(LEAST.user)} RESET search_path`).catch(() => undefined);
    await asSuperuser(`ALTER ROLE ${ident(LEAST.user)} IN DATABASE ${ident(DB)} RESET search_path`).catch(() => undefined);
    await asSuperuser(`ALTER DATABASE ${ident(DB)} RESET search_path`, [], 'postgres').catch(() => undefined);
  });

  afterAll(async () => {
    if (sy) {
      await sy.run(['dynamic', 'lease', 'revoke', '--prefix', 'db', '--yes', '--force']).catch(() => undefined);
      sy.cleanup();
    }
    await asSuperuser(`DROP DATABASE IF EXISTS ${ident(DB)} WITH (FORCE)`, [], 'postgres').catch(() => undefined);
    const roles = await asSuperuser<{ rolname: string }>('SELECT rolname FROM pg_catalog.pg_roles WHERE pg_catalog.starts_with(rolname, $1::text)', [PREFIX], 'postgres').catch(() => []);
    for (const name of [...roles.map((r) => r.rolname), LEAST.user]) await asSuperuser(`DROP ROLE IF EXISTS ${ident(name)}`, [], 'postgres').catch(() => undefined);
  });

  test('operators and functions that match sy’s argument types better than the catalog’s never run as the admin', async () => {
    const attacker = await create('db:pg:orders');
    await plant(attacker, BETTER_MATCHES);
    // The plants work: the lease's own session picks them (its own call fails to write the marker).
    const session = await pgConnect({ host: cluster.host, port: cluster.port, user: attacker.username, password: attacker.password, database: DB });
    try {
      const { rows } = await session.query("SELECT oprnamespace::regnamespace::text AS schema FROM pg_operator WHERE oid = '~(name,name)'::regoperator");
      expect(rows).toEqual([{ schema: 'public' }]);
    } finally {
      await session.end();
    }

    await everyAdminPath(attacker);
    expect(await marks()).toEqual([]);
  });

  test.each([
    ['the admin role', (db: string, admin: string) => `ALTER ROLE ${ident(admin)} SET search_path = public, pg_catalog`],
    ['the admin role in its database', (db: string, admin: string) => `ALTER ROLE ${ident(admin)} IN DATABASE ${ident(db)} SET search_path = public, pg_catalog`],
    ['the database', (db: string) => `ALTER DATABASE ${ident(db)} SET search_path = public, pg_catalog`],
  ])('a search_path with public first, set on %s by someone else, reaches nothing named like what sy calls', async (_where, setting) => {
    await asSuperuser(setting(DB, LEAST.user), [], 'postgres');
    const attacker = await create('db:pg:orders');
    await plant(attacker, SAME_NAMES);
    await everyAdminPath(attacker);
    expect(await marks()).toEqual([]);
  });
});
