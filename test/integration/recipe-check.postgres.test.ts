/**
 * PostgresTarget.checkRecipe against every PostgreSQL version of the matrix (13 to 18):
 * what a recipe names must exist and be grantable by the base secret's admin, checked
 * read-only before the secret is stored. Each version gets its own database and roles,
 * dropped at the end.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { BaseConnection, GrantPermission } from '../../src/model/secret.js';
import { newPassword } from '../../src/targets/names.js';
import { PostgresTarget } from '../../src/targets/postgres.js';
import { pgMatrix, pgQueryOn } from '../helpers/db.js';

describe.each(pgMatrix())('checkRecipe on PostgreSQL $version', (cluster) => {
  const RUN = `${cluster.major}_${randomBytes(4).toString('hex')}`;
  const DB = `sy_rc_${RUN}`;
  /** A database whose only schema was dropped: `*.*` reaches nothing there. */
  const EMPTY_DB = `sy_rce_${RUN}`;
  const ADMIN = `sy_rc_admin_${RUN}`;
  const ADMIN_PASSWORD = newPassword();
  const GRAVEYARD = `sy_rc_grave_${RUN}`;
  const LOGIN_ROLE = `sy_rc_login_${RUN}`;
  const OPTIONS = { connectTimeoutMs: 3000 };
  const LABEL = `127.0.0.1:${cluster.port}/${DB}`;

  const superConn: BaseConnection = { engine: 'postgresql', host: '127.0.0.1', port: cluster.port, username: 'postgres', password: cluster.password, database: DB };
  const adminConn: BaseConnection = { ...superConn, username: ADMIN, password: ADMIN_PASSWORD };
  const on = (schema: string, table: string, ...privileges: string[]): GrantPermission => ({ privileges: privileges.length > 0 ? privileges : ['SELECT'], schema, table });
  const asSuper = (sql: string, database = DB) => pgQueryOn(cluster, sql, [], database);

  let superTarget: PostgresTarget;
  let adminTarget: PostgresTarget;

  beforeAll(async () => {
    await asSuper(`CREATE DATABASE ${DB}`, 'postgres');
    await asSuper(`CREATE DATABASE ${EMPTY_DB}`, 'postgres');
    await asSuper('DROP SCHEMA public CASCADE', EMPTY_DB);
    await asSuper(`
      CREATE SCHEMA app;
      CREATE TABLE app.items (id int);
      CREATE TABLE app.secrets (x int);
      CREATE TABLE app.open (x int);
      GRANT SELECT ON app.open TO PUBLIC;
      CREATE SCHEMA other;
      CREATE TABLE other.notes (n text);
      CREATE ROLE ${ADMIN} LOGIN CREATEROLE PASSWORD '${ADMIN_PASSWORD}';
      GRANT USAGE ON SCHEMA app TO ${ADMIN} WITH GRANT OPTION;
      GRANT SELECT, INSERT ON app.items TO ${ADMIN} WITH GRANT OPTION;
      GRANT SELECT ON app.secrets TO ${ADMIN};
      CREATE ROLE ${GRAVEYARD} NOLOGIN;
      CREATE ROLE ${LOGIN_ROLE} LOGIN;
    `);
    superTarget = await PostgresTarget.connect(superConn, OPTIONS);
    adminTarget = await PostgresTarget.connect(adminConn, OPTIONS);
  });

  afterAll(async () => {
    await superTarget?.close();
    await adminTarget?.close();
    await asSuper(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`, 'postgres');
    await asSuper(`DROP DATABASE IF EXISTS ${EMPTY_DB} WITH (FORCE)`, 'postgres');
    for (const role of [ADMIN, GRAVEYARD, LOGIN_ROLE]) await asSuper(`DROP ROLE IF EXISTS ${role}`, 'postgres');
  });

  test('a superuser may grant anything that exists: no problem for a table, a schema or *.*', async () => {
    expect(await superTarget.checkRecipe([on('app', 'items', 'ALL'), on('app', '*', 'SELECT', 'UPDATE'), on('*', '*', 'ALL')])).toEqual([]);
  });

  test('a table or schema that does not exist is named, with the server and database', async () => {
    expect(await superTarget.checkRecipe([on('app', 'nope')])).toEqual([`grantPermissions: table app.nope does not exist on ${LABEL}.`]);
    expect(await superTarget.checkRecipe([on('nope', '*'), on('nope', 'items')])).toEqual([`grantPermissions: schema nope does not exist on ${LABEL}.`]);
    // Names are matched as written: App is not app.
    expect(await superTarget.checkRecipe([on('App', 'items')])).toEqual([`grantPermissions: schema App does not exist on ${LABEL}.`]);
  });

  test('the least-privilege admin passes for what it holds WITH GRANT OPTION', async () => {
    expect(await adminTarget.checkRecipe([on('app', 'items', 'SELECT', 'INSERT')])).toEqual([]);
  });

  test('a privilege the admin holds without GRANT OPTION, or not at all, is named', async () => {
    expect(await adminTarget.checkRecipe([on('app', 'secrets')])).toEqual([`grantPermissions: the admin ${ADMIN} does not hold SELECT on app.secrets WITH GRANT OPTION.`]);
    expect(await adminTarget.checkRecipe([on('app', 'items', 'SELECT', 'DELETE')])).toEqual([`grantPermissions: the admin ${ADMIN} does not hold DELETE on app.items WITH GRANT OPTION.`]);
    // ALL is the data privileges, each of which must be grantable.
    expect(await adminTarget.checkRecipe([on('app', 'items', 'ALL')])).toEqual([
      `grantPermissions: the admin ${ADMIN} does not hold UPDATE, DELETE, TRUNCATE, REFERENCES on app.items WITH GRANT OPTION.`,
    ]);
  });

  test('what PUBLIC holds needs no grant option: the lease has it anyway', async () => {
    expect(await adminTarget.checkRecipe([on('app', 'open')])).toEqual([]);
  });

  test('s.* needs the privileges on every table of the schema, *.* on every non-system schema', async () => {
    expect(await adminTarget.checkRecipe([on('app', '*')])).toEqual([`grantPermissions: the admin ${ADMIN} does not hold SELECT on app.secrets WITH GRANT OPTION.`]);
    expect(await adminTarget.checkRecipe([on('other', 'notes')])).toEqual([
      `grantPermissions: the admin ${ADMIN} does not hold USAGE on schema other WITH GRANT OPTION.`,
      `grantPermissions: the admin ${ADMIN} does not hold SELECT on other.notes WITH GRANT OPTION.`,
    ]);
    expect(await adminTarget.checkRecipe([on('*', '*')])).toEqual([
      `grantPermissions: the admin ${ADMIN} does not hold SELECT on app.secrets WITH GRANT OPTION.`,
      `grantPermissions: the admin ${ADMIN} does not hold USAGE on schema other WITH GRANT OPTION.`,
      `grantPermissions: the admin ${ADMIN} does not hold SELECT on other.notes WITH GRANT OPTION.`,
    ]);
  });

  test('*.* in a database with no schema but the system ones reaches nothing', async () => {
    const empty = await PostgresTarget.connect({ ...superConn, database: EMPTY_DB }, OPTIONS);
    try {
      expect(await empty.checkRecipe([on('*', '*')])).toEqual([`grantPermissions: *.* reaches nothing on 127.0.0.1:${cluster.port}/${EMPTY_DB}: it has no schema but the system ones.`]);
    } finally {
      await empty.close();
    }
  });

  test('reassignTo must name an existing role that cannot log in', async () => {
    expect(await superTarget.checkRecipe([on('app', 'items')], { reassignTo: GRAVEYARD })).toEqual([]);
    expect(await superTarget.checkRecipe([on('app', 'items')], { reassignTo: `${GRAVEYARD}x` })).toEqual([
      `reassignTo: the role "${GRAVEYARD}x" at 127.0.0.1:${cluster.port} does not exist.`,
    ]);
    expect(await superTarget.checkRecipe([on('app', 'items')], { reassignTo: LOGIN_ROLE })).toEqual([
      `reassignTo: the role "${LOGIN_ROLE}" at 127.0.0.1:${cluster.port} can log in or holds a role attribute (it must be NOLOGIN, with none).`,
    ]);
  });

  test('checking changes nothing on the server: no role, no grant', async () => {
    const state = async () =>
      asSuper(`SELECT (SELECT count(*) FROM pg_roles)::int AS roles,
                      (SELECT string_agg(relname || ':' || coalesce(relacl::text, ''), ',' ORDER BY relname) FROM pg_class WHERE relnamespace = 'app'::regnamespace) AS acls`);
    const before = await state();
    await adminTarget.checkRecipe([on('app', 'items', 'ALL'), on('*', '*'), on('nope', 't')], { reassignTo: GRAVEYARD });
    await superTarget.checkRecipe([on('app', '*', 'ALL')]);
    expect(await state()).toEqual(before);
  });
});
