/**
 * What a MySQL/MariaDB lease can do with its own credentials, tried for real on the local
 * MariaDB: each test logs in AS THE LEASE USER, attempts an escalation, and then checks the
 * server as root. Everything here carries this file's random tag and is dropped afterwards;
 * the server holds other people's users and databases, which no assertion looks at.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import { SyError } from '../../src/errors.js';
import type { BaseConnection, GrantPermission } from '../../src/model/secret.js';
import { newPassword, newUserName } from '../../src/targets/names.js';
import { MysqlTarget, nativePasswordHash } from '../../src/targets/mysql.js';
import type { ConnectOptions, NewUser } from '../../src/targets/target.js';
import { dropMyUsers, MARIADB, myAdminQuery, myConnect, myGrants, myManagedUsers, myStoredObjects, myUserHosts, tag } from '../helpers/db.js';

const T = tag();
const PREFIX = `sy${T}_`;
/** The database a recipe names, and one its name would match if read as a pattern. */
const DB_A = `sy${T}_app_db`;
const DB_X = `sy${T}_appXdb`;
/** Where leases create routines, views, triggers and events. */
const DB_O = `sy${T}_own`;
/** Where tables are locked. */
const DB_L = `sy${T}_lock`;
/** Where a least-privilege admin revokes what a lease defined. */
const DB_P = `sy${T}_priv`;
const DATABASES = [DB_A, DB_X, DB_O, DB_L, DB_P];
const OPTIONS: ConnectOptions = { connectTimeoutMs: 5000 };
const BOUNDED: ConnectOptions = { ...OPTIONS, lockTimeoutMs: 1000, statementTimeoutMs: 1500 };
const ROOT: BaseConnection = { engine: 'mysql', host: MARIADB.host, port: MARIADB.port, username: 'root', password: '' };
const ADDRESS = `${MARIADB.host}:${MARIADB.port}`;

type Row = mysql.RowDataPacket;

let target: MysqlTarget;
/** Users made outside sy (an escalation that worked, a second host): dropped at the end. */
const strays: string[] = [];

const grant = (schema: string, table: string, ...privileges: string[]): GrantPermission => ({ privileges, schema, table });

function newUser(grants: GrantPermission[]): NewUser {
  const expiresAt = new Date(Math.floor(Date.now() / 1000) * 1000 + 3600_000);
  return { username: newUserName('mysql', expiresAt, PREFIX), password: newPassword(), expiresAt, grants };
}

/** A session as the lease user. */
function login(user: NewUser): Promise<mysql.Connection> {
  return myConnect({ host: MARIADB.host, port: MARIADB.port, user: user.username, password: user.password });
}

/** The driver's error code of a statement, or 'succeeded'. */
function outcome(promise: Promise<unknown>): Promise<string | undefined> {
  return promise.then(
    () => 'succeeded',
    (error: { code?: string }) => error.code,
  );
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

/** Whether the server has ended the session. */
async function isClosed(session: mysql.Connection): Promise<boolean> {
  const code = await outcome(session.query('SELECT 1'));
  session.destroy();
  return code !== 'succeeded';
}

/** The only global line of SHOW GRANTS is USAGE (which carries the password hash on MariaDB). */
function expectOnlyUsageOnEverything(grants: string[], name: string): void {
  const global = grants.filter((g) => g.includes(' ON *.* '));
  expect(global).toHaveLength(1);
  expect(global[0]).toMatch(new RegExp(`^GRANT USAGE ON \\*\\.\\* TO \`${name}\`@\`%\`( IDENTIFIED BY PASSWORD '\\*[0-9A-F]{40}')?$`));
}

/** A root session holding `lock` (a LOCK TABLES list) until released. */
async function holdLock(lock: string): Promise<{ release(): Promise<void> }> {
  const holder = await myConnect(MARIADB);
  await holder.query(`LOCK TABLES ${lock}`);
  return {
    release: async () => {
      await holder.query('UNLOCK TABLES').catch(() => undefined);
      holder.destroy();
    },
  };
}

beforeAll(async () => {
  for (const db of DATABASES) {
    await myAdminQuery(`CREATE DATABASE \`${db}\``);
    await myAdminQuery(`CREATE TABLE \`${db}\`.items (id INT PRIMARY KEY, name VARCHAR(20))`);
    await myAdminQuery(`INSERT INTO \`${db}\`.items VALUES (1, ?)`, [db]);
  }
  target = await MysqlTarget.connect(ROOT, OPTIONS);
});

afterAll(async () => {
  await target?.close();
  await dropMyUsers([...(await myManagedUsers(PREFIX)), ...strays]);
  for (const db of DATABASES) await myAdminQuery(`DROP DATABASE IF EXISTS \`${db}\``);
});

describe('a MySQL/MariaDB lease reaches only what its recipe names', () => {
  test('a database name is matched as written, never as a pattern', async () => {
    const user = newUser([grant(DB_A, '*', 'SELECT')]);
    const onTable = newUser([grant(DB_A, 'items', 'SELECT')]);
    await target.createUser(user);
    await target.createUser(onTable);
    for (const lease of [user, onTable]) {
      const session = await login(lease);
      try {
        const [rows] = await session.query<Row[]>(`SELECT name FROM \`${DB_A}\`.items`);
        expect(rows.map((r) => r.name)).toEqual([DB_A]);
        // `_` in DB_A would match the X of DB_X if the name were a pattern.
        expect(await outcome(session.query(`SELECT name FROM \`${DB_X}\`.items`))).toBe('ER_TABLEACCESS_DENIED_ERROR');
      } finally {
        session.destroy();
      }
    }
    expect(await myGrants(user.username)).toContain(`GRANT SELECT ON \`${DB_A.replace(/_/g, '\\_')}\`.* TO \`${user.username}\`@\`%\``);
  });

  test('*.* reaches every non-system database, and never mysql.user', async () => {
    const user = newUser([grant('*', '*', 'SELECT')]);
    await target.createUser(user);
    const session = await login(user);
    try {
      for (const db of [DB_A, DB_X]) {
        const [rows] = await session.query<Row[]>(`SELECT name FROM \`${db}\`.items`);
        expect(rows.map((r) => r.name)).toEqual([db]);
      }
      expect(await outcome(session.query('SELECT authentication_string FROM mysql.user'))).toBe('ER_TABLEACCESS_DENIED_ERROR');
      expect(await outcome(session.query('SELECT * FROM mysql.global_priv'))).toBe('ER_TABLEACCESS_DENIED_ERROR');
    } finally {
      session.destroy();
    }
    const grants = await myGrants(user.username);
    expectOnlyUsageOnEverything(grants, user.username);
    expect(grants.some((g) => /ON `mysql`\.\*/.test(g))).toBe(false);
    expect(grants).toContain(`GRANT SELECT ON \`${DB_X.replace(/_/g, '\\_')}\`.* TO \`${user.username}\`@\`%\``);
  });

  test('*.* with no database in the admin\'s reach fails with one sentence and leaves no user', async () => {
    const admin = `sy${T}_noreach`;
    const password = newPassword();
    strays.push(admin);
    await myAdminQuery('CREATE USER ?@? IDENTIFIED BY ?', [admin, '%', password]);
    await myAdminQuery('GRANT CREATE USER ON *.* TO ?@?', [admin, '%']);
    const limited = await MysqlTarget.connect({ ...ROOT, username: admin, password }, OPTIONS);
    try {
      const user = newUser([grant('*', '*', 'SELECT')]);
      const error = await syError(limited.createUser(user));
      expect(error.code).toBe('grant_failed');
      expect(error.message).toBe(`Could not grant SELECT on *.* at ${ADDRESS}: the admin sees no database other than the system ones.`);
      expect(await myUserHosts(user.username)).toEqual([]);
    } finally {
      await limited.close();
    }
  });

  test('ALL on *.* hands out data privileges only: no user management, FILE, SUPER or PROCESS', async () => {
    const user = newUser([grant('*', '*', 'ALL')]);
    await target.createUser(user);
    const evil = `sy${T}_evil`;
    strays.push(evil);
    const bystander = await myConnect(MARIADB); // a root session the lease must not see or end
    const session = await login(user);
    const second = await login(user);
    try {
      const [[{ id: rootId }]] = await bystander.query<Row[]>('SELECT CONNECTION_ID() AS id');
      expect(await outcome(session.query(`CREATE USER '${evil}'@'%' IDENTIFIED BY 'x'`))).toBe('ER_SPECIFIC_ACCESS_DENIED_ERROR');
      expect(await outcome(session.query(`GRANT SELECT ON \`${DB_A}\`.* TO '${evil}'@'%' IDENTIFIED BY 'x'`))).toMatch(/DENIED/);
      expect(await outcome(session.query('SELECT authentication_string FROM mysql.user'))).toBe('ER_TABLEACCESS_DENIED_ERROR');
      expect(await outcome(session.query("SELECT 1 INTO OUTFILE '/tmp/sy-attack-outfile'"))).toBe('ER_SPECIFIC_ACCESS_DENIED_ERROR');
      expect(await outcome(session.query('SET GLOBAL max_connections = @@max_connections'))).toBe('ER_SPECIFIC_ACCESS_DENIED_ERROR');
      expect(await outcome(session.query(`KILL CONNECTION ${Number(rootId)}`))).toBe('ER_KILL_DENIED_ERROR');
      expect(await outcome(session.query(`CREATE DATABASE \`sy${T}_new\``))).toBe('ER_DBACCESS_DENIED_ERROR');
      const [processes] = await session.query<Row[]>('SHOW FULL PROCESSLIST');
      expect(processes.length).toBeGreaterThanOrEqual(2);
      expect(new Set(processes.map((p) => p.User))).toEqual(new Set([user.username]));
      // What it does hold: everything a database-level grant can give, on its databases.
      await session.query(`CREATE TABLE \`${DB_A}\`.made_by_lease (x INT)`);
      await session.query(`DROP TABLE \`${DB_A}\`.made_by_lease`);
      expect(await outcome(bystander.query('SELECT 1'))).toBe('succeeded');
    } finally {
      session.destroy();
      second.destroy();
      bystander.destroy();
    }
    const grants = await myGrants(user.username);
    expectOnlyUsageOnEverything(grants, user.username);
    expect(grants.some((g) => /GRANT ALL/.test(g))).toBe(false);
    expect(await target.revokeUsers([user.username])).toEqual({ dropped: [user.username], absent: [], failed: [] });
    expect(await myUserHosts(evil)).toEqual([]);
  });

  test('routines, views, triggers and events the lease created are dropped with it; its tables stay', async () => {
    const user = newUser([grant(DB_O, '*', 'ALL PRIVILEGES')]);
    await target.createUser(user);
    const session = await login(user);
    const db = `\`${DB_O}\``;
    try {
      await session.query(`CREATE PROCEDURE ${db}.lease_proc() SELECT 1`);
      await session.query(`CREATE FUNCTION ${db}.lease_fn() RETURNS INT DETERMINISTIC RETURN 1`);
      await session.query(`CREATE VIEW ${db}.lease_view AS SELECT id FROM ${db}.items`);
      await session.query(`CREATE TRIGGER ${db}.lease_trigger BEFORE INSERT ON ${db}.items FOR EACH ROW SET NEW.name = CONCAT('t-', NEW.name)`);
      await session.query(`CREATE EVENT ${db}.lease_event ON SCHEDULE EVERY 1 HOUR DO DELETE FROM ${db}.items`);
      await session.query(`CREATE TABLE ${db}.lease_table (x INT)`);
      // Its open session holds a lock on the table its trigger is on.
      await session.query(`LOCK TABLES ${db}.items WRITE`);
      expect(await myStoredObjects(DB_O)).toHaveLength(5);

      expect(await target.revokeUsers([user.username])).toEqual({ dropped: [user.username], absent: [], failed: [] });

      expect(await isClosed(session)).toBe(true);
    } finally {
      session.destroy();
    }
    expect(await myStoredObjects(DB_O)).toEqual([]);
    // A trigger left without its definer would make this fail.
    await myAdminQuery(`INSERT INTO ${db}.items VALUES (2, 'by root')`);
    expect((await myAdminQuery(`SELECT name FROM ${db}.items WHERE id = 2`))[0].name).toBe('by root');
    expect((await myAdminQuery(`SHOW TABLES FROM ${db} LIKE 'lease_table'`)).length).toBe(1);
  });

  test('every host variant of the user is dropped', async () => {
    const user = newUser([grant(DB_A, '*', 'SELECT')]);
    await target.createUser(user);
    await myAdminQuery("CREATE USER ?@'localhost' IDENTIFIED BY ?", [user.username, user.password]);
    await myAdminQuery(`GRANT SELECT ON \`${DB_X}\`.* TO ?@'localhost'`, [user.username]);
    expect(await myUserHosts(user.username)).toEqual(['%', 'localhost']);

    expect(await target.revokeUsers([user.username])).toEqual({ dropped: [user.username], absent: [], failed: [] });
    expect(await myUserHosts(user.username)).toEqual([]);
  });
});

describe('every wait is bounded', () => {
  test('a lock on the grant tables makes createUser fail within its bounds, in one sentence, leaving no user', async () => {
    const bounded = await MysqlTarget.connect(ROOT, BOUNDED);
    const user = newUser([grant(DB_A, 'items', 'SELECT')]);
    // What a dump of the mysql database does. MariaDB opens the grant tables ignoring
    // lock_wait_timeout: only max_statement_time ends this wait.
    const lock = await holdLock('mysql.global_priv READ');
    // Released in any case, so that a hang fails this test rather than stalling the server.
    const backstop = setTimeout(() => void lock.release(), 25_000);
    try {
      const started = Date.now();
      const error = await syError(bounded.createUser(user));
      expect(Date.now() - started).toBeLessThan(20_000);
      expect(error.code).toBe('create_user_failed');
      expect(error.message).toBe(`Could not create user ${user.username} at ${ADDRESS}: the server did not finish within 1500 ms.`);
      expect(error.message).not.toContain(user.password);
    } finally {
      clearTimeout(backstop);
      await lock.release();
      await bounded.close();
    }
    expect(await myUserHosts(user.username)).toEqual([]);
  });

  test('a lock on a table a recipe grants on does not hold up createUser', async () => {
    const user = newUser([grant(DB_L, 'items', 'SELECT'), grant(DB_L, '*', 'INSERT')]);
    const lock = await holdLock(`\`${DB_L}\`.items WRITE`);
    try {
      // MariaDB takes no lock on a table to grant on it.
      await target.createUser(user);
    } finally {
      await lock.release();
    }
    const session = await login(user);
    try {
      const [rows] = await session.query<Row[]>(`SELECT name FROM \`${DB_L}\`.items`);
      expect(rows.map((r) => r.name)).toEqual([DB_L]);
    } finally {
      session.destroy();
    }
  });

  test('a lease holding LOCK TABLES blocks neither its revocation nor other leases', async () => {
    const locker = newUser([grant(DB_L, '*', 'SELECT', 'LOCK TABLES')]);
    await target.createUser(locker);
    const session = await login(locker);
    const others = [newUser([grant(DB_A, 'items', 'SELECT')]), newUser([grant(DB_L, '*', 'SELECT')]), newUser([grant('*', '*', 'SELECT')])];
    try {
      await session.query(`LOCK TABLES \`${DB_L}\`.items WRITE`);
      for (const other of others) await target.createUser(other);
      expect(await target.revokeUsers([locker.username])).toEqual({ dropped: [locker.username], absent: [], failed: [] });
      expect(await isClosed(session)).toBe(true);
    } finally {
      session.destroy();
    }
    // The lock went with the session.
    await myAdminQuery(`INSERT INTO \`${DB_L}\`.items VALUES (3, 'after')`);
    const names = others.map((o) => o.username);
    expect(await target.revokeUsers(names)).toEqual({ dropped: names, absent: [], failed: [] });
  });

  test('a user whose trigger cannot be dropped fails alone, stays locked, and goes on the next attempt', async () => {
    const bounded = await MysqlTarget.connect(ROOT, BOUNDED);
    const stuck = newUser([grant(DB_L, '*', 'SELECT', 'TRIGGER')]);
    const fine = newUser([grant(DB_A, 'items', 'SELECT')]);
    const gone = newUser([]);
    await target.createUser(stuck);
    await target.createUser(fine);
    const session = await login(stuck);
    await session.query(`CREATE TRIGGER \`${DB_L}\`.lease_trigger BEFORE INSERT ON \`${DB_L}\`.items FOR EACH ROW SET @sy_seen = NEW.id`);
    session.destroy();
    const lock = await holdLock(`\`${DB_L}\`.items WRITE`);
    try {
      const result = await bounded.revokeUsers([stuck.username, fine.username, gone.username]);
      expect(result.dropped).toEqual([fine.username]);
      expect(result.absent).toEqual([gone.username]);
      expect(result.failed.map((f) => [f.username, f.error.code, f.error.message])).toEqual([
        [
          stuck.username,
          'revoke_failed',
          `Could not drop the trigger ${DB_L}.lease_trigger of user ${stuck.username} at ${ADDRESS}: another session held a lock it needs for more than 1 s.`,
        ],
      ]);
      expect(await myUserHosts(stuck.username)).toEqual(['%']);
      expect(await outcome(login(stuck))).not.toBe('succeeded');
    } finally {
      await lock.release();
    }
    try {
      expect(await bounded.revokeUsers([stuck.username])).toEqual({ dropped: [stuck.username], absent: [], failed: [] });
    } finally {
      await bounded.close();
    }
    expect(await myStoredObjects(DB_L)).toEqual([]);
  });
});

describe('a least-privilege admin', () => {
  test('with the documented grants, it hands out a recipe and drops what the lease defined', async () => {
    const admin = `sy${T}_admin`;
    const password = newPassword();
    strays.push(admin);
    const grants = [
      'CREATE USER, PROCESS, CONNECTION ADMIN ON *.*',
      'SELECT ON mysql.user',
      'SELECT ON mysql.db',
      'SELECT ON mysql.tables_priv',
      // What the recipe hands out, WITH GRANT OPTION ...
      `SELECT, CREATE ROUTINE, CREATE VIEW, TRIGGER, EVENT ON \`${DB_P}\`.* WITH GRANT OPTION`,
      // ... and what it takes to drop routines and views someone else defined.
      `ALTER ROUTINE, DROP ON \`${DB_P}\`.*`,
    ];
    await myAdminQuery('CREATE USER ?@? IDENTIFIED BY ?', [admin, '%', password]);
    for (const g of grants) {
      const [on, option] = g.split(' WITH ');
      await myAdminQuery(`GRANT ${on} TO ?@?${option ? ` WITH ${option}` : ''}`, [admin, '%']);
    }
    const limited = await MysqlTarget.connect({ ...ROOT, username: admin, password }, OPTIONS);
    const user = newUser([grant(DB_P, '*', 'SELECT', 'CREATE ROUTINE', 'CREATE VIEW', 'TRIGGER', 'EVENT')]);
    const db = `\`${DB_P}\``;
    try {
      await limited.createUser(user);
      const session = await login(user);
      try {
        await session.query(`CREATE PROCEDURE ${db}.lease_proc() SELECT 1`);
        await session.query(`CREATE VIEW ${db}.lease_view AS SELECT id FROM ${db}.items`);
        await session.query(`CREATE TRIGGER ${db}.lease_trigger BEFORE INSERT ON ${db}.items FOR EACH ROW SET @sy_seen = NEW.id`);
        await session.query(`CREATE EVENT ${db}.lease_event ON SCHEDULE EVERY 1 HOUR DO SELECT 1`);
        expect(await myStoredObjects(DB_P)).toHaveLength(4);
        expect(await limited.revokeUsers([user.username])).toEqual({ dropped: [user.username], absent: [], failed: [] });
        expect(await isClosed(session)).toBe(true);
      } finally {
        session.destroy();
      }
    } finally {
      await limited.close();
    }
    expect(await myStoredObjects(DB_P)).toEqual([]);
    await myAdminQuery(`INSERT INTO ${db}.items VALUES (2, 'by root')`);
  });
});

describe("the server's general log", () => {
  test('sees a password only as its hash, from a creationStatements template too', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sy-general-log-'));
    chmodSync(dir, 0o777); // the server writes it as its own user
    const file = join(dir, 'general.log');
    const fromTemplate = newUser([]);
    fromTemplate.creationStatements = ["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'", `GRANT SELECT ON \`${DB_A}\`.items TO '{{name}}'@'%'`];
    const plain = newUser([grant(DB_A, 'items', 'SELECT')]);
    const [before] = await myAdminQuery('SELECT @@global.general_log AS enabled, @@global.general_log_file AS file');
    let log: string;
    try {
      try {
        await myAdminQuery('SET GLOBAL general_log_file = ?', [file]);
        await myAdminQuery('SET GLOBAL general_log = 1');
        await target.createUser(fromTemplate);
        await target.createUser(plain);
      } finally {
        // Other tests share this server: the log is on only for these two calls.
        await myAdminQuery('SET GLOBAL general_log = ?', [Number(before.enabled)]);
        await myAdminQuery('SET GLOBAL general_log_file = ?', [String(before.file)]);
      }
      log = readFileSync(file, 'utf8');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(log).toContain(`CREATE USER '${fromTemplate.username}'@'%' IDENTIFIED BY PASSWORD '${nativePasswordHash(fromTemplate.password)}'`);
    expect(log).toContain(`CREATE USER '${plain.username}'@'%' IDENTIFIED BY PASSWORD '${nativePasswordHash(plain.password)}'`);
    expect(log).not.toContain(fromTemplate.password);
    expect(log).not.toContain(plain.password);
    for (const user of [fromTemplate, plain]) {
      const session = await login(user);
      try {
        const [rows] = await session.query<Row[]>(`SELECT name FROM \`${DB_A}\`.items`);
        expect(rows.map((r) => r.name)).toEqual([DB_A]);
      } finally {
        session.destroy();
      }
    }
  });
});
