/**
 * MysqlTarget against the real MariaDB at 127.0.0.1:3306 (root, empty password), which
 * checks passwords. Everything it creates carries this run's random suffix and is dropped.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { jest } from '@jest/globals';
import mysql from 'mysql2/promise';
import { SyError } from '../../src/errors.js';
import type { BaseConnection, GrantPermission } from '../../src/model/secret.js';
import { newPassword, newUserName } from '../../src/targets/names.js';
import { MysqlTarget, nativePasswordHash } from '../../src/targets/mysql.js';
import { DEFAULT_LOCK_TIMEOUT_MS, DEFAULT_STATEMENT_TIMEOUT_MS, type NewUser } from '../../src/targets/target.js';
import { dropMyUsers, freezableRelay, myUserHosts } from '../helpers/db.js';
import { waitFor } from '../helpers/revocation.js';

const HOST = '127.0.0.1';
const PORT = Number(process.env.SY_TEST_MYSQL_PORT ?? 3306);
const RUN = randomBytes(4).toString('hex');
const DB = `sy_t_${RUN}`;
const ADMIN = `sy_admin_${RUN}`;
const ADMIN_PASSWORD = newPassword();
const OPTIONS = { connectTimeoutMs: 3000 };

const rootConn: BaseConnection = { engine: 'mysql', host: HOST, port: PORT, username: 'root', password: '' };
const adminConn: BaseConnection = { ...rootConn, username: ADMIN, password: ADMIN_PASSWORD };

let sql: mysql.Connection; // root, for setup and for checking mysql.user
let target: MysqlTarget; // root admin
const created: string[] = [];

type Row = mysql.RowDataPacket;

const grant = (schema: string, table: string, ...privileges: string[]): GrantPermission => ({
  privileges: privileges.length > 0 ? privileges : ['SELECT'],
  schema,
  table,
});

function newUser(grants: GrantPermission[], ttlSeconds = 3600): NewUser {
  const expiresAt = new Date(Math.floor(Date.now() / 1000) * 1000 + ttlSeconds * 1000);
  const username = newUserName('mysql', expiresAt, 'sy_');
  created.push(username);
  return { username, password: newPassword(), expiresAt, grants };
}

async function login(user: string, password: string): Promise<mysql.Connection> {
  const connection = await mysql.createConnection({ host: HOST, port: PORT, user, password, connectTimeout: 3000 });
  connection.on('error', () => undefined);
  return connection;
}

async function userExists(name: string): Promise<boolean> {
  const [rows] = await sql.query<Row[]>("SELECT 1 FROM mysql.user WHERE user = ? AND host = '%'", [name]);
  return rows.length === 1;
}

async function syError(promise: Promise<unknown>): Promise<SyError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof SyError) return error;
    throw error;
  }
  throw new Error('expected a SyError, but the call succeeded');
}

function mysqlCode(promise: Promise<unknown>): Promise<string | undefined> {
  return promise.then(
    () => 'succeeded',
    (error: { code?: string }) => error.code,
  );
}

/** Resolves once the server has closed the session. */
async function sessionIsClosed(session: mysql.Connection): Promise<boolean> {
  const code = await mysqlCode(session.query('SELECT 1'));
  await session.end().catch(() => session.destroy());
  return code !== 'succeeded';
}

beforeAll(async () => {
  sql = await mysql.createConnection({ host: HOST, port: PORT, user: 'root', password: '', multipleStatements: true });
  await sql.query(`
    CREATE DATABASE ${DB};
    CREATE TABLE ${DB}.items (id INT PRIMARY KEY, name VARCHAR(20));
    INSERT INTO ${DB}.items VALUES (1, 'one'), (2, 'two');
    CREATE TABLE ${DB}.secrets (x INT);
    CREATE TABLE ${DB}.notes (n VARCHAR(20));
    INSERT INTO ${DB}.notes VALUES ('note');
    -- The least a non-root admin needs (see the README).
    CREATE USER '${ADMIN}'@'%' IDENTIFIED BY '${ADMIN_PASSWORD}';
    GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO '${ADMIN}'@'%';
    GRANT SELECT ON mysql.user TO '${ADMIN}'@'%';
    -- Where the users to revoke could have defined routines, events, triggers or views.
    GRANT SELECT ON mysql.db TO '${ADMIN}'@'%';
    GRANT SELECT ON mysql.tables_priv TO '${ADMIN}'@'%';
    GRANT SELECT ON ${DB}.items TO '${ADMIN}'@'%' WITH GRANT OPTION;
    GRANT SELECT ON ${DB}.notes TO '${ADMIN}'@'%';
  `);
  target = await MysqlTarget.connect(rootConn, OPTIONS);
});

afterAll(async () => {
  await target?.close();
  if (!sql) return;
  for (const name of [...created, ADMIN]) await sql.query("DROP USER IF EXISTS ?@'%'", [name]);
  await sql.query(`DROP DATABASE IF EXISTS ${DB}`);
  await sql.end();
});

describe('MysqlTarget as root on MariaDB', () => {
  test('creates a user that logs in with its password only and holds exactly the granted privileges', async () => {
    const user = newUser([grant(DB, 'items')]);
    await target.createUser(user);

    const session = await login(user.username, user.password);
    try {
      const [rows] = await session.query<Row[]>(`SELECT name FROM ${DB}.items ORDER BY id`);
      expect(rows.map((r) => r.name)).toEqual(['one', 'two']);
      expect(await mysqlCode(session.query(`INSERT INTO ${DB}.items VALUES (3, 'three')`))).toBe('ER_TABLEACCESS_DENIED_ERROR');
      expect(await mysqlCode(session.query(`SELECT * FROM ${DB}.secrets`))).toBe('ER_TABLEACCESS_DENIED_ERROR');
    } finally {
      await session.end();
    }
    expect(await mysqlCode(login(user.username, `${user.password}x`))).toBe('ER_ACCESS_DENIED_ERROR');
    // The server got the hash, not the password.
    const [rows] = await sql.query<Row[]>("SELECT authentication_string AS hash FROM mysql.user WHERE user = ? AND host = '%'", [user.username]);
    expect(rows[0].hash).toBe(nativePasswordHash(user.password));
  });

  test('db.* reaches every table of one database, *.* every database', async () => {
    const oneDb = newUser([grant(DB, '*')]);
    const all = newUser([grant('*', '*')]);
    await target.createUser(oneDb);
    await target.createUser(all);
    const a = await login(oneDb.username, oneDb.password);
    const b = await login(all.username, all.password);
    try {
      const [notes] = await a.query<Row[]>(`SELECT n FROM ${DB}.notes`);
      expect(notes.map((r) => r.n)).toEqual(['note']);
      expect(await mysqlCode(a.query('SELECT * FROM mysql.db LIMIT 1'))).toBe('ER_TABLEACCESS_DENIED_ERROR');
      const [items] = await b.query<Row[]>(`SELECT name FROM ${DB}.items ORDER BY id`);
      expect(items.map((r) => r.name)).toEqual(['one', 'two']);
      // *.* is every database but the system ones.
      expect(await mysqlCode(b.query('SELECT * FROM mysql.db LIMIT 1'))).toBe('ER_TABLEACCESS_DENIED_ERROR');
    } finally {
      await a.end();
      await b.end();
    }
    const result = await target.revokeUsers([oneDb.username, all.username]);
    expect(result).toEqual({ dropped: [oneDb.username, all.username], absent: [], failed: [] });
  });

  test('renew changes nothing but says when the user no longer exists', async () => {
    const user = newUser([grant(DB, 'items')]);
    await target.createUser(user);
    await expect(target.renewUser(user.username, new Date(Date.now() + 7200_000))).resolves.toBeUndefined();
    expect((await target.revokeUsers([user.username])).dropped).toEqual([user.username]);
    const error = await syError(target.renewUser(user.username, new Date(Date.now() + 7200_000)));
    expect(error.code).toBe('user_not_found');
    expect(error.message).toContain('no longer exists');
  });

  test('revoke kills an open session, blocks new logins and drops the user', async () => {
    const user = newUser([grant(DB, 'items')]);
    await target.createUser(user);
    const session = await login(user.username, user.password);
    await session.query('SELECT 1');

    expect(await target.revokeUsers([user.username])).toEqual({ dropped: [user.username], absent: [], failed: [] });

    expect(await sessionIsClosed(session)).toBe(true);
    expect(await mysqlCode(login(user.username, user.password))).toMatch(/^ER_ACCESS_DENIED/);
    expect(await userExists(user.username)).toBe(false);
  });

  test('revoking twice, unknown names or nothing succeeds', async () => {
    const user = newUser([grant(DB, 'items')]);
    await target.createUser(user);
    await target.revokeUsers([user.username]);
    await expect(target.revokeUsers([user.username])).resolves.toEqual({ dropped: [], absent: [user.username], failed: [] });
    const unknown = newUserName('mysql', new Date());
    await expect(target.revokeUsers([unknown, user.username])).resolves.toEqual({ dropped: [], absent: [unknown, user.username], failed: [] });
    await expect(target.revokeUsers([])).resolves.toEqual({ dropped: [], absent: [], failed: [] });
    expect(await userExists(user.username)).toBe(false);
  });

  test('revokes three users with open sessions in one call and one DROP USER', async () => {
    const users = [newUser([grant(DB, 'items')]), newUser([grant(DB, '*')]), newUser([grant(DB, 'notes')])];
    for (const user of users) await target.createUser(user);
    const sessions = await Promise.all(users.map((u) => login(u.username, u.password)));
    const connection = (target as unknown as { connection: mysql.Connection }).connection;
    const spy = jest.spyOn(connection, 'query');
    try {
      await target.revokeUsers(users.map((u) => u.username));
      const statements = spy.mock.calls.map(([statement]) => String(statement));
      const kind = (sql: string) => (/processlist/.test(sql) ? 'session lookup' : /^(DROP USER|ALTER USER|KILL)/.exec(sql)?.[0] ?? 'user lookup');
      const counts: Record<string, number> = {};
      for (const sql of statements) counts[kind(sql)] = (counts[kind(sql)] ?? 0) + 1;
      // One look at the users before and one after, one ACCOUNT LOCK, one KILL per session,
      // session lookups until all have ended, one DROP USER; no search for what they
      // defined, as their grants let them define nothing.
      expect({ ...counts, 'session lookup': undefined }).toEqual({ 'user lookup': 2, 'ALTER USER': 1, KILL: sessions.length, 'DROP USER': 1, 'session lookup': undefined });
      expect(counts['session lookup']).toBeGreaterThanOrEqual(2);
    } finally {
      spy.mockRestore();
    }
    for (const session of sessions) expect(await sessionIsClosed(session)).toBe(true);
    for (const user of users) expect(await userExists(user.username)).toBe(false);
  });

  test('a grant on a missing table or database fails, names it and leaves no user', async () => {
    const user = newUser([grant(DB, 'items'), grant(DB, 'nope')]);
    const error = await syError(target.createUser(user));
    expect(error.code).toBe('grant_failed');
    expect(error.message).toBe(`Could not grant SELECT on ${DB}.nope at ${HOST}:${PORT}: table "${DB}.nope" does not exist.`);
    expect(await userExists(user.username)).toBe(false);

    // MariaDB itself accepts a grant on a missing table when CREATE is among the privileges.
    const withCreate = newUser([grant(DB, 'nope', 'SELECT', 'CREATE')]);
    expect((await syError(target.createUser(withCreate))).code).toBe('grant_failed');
    expect(await userExists(withCreate.username)).toBe(false);

    const noDb = newUser([grant(`${DB}_nope`, '*')]);
    const dbError = await syError(target.createUser(noDb));
    expect(dbError.message).toBe(`Could not grant SELECT on ${DB}_nope.* at ${HOST}:${PORT}: database "${DB}_nope" does not exist.`);
    expect(await userExists(noDb.username)).toBe(false);
  });

  test('listManagedUsers finds the users sy created with their reap-after bound, and nothing else', async () => {
    const user = newUser([grant(DB, 'items')], 7200);
    await target.createUser(user);
    const managed = (await target.listManagedUsers()).users;
    expect(managed.find((m) => m.username === user.username)?.reapAfter.getTime()).toBe(user.expiresAt.getTime());
    expect(managed.map((m) => m.username)).not.toContain('root');
    expect(managed.map((m) => m.username)).not.toContain(ADMIN);
    await target.revokeUsers([user.username]);
    expect((await target.listManagedUsers()).users.map((m) => m.username)).not.toContain(user.username);
  });

  test('grantPermissions is granted on top of creationStatements, never ignored', async () => {
    const user = newUser([grant(DB, 'notes', 'SELECT')]);
    user.creationStatements = ["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}' WITH MAX_USER_CONNECTIONS 2"];
    await target.createUser(user);
    const session = await login(user.username, user.password);
    try {
      const [rows] = await session.query<Row[]>(`SELECT n FROM ${DB}.notes`);
      expect(rows.map((r) => r.n)).toEqual(['note']);
    } finally {
      await session.end().catch(() => undefined);
      await target.revokeUsers([user.username]);
    }
    expect(await userExists(user.username)).toBe(false);
  });

  test('custom creation and revocation statements replace the defaults', async () => {
    const user = newUser([]);
    user.creationStatements = [
      "CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'",
      `GRANT SELECT ON ${DB}.notes TO '{{ name }}'@'%'`,
    ];
    await target.createUser(user);
    const session = await login(user.username, user.password);
    try {
      const [rows] = await session.query<Row[]>(`SELECT n FROM ${DB}.notes`);
      expect(rows.map((r) => r.n)).toEqual(['note']);
      const result = await target.revokeUsers([user.username], { revocationStatements: ["DROP USER '{{name}}'@'%'"] });
      expect(result).toEqual({ dropped: [user.username], absent: [], failed: [] });
    } finally {
      expect(await sessionIsClosed(session)).toBe(true);
    }
    expect(await userExists(user.username)).toBe(false);
    // Already gone: the custom DROP USER is not run again, so this does not fail.
    await expect(target.revokeUsers([user.username], { revocationStatements: ["DROP USER '{{name}}'@'%'"] })).resolves.toEqual({
      dropped: [],
      absent: [user.username],
      failed: [],
    });

    const broken = newUser([]);
    broken.creationStatements = ["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'", `GRANT SELEKT ON ${DB}.notes TO '{{name}}'@'%'`];
    const error = await syError(target.createUser(broken));
    expect(error.code).toBe('create_user_failed');
    expect(error.message).not.toContain(broken.password);
    expect(await userExists(broken.username)).toBe(false);
  });
});

describe('MysqlTarget results, clock and bounds', () => {
  /** The admin session's own connection, to look at its settings. */
  const sessionOf = (t: MysqlTarget) => (t as unknown as { connection: mysql.Connection }).connection;

  test('a revocation template that fails for one user does not stop the others', async () => {
    const fine = newUser([grant(DB, 'items')]);
    await target.createUser(fine);
    // Only a 'localhost' variant: the template's DROP USER ...@'%' fails for it.
    const odd = newUser([]);
    await sql.query("CREATE USER ?@'localhost' IDENTIFIED BY 'x'", [odd.username]);
    try {
      const result = await target.revokeUsers([odd.username, fine.username], { revocationStatements: ["DROP USER '{{name}}'@'%'"] });
      expect(result.dropped).toEqual([fine.username]);
      expect(result.absent).toEqual([]);
      expect(result.failed.map((f) => [f.username, f.error.code, f.error.message])).toEqual([
        [odd.username, 'revoke_failed', `Could not revoke user ${odd.username} at ${HOST}:${PORT}: Operation DROP USER failed for '${odd.username}'@'%'.`],
      ]);
      expect(await myUserHosts(odd.username)).toEqual(['localhost']);
    } finally {
      await dropMyUsers([odd.username]);
    }
  });

  test('listManagedUsers reads the time from the server', async () => {
    // A session may set its own clock; sy must report that one, not the machine's.
    await sessionOf(target).query('SET SESSION timestamp = 1700000000.25');
    try {
      expect((await target.listManagedUsers()).serverNow.toISOString()).toBe('2023-11-14T22:13:20.250Z');
    } finally {
      await sessionOf(target).query('SET SESSION timestamp = DEFAULT');
    }
  });

  test('the admin session waits for locks and statements only as long as asked, 5 s and 10 s by default', async () => {
    const bounds = async (t: MysqlTarget) => {
      const [rows] = await sessionOf(t).query<Row[]>('SELECT @@lock_wait_timeout AS l, @@innodb_lock_wait_timeout AS i, @@max_statement_time AS s');
      return { lock: Number(rows[0].l), innodb: Number(rows[0].i), statement: Number(rows[0].s) };
    };
    const seconds = DEFAULT_LOCK_TIMEOUT_MS / 1000;
    expect(await bounds(target)).toEqual({ lock: seconds, innodb: seconds, statement: DEFAULT_STATEMENT_TIMEOUT_MS / 1000 });
    const custom = await MysqlTarget.connect(rootConn, { ...OPTIONS, lockTimeoutMs: 1500, statementTimeoutMs: 2500 });
    try {
      // Lock timeouts are whole seconds, rounded up.
      expect(await bounds(custom)).toEqual({ lock: 2, innodb: 2, statement: 2.5 });
    } finally {
      await custom.close();
    }
  });

  test('close ends the connection at once, abandoning a statement the server never answers', async () => {
    const relay = await freezableRelay();
    try {
      const stuck = await MysqlTarget.connect({ ...rootConn, port: relay.port }, OPTIONS);
      const id = sessionOf(stuck).threadId;
      relay.freeze();
      const pending = syError(stuck.listManagedUsers());
      await stuck.close();
      const error = await pending;
      expect(error.code).toBe('target_unreachable');
      expect(error.message).toBe(`Could not list users at ${HOST}:${relay.port}: the connection was closed before the server answered.`);
      // The socket is gone, so the server ends the session too.
      await waitFor('the session to end', async () => (await sql.query<Row[]>('SELECT 1 FROM information_schema.processlist WHERE id = ?', [id]))[0].length === 0);
    } finally {
      await relay.close();
    }
  });

  test('aborting the signal ends the connection, after connecting and while connecting', async () => {
    const relay = await freezableRelay();
    try {
      const controller = new AbortController();
      const stuck = await MysqlTarget.connect({ ...rootConn, port: relay.port }, { ...OPTIONS, signal: controller.signal });
      relay.freeze();
      const pending = syError(stuck.revokeUsers([newUserName('mysql', new Date())]));
      controller.abort();
      expect((await pending).code).toBe('target_unreachable');
      await stuck.close();

      // A server that accepts the connection but never greets: only the abort ends the wait.
      const late = new AbortController();
      const connecting = syError(MysqlTarget.connect({ ...rootConn, port: relay.port }, { connectTimeoutMs: 60_000, signal: late.signal }));
      setTimeout(() => late.abort(), 50);
      const started = Date.now();
      const error = await connecting;
      expect(Date.now() - started).toBeLessThan(20_000);
      expect(error.code).toBe('target_unreachable');
      expect(error.message).toBe(`Could not connect to MySQL/MariaDB at ${HOST}:${relay.port}: the attempt was cancelled.`);
    } finally {
      await relay.close();
    }
  });
});

describe('MysqlTarget as a non-root admin with the minimum privileges', () => {
  let limited: MysqlTarget;
  beforeAll(async () => {
    limited = await MysqlTarget.connect(adminConn, OPTIONS);
  });
  afterAll(async () => {
    await limited?.close();
  });

  test('creates, lists, renews and revokes, killing the user session', async () => {
    const user = newUser([grant(DB, 'items')]);
    await limited.createUser(user);
    const session = await login(user.username, user.password);
    try {
      const [rows] = await session.query<Row[]>(`SELECT COUNT(*) AS n FROM ${DB}.items`);
      expect(Number(rows[0].n)).toBe(2);
      expect((await limited.listManagedUsers()).users.map((m) => m.username)).toContain(user.username);
      await expect(limited.renewUser(user.username, new Date(Date.now() + 7200_000))).resolves.toBeUndefined();
      expect(await limited.revokeUsers([user.username])).toEqual({ dropped: [user.username], absent: [], failed: [] });
    } finally {
      expect(await sessionIsClosed(session)).toBe(true);
    }
    expect(await userExists(user.username)).toBe(false);
  });

  test('a grant it does not hold WITH GRANT OPTION fails and leaves no user', async () => {
    const user = newUser([grant(DB, 'notes')]);
    const error = await syError(limited.createUser(user));
    expect(error.code).toBe('grant_failed');
    expect(error.message).toMatch(new RegExp(`^Could not grant SELECT on ${DB}\\.notes at ${HOST}:${PORT}: .*denied`));
    expect(await userExists(user.username)).toBe(false);
  });
});

describe('MysqlTarget connection failures', () => {
  test('a closed port fails fast, naming host and port', async () => {
    const port = await new Promise<number>((resolve) => {
      const server = net.createServer().listen(0, HOST, () => {
        const { port: p } = server.address() as net.AddressInfo;
        server.close(() => resolve(p));
      });
    });
    const started = Date.now();
    const error = await syError(MysqlTarget.connect({ ...rootConn, port }, OPTIONS));
    expect(Date.now() - started).toBeLessThan(OPTIONS.connectTimeoutMs);
    expect(error.code).toBe('target_unreachable');
    expect(error.message).toBe(`Could not connect to MySQL/MariaDB at ${HOST}:${port}: connection refused.`);
  });

  test('a server that never answers fails after the timeout', async () => {
    const sockets: net.Socket[] = [];
    const server = net.createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
    const { port } = server.address() as net.AddressInfo;
    try {
      const started = Date.now();
      const error = await syError(MysqlTarget.connect({ ...rootConn, port }, { connectTimeoutMs: 500 }));
      const elapsed = Date.now() - started;
      expect(elapsed).toBeGreaterThanOrEqual(450);
      expect(elapsed).toBeLessThan(3000);
      expect(error.code).toBe('target_unreachable');
      expect(error.message).toBe(`Could not connect to MySQL/MariaDB at ${HOST}:${port}: no answer within 500 ms.`);
    } finally {
      for (const socket of sockets) socket.destroy();
      server.close();
    }
  });

  test('a wrong admin password is refused without showing the password', async () => {
    const password = newPassword();
    const error = await syError(MysqlTarget.connect({ ...adminConn, password }, OPTIONS));
    expect(error.code).toBe('target_refused');
    expect(error.message).toBe(`Could not connect to MySQL/MariaDB at ${HOST}:${PORT}: access denied for user "${ADMIN}" (wrong user name or password).`);
    expect(`${error.message} ${error.hint ?? ''} ${String(error.cause)}`).not.toContain(password);
  });

  test('asking for TLS from a server without it fails cleanly', async () => {
    const [rows] = await sql.query<Row[]>("SHOW VARIABLES LIKE 'have_ssl'");
    if (rows[0]?.Value === 'YES') return; // this server speaks TLS: nothing to show here
    const error = await syError(MysqlTarget.connect({ ...rootConn, ssl: true }, OPTIONS));
    expect(error.code).toBe('target_unreachable');
    expect(error.message).toBe(`Could not connect to MySQL/MariaDB at ${HOST}:${PORT}: the server does not accept TLS connections.`);
  });
});
