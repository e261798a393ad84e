/**
 * MysqlTarget.checkRecipe against the real MariaDB at 127.0.0.1:3306: what a recipe names
 * must exist and be grantable by the base secret's admin (its own grants, its default
 * role's, database patterns included), checked read-only before the secret is stored.
 * Everything it creates carries this run's random suffix and is dropped.
 */
import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import type { BaseConnection, GrantPermission } from '../../src/model/secret.js';
import { newPassword } from '../../src/targets/names.js';
import { MysqlTarget } from '../../src/targets/mysql.js';

const HOST = '127.0.0.1';
const PORT = Number(process.env.SY_TEST_MYSQL_PORT ?? 3306);
const ADDRESS = `${HOST}:${PORT}`;
const RUN = randomBytes(4).toString('hex');
const DB = `sy_rc_${RUN}`;
/** Reached by the admin only through a database pattern with a wildcard. */
const OTHER = `sy_rcx_${RUN}`;
/** Where the admin holds SELECT without grant option. */
const THIRD = `sy_rd_${RUN}`;
const ADMIN = `sy_rc_adm_${RUN}`;
const ROLE = `sy_rc_role_${RUN}`;
/** Sees no database but information_schema. */
const BLIND = `sy_rc_blind_${RUN}`;
const PASSWORD = newPassword();
const OPTIONS = { connectTimeoutMs: 3000 };

const rootConn: BaseConnection = { engine: 'mysql', host: HOST, port: PORT, username: 'root', password: '' };
const on = (schema: string, table: string, ...privileges: string[]): GrantPermission => ({ privileges: privileges.length > 0 ? privileges : ['SELECT'], schema, table });

let sql: mysql.Connection;
let root: MysqlTarget;
let admin: MysqlTarget;

beforeAll(async () => {
  sql = await mysql.createConnection({ host: HOST, port: PORT, user: 'root', password: '', multipleStatements: true });
  await sql.query(`
    CREATE DATABASE ${DB};
    CREATE TABLE ${DB}.items (id INT);
    CREATE TABLE ${DB}.secrets (x INT);
    CREATE DATABASE ${OTHER};
    CREATE TABLE ${OTHER}.t (x INT);
    CREATE DATABASE ${THIRD};
    CREATE TABLE ${THIRD}.t (x INT);
    CREATE USER '${ADMIN}'@'%' IDENTIFIED BY '${PASSWORD}';
    GRANT CREATE USER ON *.* TO '${ADMIN}'@'%';
    GRANT SELECT, INSERT ON ${DB}.* TO '${ADMIN}'@'%' WITH GRANT OPTION;
    -- Held on the table only, but the grant option of the database level covers it.
    GRANT UPDATE ON ${DB}.items TO '${ADMIN}'@'%';
    -- Without grant option at any level that covers ${THIRD}.
    GRANT SELECT ON ${THIRD}.* TO '${ADMIN}'@'%';
    -- An unescaped _ is a wildcard: this pattern reaches ${OTHER}.
    GRANT SELECT ON \`sy_rc__${RUN}\`.* TO '${ADMIN}'@'%' WITH GRANT OPTION;
    CREATE ROLE ${ROLE};
    GRANT DELETE ON ${DB}.* TO ${ROLE} WITH GRANT OPTION;
    GRANT ${ROLE} TO '${ADMIN}'@'%';
    SET DEFAULT ROLE ${ROLE} FOR '${ADMIN}'@'%';
    CREATE USER '${BLIND}'@'%' IDENTIFIED BY '${PASSWORD}';
  `);
  root = await MysqlTarget.connect(rootConn, OPTIONS);
  admin = await MysqlTarget.connect({ ...rootConn, username: ADMIN, password: PASSWORD }, OPTIONS);
});

afterAll(async () => {
  await root?.close();
  await admin?.close();
  if (!sql) return;
  await sql.query(`DROP USER IF EXISTS '${ADMIN}'@'%', '${BLIND}'@'%'; DROP ROLE IF EXISTS ${ROLE}; DROP DATABASE IF EXISTS ${DB}; DROP DATABASE IF EXISTS ${OTHER}; DROP DATABASE IF EXISTS ${THIRD}`);
  await sql.end();
});

describe('MysqlTarget.checkRecipe', () => {
  test('root may grant anything that exists, *.* included', async () => {
    expect(await root.checkRecipe([on(DB, 'items', 'ALL'), on(DB, '*', 'ALL'), on('*', '*', 'SELECT', 'INSERT')])).toEqual([]);
  });

  test('a database or table that does not exist is named, with the server', async () => {
    expect(await root.checkRecipe([on(DB, 'nope')])).toEqual([`grantPermissions: table ${DB}.nope does not exist on ${ADDRESS}.`]);
    expect(await root.checkRecipe([on(`${DB}_nope`, '*'), on(`${DB}_nope`, 'items')])).toEqual([`grantPermissions: database ${DB}_nope does not exist on ${ADDRESS}.`]);
  });

  test('the least-privilege admin passes for what it holds WITH GRANT OPTION, at any level or through its role', async () => {
    expect(await admin.checkRecipe([on(DB, 'items', 'SELECT', 'INSERT', 'UPDATE'), on(DB, '*', 'SELECT', 'DELETE'), on(OTHER, 't')])).toEqual([]);
  });

  test('a privilege the admin holds without GRANT OPTION, or not at all, is named', async () => {
    expect(await admin.checkRecipe([on(DB, 'items', 'SELECT', 'ALTER')])).toEqual([`grantPermissions: the admin ${ADMIN} does not hold ALTER on ${DB}.items WITH GRANT OPTION.`]);
    expect(await admin.checkRecipe([on(THIRD, 't'), on(THIRD, '*')])).toEqual([
      `grantPermissions: the admin ${ADMIN} does not hold SELECT on ${THIRD}.t WITH GRANT OPTION.`,
      `grantPermissions: the admin ${ADMIN} does not hold SELECT on ${THIRD}.* WITH GRANT OPTION.`,
    ]);
    expect(await admin.checkRecipe([on(OTHER, '*', 'SELECT', 'INSERT')])).toEqual([`grantPermissions: the admin ${ADMIN} does not hold INSERT on ${OTHER}.* WITH GRANT OPTION.`]);
    // ALL is the data privileges of the level named, each of which must be grantable.
    const [problem] = await admin.checkRecipe([on(DB, '*', 'ALL')]);
    expect(problem).toBe(
      `grantPermissions: the admin ${ADMIN} does not hold UPDATE, CREATE, DROP, INDEX, ALTER, REFERENCES, TRIGGER, CREATE VIEW, SHOW VIEW, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, CREATE ROUTINE, ALTER ROUTINE, EVENT on ${DB}.* WITH GRANT OPTION.`,
    );
  });

  test('*.* needs the privileges on every database the admin sees, and at least one', async () => {
    expect(await admin.checkRecipe([on('*', '*', 'SELECT')])).toEqual([`grantPermissions: the admin ${ADMIN} does not hold SELECT on ${THIRD}.* WITH GRANT OPTION.`]);
    expect(await admin.checkRecipe([on('*', '*', 'SELECT', 'DELETE')])).toEqual([
      `grantPermissions: the admin ${ADMIN} does not hold DELETE on ${OTHER}.* WITH GRANT OPTION.`,
      `grantPermissions: the admin ${ADMIN} does not hold SELECT, DELETE on ${THIRD}.* WITH GRANT OPTION.`,
    ]);
    const blind = await MysqlTarget.connect({ ...rootConn, username: BLIND, password: PASSWORD }, OPTIONS);
    try {
      expect(await blind.checkRecipe([on('*', '*')])).toEqual([`grantPermissions: *.* reaches nothing on ${ADDRESS}: the admin sees no database but the system ones.`]);
    } finally {
      await blind.close();
    }
  });

  test('checking changes nothing on the server: no user, no grant', async () => {
    const state = async () => {
      const [rows] = await sql.query<mysql.RowDataPacket[]>(
        `SELECT (SELECT COUNT(*) FROM mysql.user) AS users, (SELECT COUNT(*) FROM mysql.db) AS dbs, (SELECT COUNT(*) FROM mysql.tables_priv) AS tables`,
      );
      return rows[0];
    };
    const before = await state();
    await admin.checkRecipe([on(DB, '*', 'ALL'), on('*', '*'), on(DB, 'nope')]);
    await root.checkRecipe([on(DB, 'items', 'ALL')]);
    expect(await state()).toEqual(before);
  });
});
