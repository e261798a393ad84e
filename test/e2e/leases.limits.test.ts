/**
 * A lease cannot keep the admin out, through the built bin/sy, on the SCRAM PostgreSQL
 * cluster and the local MariaDB, each with the README's least-privilege admin: its sessions
 * are capped by the recipe's `connectionLimit` (default 10, also after custom creation
 * statements), the admin still revokes while the lease holds every session it may, and bad
 * limits are refused at create time. On MariaDB, an XA transaction the lease started ends
 * with its session, and one it prepared and left does not hold up its revocation.
 */
import mysql from 'mysql2/promise';
import pg from 'pg';
import { leaseRunner, makeHome, type Lease, type SyHome } from '../helpers/cli.js';
import { createMyDatabase, dropMyDatabase, dropMyUsers, expectExit, MARIADB, myAdminQuery, myConnect, myManagedUsers, myUserExists, pgAdminQuery, pgConnect, pgManagedRoles, pgRoleExists, scramCluster, tag, createPgDatabase, dropPgDatabase, dropPgRoles } from '../helpers/db.js';

const T = tag();
const PG_DB = `sy_lim_${T}`;
const MY_DB = `sy_lim_${T}`;
const PG_PREFIX = `lp${T}_`;
const MY_PREFIX = `lm${T}_`;
const PG_ADMIN = `sy_lima_${T}`;
const MY_ADMIN = `sy_lima_${T}`;
const ADMIN_PASSWORD = `Lim-${tag(20)}`;
const XID = `sy_xa_${T}`;
const cluster = scramCluster();

let sy: SyHome;
const { ok, run, create } = leaseRunner(() => sy);
const opened: { end(): Promise<unknown> }[] = [];

const dynamic = (path: string, base: string, prefix: string, attributes: Record<string, unknown>) =>
  ok(['secret', 'create', path, '--attributes', '-'], {
    input: JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: base }, userPrefix: prefix, ttl: 600, ...attributes }),
  });

async function pgLogin(lease: Lease): Promise<pg.Client> {
  const client = await pgConnect({ host: lease.host, port: lease.port, user: lease.username, password: lease.password, database: lease.database });
  opened.push(client);
  return client;
}

async function myLogin(lease: Lease): Promise<mysql.Connection> {
  const connection = await myConnect({ host: lease.host, port: lease.port, user: lease.username, password: lease.password });
  opened.push(connection);
  return connection;
}

/** The error code of a login that should be refused, or 'accepted'. */
async function refusal(login: () => Promise<unknown>): Promise<string> {
  try {
    await login();
    return 'accepted';
  } catch (error) {
    return String((error as { code?: string }).code);
  }
}

const xaLeft = async (): Promise<string[]> =>
  (await myAdminQuery<{ data: string }>('XA RECOVER')).map((r) => String(r.data)).filter((xid) => xid.startsWith(XID));

beforeAll(async () => {
  await createPgDatabase(PG_DB, [
    `CREATE SCHEMA app; CREATE TABLE app.items (id int); INSERT INTO app.items VALUES (1);
     CREATE ROLE ${PG_ADMIN} WITH LOGIN CREATEROLE PASSWORD '${ADMIN_PASSWORD}';
     GRANT USAGE ON SCHEMA app TO ${PG_ADMIN} WITH GRANT OPTION;
     GRANT SELECT ON app.items TO ${PG_ADMIN} WITH GRANT OPTION`,
  ]);
  await createMyDatabase(MY_DB, ['CREATE TABLE {{db}}.items (id int PRIMARY KEY) ENGINE=InnoDB', 'INSERT INTO {{db}}.items VALUES (1), (2)']);
  for (const statement of [
    // The README's least-privilege admin.
    `CREATE USER '${MY_ADMIN}'@'%' IDENTIFIED BY '${ADMIN_PASSWORD}'`,
    `GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO '${MY_ADMIN}'@'%'`,
    `GRANT SELECT ON mysql.user TO '${MY_ADMIN}'@'%'`,
    `GRANT SELECT ON mysql.db TO '${MY_ADMIN}'@'%'`,
    `GRANT SELECT ON mysql.tables_priv TO '${MY_ADMIN}'@'%'`,
    `GRANT SELECT, UPDATE ON \`${MY_DB}\`.* TO '${MY_ADMIN}'@'%' WITH GRANT OPTION`,
  ]) {
    await myAdminQuery(statement);
  }
  sy = await makeHome();
  await ok(['secret', 'create', 'db:pg:admin', '--attributes', '{"type": "postgresql"}', '--data', '-'], {
    input: JSON.stringify({ host: cluster.host, port: cluster.port, username: PG_ADMIN, password: ADMIN_PASSWORD, database: PG_DB }),
  });
  await ok(['secret', 'create', 'db:my:admin', '--attributes', '{"type": "mariadb"}', '--data', '-'], {
    input: JSON.stringify({ host: MARIADB.host, port: MARIADB.port, username: MY_ADMIN, password: ADMIN_PASSWORD }),
  });
  await dynamic('db:pg:three', 'db:pg:admin', PG_PREFIX, { grantPermissions: { what: 'SELECT', where: 'app.items' }, connectionLimit: 3 });
  await dynamic('db:pg:default', 'db:pg:admin', PG_PREFIX, { grantPermissions: { what: 'SELECT', where: 'app.items' } });
  await dynamic('db:pg:custom', 'db:pg:admin', PG_PREFIX, {
    grantPermissions: { what: 'SELECT', where: 'app.items' },
    connectionLimit: 4,
    creationStatements: ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'"],
  });
  await dynamic('db:my:three', 'db:my:admin', MY_PREFIX, { grantPermissions: { what: 'SELECT, UPDATE', where: `${MY_DB}.*` }, connectionLimit: 3 });
  await dynamic('db:my:default', 'db:my:admin', MY_PREFIX, { grantPermissions: { what: 'SELECT', where: `${MY_DB}.*` } });
  await dynamic('db:my:custom', 'db:my:admin', MY_PREFIX, {
    grantPermissions: { what: 'SELECT', where: `${MY_DB}.*` },
    connectionLimit: 4,
    creationStatements: ["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'", `GRANT SELECT ON \`${MY_DB}\`.* TO '{{name}}'@'%'`],
  });
});

afterAll(async () => {
  for (const client of opened) await client.end().catch(() => undefined);
  for (const xid of await xaLeft().catch(() => [])) await myAdminQuery(`XA ROLLBACK '${xid}'`).catch(() => undefined);
  if (sy) {
    await sy.run(['dynamic', 'lease', 'revoke', '--prefix', 'db', '--yes', '--force']).catch(() => undefined);
    sy.cleanup();
  }
  await dropPgRoles(await pgManagedRoles(PG_PREFIX), [PG_DB]).catch(() => undefined);
  await dropPgDatabase(PG_DB).catch(() => undefined);
  await pgAdminQuery(`DROP ROLE IF EXISTS ${PG_ADMIN}`).catch(() => undefined);
  await dropMyUsers(await myManagedUsers(MY_PREFIX)).catch(() => undefined);
  await dropMyDatabase(MY_DB).catch(() => undefined);
  await myAdminQuery(`DROP USER IF EXISTS '${MY_ADMIN}'@'%'`).catch(() => undefined);
});

describe('connectionLimit is checked when the recipe is written', () => {
  test.each([
    ['0', 0],
    ['1001', 1001],
    ['2.5', 2.5],
    ['"10"', '10'],
    ['-3', -3],
  ])('connectionLimit %s is refused with exit 2 and one sentence', async (_shown, value) => {
    const result = await run(['secret', 'create', `db:pg:bad${String(value).replace(/\W/g, '')}`, '--attributes', '-'], {
      input: JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: 'db:pg:admin' }, grantPermissions: { what: 'SELECT', where: 'app.items' }, connectionLimit: value }),
    });
    expectExit(result, 2);
    expect(result.stderr.trimEnd().split('\n')).toEqual(['sy: attributes.connectionLimit must be a whole number of sessions from 1 to 1000.']);
  });

  test('a misspelt connectionLimit is refused with the right name as a hint', async () => {
    const result = await run(['secret', 'create', 'db:pg:typo', '--attributes', '-'], {
      input: JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: 'db:pg:admin' }, grantPermissions: { what: 'SELECT', where: 'app.items' }, connectionLimt: 3 }),
    });
    expectExit(result, 2);
    expect(result.stderr).toMatch(/attributes\.connectionLimt .*did you mean connectionLimit\?/);
  });
});

describe('PostgreSQL', () => {
  test('a lease holds at most connectionLimit sessions, and the admin revokes it while it holds them all', async () => {
    const lease = await create('db:pg:three');
    for (let i = 0; i < 3; i++) await pgLogin(lease);
    expect(await refusal(() => pgLogin(lease))).toBe('53300');
    expectExit(await run(['dynamic', 'lease', 'revoke', lease.lease_id]), 0);
    expect(await pgRoleExists(lease.username)).toBe(false);
  });

  test('the default is 10, and custom creation statements get the recipe\'s limit too', async () => {
    const plain = await create('db:pg:default');
    const custom = await create('db:pg:custom');
    const limits = await pgAdminQuery<{ rolname: string; rolconnlimit: number }>(
      'SELECT rolname, rolconnlimit FROM pg_roles WHERE rolname = ANY($1) ORDER BY rolconnlimit', [[plain.username, custom.username]],
    );
    expect(limits).toEqual([{ rolname: custom.username, rolconnlimit: 4 }, { rolname: plain.username, rolconnlimit: 10 }]);
  });
});

describe('MariaDB', () => {
  test('a lease holds at most connectionLimit sessions, and the admin revokes it while it holds them all', async () => {
    const lease = await create('db:my:three');
    for (let i = 0; i < 3; i++) await myLogin(lease);
    expect(await refusal(() => myLogin(lease))).toBe('ER_USER_LIMIT_REACHED');
    expectExit(await run(['dynamic', 'lease', 'revoke', lease.lease_id]), 0);
    expect(await myUserExists(lease.username)).toBe(false);
  });

  test('the default is 10, and custom creation statements get the recipe\'s limit too', async () => {
    const plain = await create('db:my:default');
    const custom = await create('db:my:custom');
    const limits = await myAdminQuery<{ name: string; n: number }>(
      'SELECT User AS name, max_user_connections AS n FROM mysql.user WHERE User IN (?, ?) ORDER BY n', [plain.username, custom.username],
    );
    expect(limits.map((r) => [r.name, Number(r.n)])).toEqual([[custom.username, 4], [plain.username, 10]]);
  });

  test('an XA transaction the lease started ends with its session, and its row locks with it', async () => {
    const lease = await create('db:my:three');
    const session = await myLogin(lease);
    await session.query(`XA START '${XID}_a'`);
    await session.query(`UPDATE \`${MY_DB}\`.items SET id = id WHERE id = 1`);
    expectExit(await run(['dynamic', 'lease', 'revoke', lease.lease_id]), 0);
    expect(await myUserExists(lease.username)).toBe(false);
    expect(await xaLeft()).toEqual([]);
    // The row lock went with the session: the row can be written at once.
    const root = await myConnect(MARIADB);
    opened.push(root);
    await root.query('SET SESSION innodb_lock_wait_timeout = 2');
    await root.query(`UPDATE \`${MY_DB}\`.items SET id = id WHERE id = 1`);
  });

  test('an XA transaction the lease prepared and left does not hold up its revocation (MariaDB keeps it: see the README)', async () => {
    const lease = await create('db:my:three');
    const session = await myLogin(lease);
    await session.query(`XA START '${XID}_b'`);
    await session.query(`UPDATE \`${MY_DB}\`.items SET id = id WHERE id = 2`);
    await session.query(`XA END '${XID}_b'`);
    await session.query(`XA PREPARE '${XID}_b'`);
    await session.end();
    expectExit(await run(['dynamic', 'lease', 'revoke', lease.lease_id]), 0);
    expect(await myUserExists(lease.username)).toBe(false);
    // What the README says MariaDB 10.11 allows: the branch outlives its user, and is listed without an owner.
    expect(await xaLeft()).toEqual([`${XID}_b`]);
  });
});
