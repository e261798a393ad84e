/**
 * Revoking MySQL/MariaDB users, and reading what the server holds for them: the host
 * variants of each name, and where each could have defined routines, events, triggers or views.
 */
import { failed, type SyError } from '../../errors.js';
import { parseManagedName } from '../names.js';
import { describeUsers, type DriverError, revocationStatement } from '../shared.js';
import type { RevokeOptions, RevokeResult } from '../target.js';
import { account, checkedName, ident, type MysqlSession, rethrowIfLost, type Row, text, userName } from './session.js';

const ER_NO_SUCH_THREAD = 1094;
const ER_LOCK_WAIT_TIMEOUT = 1205;
/** How long a killed session may take to end before revoking goes on without waiting. */
const SESSION_END_WAIT_MS = 5000;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Locks the accounts (no new logins), kills their sessions (which also releases any lock
 * they hold), drops what they defined, drops every host variant, then looks again.
 * Tables and databases a lease created stay: MySQL records no owner for them.
 */
export async function revokeUsers(session: MysqlSession, usernames: string[], options: RevokeOptions = {}): Promise<RevokeResult> {
  const names = [...new Set(usernames.map((name) => checkedName(name)))];
  if (names.length === 0) return { dropped: [], absent: [], failed: [] };
  let holdings: Map<string, Holding>;
  try {
    holdings = await lookUpHoldings(session, names);
  } catch (error) {
    rethrowIfLost(error);
    return { dropped: [], absent: [], failed: names.map((username) => ({ username, error: error as SyError })) };
  }
  const present = names.filter((n) => holdings.has(n));
  const absent = names.filter((n) => !holdings.has(n));
  const failures = new Map<string, SyError>();
  try {
    const accounts = present.flatMap((n) => holdings.get(n)!.hosts.map((h) => account(n, h)));
    if (accounts.length > 0) {
      // Best effort: an older server without ACCOUNT LOCK still gets the rest.
      await session.run(`ALTER USER IF EXISTS ${accounts.join(', ')} ACCOUNT LOCK`, [], 'lock the accounts').catch(rethrowIfLost);
    }
    // Also for the absent names: a session can outlive its user.
    await endSessions(session, names, failures);
    await dropStoredObjects(session, present.filter((n) => !failures.has(n)), holdings, failures);
    const droppable = present.filter((n) => !failures.has(n));
    if (options.revocationStatements && options.revocationStatements.length > 0) {
      await runRevocationStatements(session, droppable, options.revocationStatements, failures);
    } else {
      await dropAccounts(session, droppable, holdings, failures);
    }
  } catch (error) {
    rethrowIfLost(error);
    for (const name of present) if (!failures.has(name)) failures.set(name, error as SyError);
  }
  if (present.length === 0) return { dropped: [], absent, failed: [] };
  let left: Set<string>;
  try {
    const rows = await session.run<Row[]>('SELECT DISTINCT user AS name FROM mysql.user WHERE user IN (?)', [present], 'check that the users are gone', 'revoke_failed');
    left = new Set(rows.map(userName));
  } catch (error) {
    rethrowIfLost(error);
    return { dropped: [], absent, failed: present.map((username) => ({ username, error: failures.get(username) ?? (error as SyError) })) };
  }
  const stillThere = (name: string) => failures.get(name) ?? failed('revoke_failed', `Could not revoke user ${name} at ${session.address}: it still exists.`);
  return {
    dropped: present.filter((n) => !left.has(n)),
    absent,
    failed: present.filter((n) => left.has(n)).map((username) => ({ username, error: stillThere(username) })),
  };
}

/** Hosts of each name (absent names are missing), and where each could have created objects. */
export async function lookUpHoldings(session: MysqlSession, names: string[]): Promise<Map<string, Holding>> {
  const rows = await session.run<Row[]>(
    `SELECT 'account' AS kind, user AS name, host AS host, NULL AS db, CONCAT(Create_routine_priv, Event_priv, Trigger_priv, Create_view_priv) AS global
         FROM mysql.user WHERE user IN (?)
       UNION ALL SELECT 'database', user, host, db, NULL FROM mysql.db WHERE user IN (?)
          AND (Create_routine_priv = 'Y' OR Event_priv = 'Y' OR Trigger_priv = 'Y' OR Create_view_priv = 'Y')
       UNION ALL SELECT 'table', user, host, db, NULL FROM mysql.tables_priv WHERE user IN (?)
          AND (FIND_IN_SET('Trigger', table_priv) > 0 OR FIND_IN_SET('Create View', table_priv) > 0)`,
    [names, names, names],
    `look up ${describeUsers(names)}`,
    'revoke_failed',
  );
  const holdings = new Map<string, Holding>();
  for (const row of rows.filter((r) => r.kind === 'account')) {
    const name = text(row.name);
    if (!names.includes(name)) continue;
    const holding = holdings.get(name) ?? { hosts: [], databases: new Set<string>(), anywhere: false };
    holding.hosts.push(text(row.host));
    // mysql.user is a view on MariaDB: its Y/N columns are compared here, not in SQL, where
    // their collation clashes with the connection's.
    if (text(row.global).includes('Y')) holding.anywhere = true;
    holdings.set(name, holding);
  }
  for (const row of rows.filter((r) => r.kind !== 'account')) {
    const holding = holdings.get(text(row.name));
    if (!holding) continue;
    const db = row.kind === 'database' ? literalDatabase(text(row.db)) : text(row.db);
    if (db === undefined) holding.anywhere = true;
    else holding.databases.add(db);
  }
  return holdings;
}

/**
 * KILL only marks a session; it ends when its thread next wakes. Sessions are looked up
 * until none is left (a login that raced the account lock is found too), as PostgreSQL's
 * pg_terminate_backend(pid, timeout) waits, so a revoke that returns has really ended them.
 */
async function endSessions(session: MysqlSession, names: string[], failures: Map<string, SyError>): Promise<void> {
  const wanted = new Set(names);
  const killed = new Set<number>();
  const deadline = Date.now() + SESSION_END_WAIT_MS;
  for (;;) {
    const rows = await session.run<Row[]>(
      'SELECT id AS id, user AS name FROM information_schema.processlist WHERE user IN (?) AND id <> CONNECTION_ID()',
      [names],
      'look up the sessions to end',
      'revoke_failed',
    );
    const sessions = rows.filter((r) => wanted.has(text(r.name)) && !failures.has(text(r.name)));
    if (sessions.length === 0 || Date.now() > deadline) return;
    const fresh = sessions.filter((s) => !killed.has(Number(s.id)));
    for (const found of fresh) {
      const id = Number(found.id);
      killed.add(id);
      try {
        await session.send(`KILL CONNECTION ${id}`);
      } catch (error) {
        // The session ended on its own between the lookup and the kill.
        if ((error as DriverError).errno === ER_NO_SUCH_THREAD) continue;
        const failure = session.queryFailure('revoke_failed', `end a session of user ${text(found.name)}`, error);
        rethrowIfLost(failure);
        failures.set(text(found.name), failure);
      }
    }
    if (fresh.length === 0) await sleep(20);
  }
}

/**
 * Routines, events, views and triggers record their DEFINER; left behind, a trigger would
 * make every write to its table fail and an event would keep firing. Only the databases
 * where the users could create them are searched (scanning every table's triggers is slow
 * on a large server).
 */
async function dropStoredObjects(session: MysqlSession, names: string[], holdings: Map<string, Holding>, failures: Map<string, SyError>): Promise<void> {
  const owners = names.map((n) => holdings.get(n)!);
  const anywhere = owners.some((h) => h.anywhere);
  const databases = [...new Set(owners.flatMap((h) => [...h.databases]))];
  if (!anywhere && databases.length === 0) return;
  const sources: [string, string, string, string][] = [
    ['routine_type', 'routine_schema', 'routine_name', 'information_schema.routines'],
    ["'EVENT'", 'event_schema', 'event_name', 'information_schema.events'],
    ["'VIEW'", 'table_schema', 'table_name', 'information_schema.views'],
    ["'TRIGGER'", 'event_object_schema', 'trigger_name', 'information_schema.triggers'],
  ];
  const values: unknown[] = [];
  const sql = sources
    .map(([kind, schema, object, from]) => {
      values.push(names);
      if (!anywhere) values.push(databases);
      return `SELECT ${kind} AS kind, ${schema} AS db, ${object} AS name, definer AS definer FROM ${from} WHERE SUBSTRING_INDEX(definer, '@', 1) IN (?)${anywhere ? '' : ` AND ${schema} IN (?)`}`;
    })
    .join(' UNION ALL ');
  const rows = await session.run<Row[]>(sql, values, 'look up what the users defined', 'revoke_failed');
  const objects: StoredObject[] = [];
  for (const row of rows) {
    const definer = text(row.definer);
    const owner = definer.slice(0, definer.indexOf('@'));
    if (names.includes(owner)) objects.push({ kind: text(row.kind) as StoredObject['kind'], database: text(row.db), name: text(row.name), owner });
  }
  objects.sort((a, b) => DROP_ORDER.indexOf(a.kind) - DROP_ORDER.indexOf(b.kind));
  for (const object of objects) {
    const what = `${object.kind.toLowerCase()} ${object.database}.${object.name}`;
    const drop = `DROP ${object.kind} IF EXISTS ${ident(object.database)}.${ident(object.name)}`;
    const action = `drop the ${what} of user ${object.owner}`;
    try {
      if (object.kind.startsWith('PACKAGE')) {
        // MariaDB parses DROP PACKAGE only in sql_mode ORACLE, where any session may make one.
        await session.run("SET @sy_sql_mode = @@sql_mode, sql_mode = 'ORACLE'", [], action, 'revoke_failed');
        try {
          await dropUnblocked(session, drop, object.database, action, names);
        } finally {
          await session.run('SET sql_mode = @sy_sql_mode', [], 'restore the sql_mode', 'revoke_failed');
        }
      } else {
        await dropUnblocked(session, drop, object.database, action, names);
      }
    } catch (error) {
      rethrowIfLost(error);
      // The user stays (locked) so that the next attempt still finds what it defined.
      if (!failures.has(object.owner)) failures.set(object.owner, error as SyError);
    }
  }
}

/**
 * Runs `drop`; when it times out on a lock (an open transaction on the table of a trigger or
 * view, a routine in use), the sessions of other sy leases that may hold it (see below) are
 * ended and it runs once more, so that two leases of one holder cannot shield each other
 * (MariaDB does not say who holds a metadata lock). Another application's session is left
 * alone: the drop then fails on its lock timeout, naming the lock.
 */
async function dropUnblocked(session: MysqlSession, drop: string, database: string, action: string, revoking: string[]): Promise<void> {
  try {
    await session.send(drop);
    return;
  } catch (error) {
    if ((error as DriverError).errno !== ER_LOCK_WAIT_TIMEOUT) throw session.queryFailure('revoke_failed', action, error);
  }
  // Who may hold the lock: a session with an InnoDB transaction open, or one of a user with
  // privileges in the object's database (a routine called in a transaction holds its lock
  // to the end of it, with no InnoDB transaction).
  const rows = await session.run<Row[]>(
    `SELECT p.id AS id, p.user AS name FROM information_schema.processlist p
      WHERE p.id <> CONNECTION_ID()
        AND (p.id IN (SELECT trx_mysql_thread_id FROM information_schema.innodb_trx)
             OR p.user IN (SELECT user FROM mysql.db WHERE CONVERT(? USING utf8mb4) LIKE CONVERT(db USING utf8mb4)
                           UNION SELECT user FROM mysql.tables_priv WHERE CONVERT(db USING utf8mb4) = CONVERT(? USING utf8mb4)))`,
    [database, database],
    'look up the sessions that block the revocation',
    'revoke_failed',
  );
  for (const row of rows) {
    const name = text(row.name);
    if (revoking.includes(name) || parseManagedName(name) === undefined) continue;
    await session.send(`KILL CONNECTION ${Number(row.id)}`).catch((error: unknown) => {
      if ((error as DriverError).errno !== ER_NO_SUCH_THREAD) throw session.queryFailure('revoke_failed', `end a session of user ${name}`, error);
    });
  }
  await session.run(drop, [], action, 'revoke_failed');
}

/** One DROP USER for all; only if that fails, one per user to find whose cannot be dropped. */
async function dropAccounts(session: MysqlSession, names: string[], holdings: Map<string, Holding>, failures: Map<string, SyError>): Promise<void> {
  const accountsOf = (name: string) => holdings.get(name)!.hosts.map((h) => account(name, h));
  if (names.length === 0) return;
  try {
    await session.run(`DROP USER IF EXISTS ${names.flatMap(accountsOf).join(', ')}`, [], `revoke ${describeUsers(names)}`, 'revoke_failed');
    return;
  } catch (error) {
    rethrowIfLost(error);
    if (names.length === 1) {
      failures.set(names[0], error as SyError);
      return;
    }
  }
  for (const name of names) {
    try {
      await session.run(`DROP USER IF EXISTS ${accountsOf(name).join(', ')}`, [], `revoke user ${name}`, 'revoke_failed');
    } catch (error) {
      rethrowIfLost(error);
      failures.set(name, error as SyError);
    }
  }
}

async function runRevocationStatements(session: MysqlSession, names: string[], templates: string[], failures: Map<string, SyError>): Promise<void> {
  for (const name of names) {
    try {
      for (const template of templates) {
        await session.run(revocationStatement(template, name), [], `revoke user ${name}`, 'revoke_failed');
      }
    } catch (error) {
      rethrowIfLost(error);
      failures.set(name, error as SyError);
    }
  }
}

/** What the server holds for one user name, read before revoking it. */
export interface Holding {
  hosts: string[];
  /** Databases where it could create routines, events, triggers or views. */
  databases: Set<string>;
  /** It could create them in any database (a global privilege or a wildcard grant). */
  anywhere: boolean;
}

interface StoredObject {
  kind: 'TRIGGER' | 'EVENT' | 'VIEW' | 'PROCEDURE' | 'FUNCTION' | 'PACKAGE BODY' | 'PACKAGE';
  database: string;
  name: string;
  owner: string;
}

/** Triggers and events run by themselves, so they go first; a package's body before the package (MariaDB). */
const DROP_ORDER: StoredObject['kind'][] = ['TRIGGER', 'EVENT', 'VIEW', 'PROCEDURE', 'FUNCTION', 'PACKAGE BODY', 'PACKAGE'];

/** The database a mysql.db pattern names, or undefined when it has an unescaped wildcard. */
function literalDatabase(pattern: string): string | undefined {
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\' && i + 1 < pattern.length) out += pattern[++i];
    else if (c === '_' || c === '%') return undefined;
    else out += c;
  }
  return out;
}
