/**
 * MySQL and MariaDB target. Loaded only when such a base secret is used (see connectTarget),
 * so `mysql2` is imported here and nowhere else.
 *
 * Choices worth knowing:
 * - Every user sy creates is `'<name>'@'%'`; revoking drops every host variant of the name.
 * - A lease gets exactly its recipe: database names in database-level grants are escaped
 *   (`_` and `%` are wildcards there), `*.*` is granted database by database on the
 *   non-system databases that exist when the lease is created (never `ON *.*`), and `ALL`
 *   is the data privileges of the level named (never `GRANT ALL`).
 * - On MariaDB the password is sent as its mysql_native_password hash, never in plaintext,
 *   also from a creationStatements template; MySQL 8 gets the escaped literal (it rewrites
 *   passwords out of the account statements it logs; not covered by the tests).
 * - There is no transactional DDL: a failed grant drops the user before the error is thrown.
 * - A grant on a missing database or table is refused here, because MySQL accepts one
 *   when CREATE is among the privileges.
 * - renewUser changes nothing (MySQL has no VALID UNTIL; the reap-after bound is in the name)
 *   but, as on PostgreSQL, throws `user_not_found` when the user is gone.
 * - Every wait is bounded: lock_wait_timeout and innodb_lock_wait_timeout, and on MariaDB
 *   max_statement_time, which is the only bound on a wait for the grant tables (MariaDB
 *   opens them ignoring lock_wait_timeout). MySQL 8 has no statement bound for DDL.
 * - TLS: `ssl.servername` is not supported by mysql2; the host name is verified when the
 *   host is a DNS name and the certificate is checked against `ca` in every case.
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import mysql from 'mysql2';
import type { Connection as PromiseConnection, ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import { failed, SyError } from '../errors.js';
import { MYSQL_IDENTIFIED_BY_PASSWORD } from '../secrets/validate.js';
import type { BaseConnection, GrantPermission } from '../model/secret.js';
import { ALL_PRIVILEGES, ENGINES, isSystemSchema, MYSQL_DATABASE_PRIVILEGES, MYSQL_TABLE_PRIVILEGES } from '../model/engines.js';
import { type HeldGrant, notGrantable, parseGrantLine } from './mysql-grants.js';
import { MANAGED_NAME_SQL_PATTERN, parseManagedName } from './names.js';
import { checkedUserName, networkReason, renderTemplate, safeReason } from './shared.js';
import {
  type ConnectOptions,
  DEFAULT_LOCK_TIMEOUT_MS,
  DEFAULT_STATEMENT_TIMEOUT_MS,
  type ManagedUser,
  type ManagedUsers,
  type NewUser,
  type RecipeCheckOptions,
  type RevokeOptions,
  type RevokeResult,
  type Target,
} from './target.js';

const LABEL = 'MySQL/MariaDB';
const ER_NO_SUCH_THREAD = 1094;
const ER_LOCK_WAIT_TIMEOUT = 1205;
/** MariaDB's max_statement_time and MySQL's max_execution_time. */
const STATEMENT_TIMEOUT_ERRNOS = new Set([1969, 3024]);
/** How long a killed session may take to end before revoking goes on without waiting. */
const SESSION_END_WAIT_MS = 5000;
/** How long an idle connection waits for the server to acknowledge QUIT before it is cut. */
const QUIT_WAIT_MS = 200;

interface MysqlError extends Error {
  code?: string;
  errno?: number;
  sqlState?: string;
  sqlMessage?: string;
}

type Row = RowDataPacket;

const ident = (name: string): string => `\`${name.replace(/`/g, '``')}\``;
const literal = (value: string): string => mysql.escape(value);
const account = (name: string, host = '%'): string => `${literal(name)}@${literal(host)}`;
/** In a database-level grant `_` and `%` are wildcards: escaped, the name means only itself. */
const databaseGrantName = (name: string): string => ident(name.replace(/[\\_%]/g, (c) => `\\${c}`));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** MariaDB's `IDENTIFIED BY PASSWORD` form: `*` + upper-case hex of SHA1(SHA1(password)). */
export function nativePasswordHash(password: string): string {
  const inner = createHash('sha1').update(password, 'utf8').digest();
  return `*${createHash('sha1').update(inner).digest('hex').toUpperCase()}`;
}

function tlsOptions(ssl: BaseConnection['ssl']): mysql.SslOptions | undefined {
  if (!ssl) return undefined;
  if (ssl === true) return { rejectUnauthorized: true, verifyIdentity: true };
  const verify = ssl.rejectUnauthorized ?? true;
  const options: mysql.SslOptions = { rejectUnauthorized: verify, verifyIdentity: verify };
  if (ssl.ca !== undefined) options.ca = ssl.ca;
  if (ssl.cert !== undefined) options.cert = ssl.cert;
  if (ssl.key !== undefined) options.key = ssl.key;
  return options;
}

/**
 * mysql2 checks a certificate's identity against a host name only: for an IP address Node
 * falls back to checking it against "localhost". sy checks the address itself as soon as
 * the connection is up, before it sends any statement.
 */
function identityMatches(connection: mysql.Connection, host: string): boolean {
  if (net.isIP(host) === 0) return true;
  const socket = (connection as unknown as { stream?: Partial<tls.TLSSocket> }).stream;
  const cert = socket?.getPeerCertificate?.();
  return cert?.raw !== undefined && tls.checkServerIdentity(host, cert) === undefined;
}

/** A server or driver message, unless it contains one of the secrets. */
function reasonOf(error: unknown, secrets: string[]): string {
  const err = error as MysqlError;
  return safeReason(String(err?.sqlMessage ?? err?.message ?? error), err?.code, secrets);
}

function connectFailure(conn: BaseConnection, error: unknown, timeoutMs: number): SyError {
  const err = error as MysqlError;
  const code = err?.code ?? '';
  let kind: 'target_unreachable' | 'target_refused' = 'target_unreachable';
  const network = networkReason(code);
  let reason: string;
  if (code === 'ETIMEDOUT') {
    reason = `no answer within ${timeoutMs} ms`;
  } else if (network !== undefined) {
    reason = network;
  } else if (code === 'PROTOCOL_CONNECTION_LOST') {
    reason = 'the server closed the connection';
  } else if (code === 'HANDSHAKE_SSL_ERROR') {
    // mysql2 replaces Node's TLS error code with its own; Node's message says what was wrong.
    const message = reasonOf(error, [conn.password]);
    reason = /altname|does not match/i.test(message)
      ? 'the TLS certificate does not match the host name'
      : `the TLS certificate was not accepted (${message})`;
  } else if (code === 'HANDSHAKE_NO_SSL_SUPPORT') {
    reason = 'the server does not accept TLS connections';
  } else if (code === 'ER_ACCESS_DENIED_ERROR' || code === 'ER_ACCESS_DENIED_NO_PASSWORD_ERROR') {
    kind = 'target_refused';
    reason = `access denied for user "${conn.username}" (wrong user name or password)`;
  } else if (code === 'ER_DBACCESS_DENIED_ERROR') {
    kind = 'target_refused';
    reason = `user "${conn.username}" may not use database "${conn.database ?? ''}"`;
  } else if (code === 'ER_BAD_DB_ERROR') {
    kind = 'target_refused';
    reason = `database "${conn.database ?? ''}" does not exist`;
  } else if (code === 'ER_HOST_NOT_PRIVILEGED' || code === 'ER_HOST_IS_BLOCKED') {
    kind = 'target_refused';
    reason = 'the server does not accept connections from this host';
  } else if (code === 'ER_CON_COUNT_ERROR') {
    kind = 'target_refused';
    reason = 'too many connections';
  } else {
    if (err?.errno !== undefined && err.sqlState) kind = 'target_refused';
    reason = reasonOf(error, [conn.password]);
  }
  return failed(kind, `Could not connect to ${LABEL} at ${conn.host}:${conn.port}: ${reason}.`);
}

/** What the server holds for one user name, read before revoking it. */
interface Holding {
  hosts: string[];
  /** Databases where it could create routines, events, triggers or views. */
  databases: Set<string>;
  /** It could create them in any database (a global privilege or a wildcard grant). */
  anywhere: boolean;
}

interface StoredObject {
  kind: 'TRIGGER' | 'EVENT' | 'VIEW' | 'PROCEDURE' | 'FUNCTION';
  database: string;
  name: string;
  owner: string;
}

/** Triggers and events run by themselves, so they go first. */
const DROP_ORDER: StoredObject['kind'][] = ['TRIGGER', 'EVENT', 'VIEW', 'PROCEDURE', 'FUNCTION'];

/** What lookUpNames found; sets hold names folded as the server compares them. */
interface ServerNames {
  mariadb: boolean;
  /** lower_case_table_names is set: names compare without case. */
  folded: boolean;
  fold: (name: string) => string;
  /** The databases the admin sees, sorted (listed only when a grant or the caller needs them). */
  databases: string[];
  knownDatabases: Set<string>;
  /** `db.table`, for the tables the recipe names that exist. */
  knownTables: Set<string>;
}

interface Statement {
  sql: string;
  /** For the error message: `grant SELECT on app.*`. */
  action: string;
}

const CLOSED_BY_SY = 'SY_CLOSED';

export class MysqlTarget implements Target {
  readonly address: string;
  /** Rejects once the connection is abandoned, so that no call waits for an answer that cannot come. */
  private readonly abandoned: Promise<never>;
  private rejectPending!: (error: Error) => void;
  private closed = false;
  private inFlight = 0;
  private readonly onAbort = (): void => this.abandon();
  /** The driver's promise interface (what the tests spy on). */
  private readonly connection: PromiseConnection;

  private constructor(
    private readonly core: mysql.Connection,
    private readonly conn: BaseConnection,
    private readonly limits: { lockSeconds: number; statementMs: number },
    private readonly signal: AbortSignal | undefined,
  ) {
    this.address = `${conn.host}:${conn.port}`;
    this.connection = core.promise();
    this.abandoned = new Promise<never>((_resolve, reject) => {
      this.rejectPending = reject;
    });
    this.abandoned.catch(() => undefined);
    signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  static async connect(conn: BaseConnection, options: ConnectOptions): Promise<MysqlTarget> {
    const { signal } = options;
    const cancelled = () => failed('target_unreachable', `Could not connect to ${LABEL} at ${conn.host}:${conn.port}: the attempt was cancelled.`);
    if (signal?.aborted) throw cancelled();
    const ssl = tlsOptions(conn.ssl);
    const core = mysql.createConnection({
      host: conn.host,
      port: conn.port,
      user: conn.username,
      password: conn.password,
      database: conn.database,
      ssl,
      connectTimeout: options.connectTimeoutMs,
      multipleStatements: false,
    });
    // A dropped connection surfaces on the next query; without a listener it would crash sy.
    core.on('error', () => undefined);
    try {
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => reject(cancelled());
        signal?.addEventListener('abort', onAbort, { once: true });
        core.once('connect', () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        });
        core.once('error', (error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(connectFailure(conn, error, options.connectTimeoutMs));
        });
      });
    } catch (error) {
      cutOff(core);
      throw error;
    }
    if (ssl?.verifyIdentity && !identityMatches(core, conn.host)) {
      cutOff(core);
      throw failed('target_unreachable', `Could not connect to ${LABEL} at ${conn.host}:${conn.port}: the TLS certificate does not match the host name.`);
    }
    const lockMs = positive(options.lockTimeoutMs) ?? DEFAULT_LOCK_TIMEOUT_MS;
    const statementMs = positive(options.statementTimeoutMs) ?? DEFAULT_STATEMENT_TIMEOUT_MS;
    const target = new MysqlTarget(core, conn, { lockSeconds: Math.max(1, Math.ceil(lockMs / 1000)), statementMs }, signal);
    try {
      if (signal?.aborted) throw cancelled();
      await target.limitWaits();
    } catch (error) {
      target.abandon();
      throw error;
    }
    return target;
  }

  /**
   * Bounds every wait of this session. MySQL 8 has no max_statement_time, and reads the
   * MariaDB-only executable comment as a comment.
   */
  private async limitWaits(): Promise<void> {
    const { lockSeconds, statementMs } = this.limits;
    await this.run(
      `SET SESSION lock_wait_timeout = ${lockSeconds}, innodb_lock_wait_timeout = ${lockSeconds} /*M!100101 , max_statement_time = ${statementMs / 1000} */`,
      [],
      'limit how long a statement may wait',
    );
  }

  /** Only creating a user from a template needs to know the server; the rest does not ask. */
  private async isMariadb(): Promise<boolean> {
    const rows = await this.run<Row[]>('SELECT VERSION() AS version', [], 'read the server version');
    return /mariadb/i.test(String(rows[0]?.version ?? ''));
  }

  async createUser(user: NewUser): Promise<void> {
    const name = checkedName(user.username);
    if (user.creationStatements && user.creationStatements.length > 0) return this.createFromTemplates(name, user, user.creationStatements);
    // Everything is checked before the user exists, so most refusals leave nothing to undo.
    const { mariadb, grants } = await this.planGrants(name, user.grants);
    const credential = identifiedBy(user.password, mariadb);
    // Not undone when it fails: the name may be someone else's, and a user that was not made needs no drop.
    await this.run(`CREATE USER ${account(name)} ${credential}`, [], `create user ${name}`, 'create_user_failed', user.password);
    try {
      for (const grant of grants) await this.run(grant.sql, [], grant.action, 'grant_failed');
    } catch (error) {
      await this.run(`DROP USER IF EXISTS ${account(name)}`, [], `drop user ${name}`).catch(() => undefined);
      throw error;
    }
  }

  private async createFromTemplates(name: string, user: NewUser, templates: string[]): Promise<void> {
    const mariadb = templates.some((t) => t.search(MYSQL_IDENTIFIED_BY_PASSWORD) >= 0) && (await this.isMariadb());
    const credential = identifiedBy(user.password, mariadb);
    const statements = templates.map((template) => {
      const withCredential = template.replace(MYSQL_IDENTIFIED_BY_PASSWORD, () => credential);
      if (/\{\{\s*password\s*\}\}/.test(withCredential)) {
        throw failed(
          'create_user_failed',
          `Could not create user ${name} at ${this.address}: a creation statement uses {{password}} other than as IDENTIFIED BY '{{password}}', which the server would log in clear text.`,
        );
      }
      return renderTemplate(withCredential, { name, password: '', expiration: user.expiresAt.toISOString() }, escapePasswordLiteral);
    });
    let ran = 0;
    try {
      for (const statement of statements) {
        await this.run(statement, [], `create user ${name}`, 'create_user_failed', user.password);
        ran++;
      }
    } catch (error) {
      // A template may create the user on any host: drop whatever exists under the name.
      if (ran > 0) {
        const holdings = await this.holdings([name]).catch(() => new Map<string, Holding>());
        const hosts = holdings.get(name)?.hosts ?? [];
        if (hosts.length > 0) await this.run(`DROP USER IF EXISTS ${hosts.map((h) => account(name, h)).join(', ')}`, [], `drop user ${name}`).catch(() => undefined);
      }
      throw error;
    }
  }

  /**
   * One look at the server for what a recipe names: its version, whether it folds names to
   * lower case, the databases the admin sees (when a grant reaches a whole database) and the
   * named tables that exist. Sets hold folded names, compared as the server does.
   */
  private async lookUpNames(grants: GrantPermission[], action: string, code: string, everyDatabase = false): Promise<ServerNames> {
    const tables = grants.filter((g) => g.schema !== '*' && g.table !== '*').map((g) => [g.schema, g.table]);
    const parts = ['SELECT VERSION() AS version, @@lower_case_table_names AS folded, NULL AS db, NULL AS tbl'];
    const values: unknown[] = [];
    if (everyDatabase || grants.some((g) => g.table === '*')) parts.push('SELECT NULL, NULL, schema_name, NULL FROM information_schema.schemata');
    if (tables.length > 0) {
      parts.push('SELECT NULL, NULL, table_schema, table_name FROM information_schema.tables WHERE (table_schema, table_name) IN (?)');
      values.push(tables);
    }
    const rows = await this.run<Row[]>(parts.join(' UNION ALL '), values, action, code);
    const server = rows.find((r) => r.version !== null);
    const names = rows.filter((r) => r.version === null);
    // With lower_case_table_names set, names compare without case, as the server does.
    const folded = Number(server?.folded ?? 0) !== 0;
    const fold = folded ? (s: string) => s.toLowerCase() : (s: string) => s;
    const databases = names.filter((r) => r.tbl === null).map((r) => text(r.db)).sort();
    return {
      mariadb: /mariadb/i.test(String(server?.version ?? '')),
      folded,
      fold,
      databases,
      knownDatabases: new Set(databases.map(fold)),
      knownTables: new Set(names.filter((r) => r.tbl !== null).map((r) => `${fold(text(r.db))}.${fold(text(r.tbl))}`)),
    };
  }

  /**
   * The GRANT statements of a recipe, after one look at the server: its version (for the
   * password form), the databases that exist and the tables the recipe names.
   */
  private async planGrants(name: string, grants: GrantPermission[]): Promise<{ mariadb: boolean; grants: Statement[] }> {
    const { mariadb, fold, databases, knownDatabases, knownTables } = await this.lookUpNames(grants, `look up the databases and tables granted to ${name}`, 'grant_failed');
    const statements: Statement[] = [];
    const to = `TO ${account(name)}`;
    for (const grant of grants) {
      const where = `${grant.schema}.${grant.table}`;
      const named = grant.privileges.join(', ');
      const refuse = (reason: string) => failed('grant_failed', `Could not grant ${named} on ${where} at ${this.address}: ${reason}.`);
      const onTable = grant.schema !== '*' && grant.table !== '*';
      const privileges = expandPrivileges(grant.privileges, onTable ? MYSQL_TABLE_PRIVILEGES : MYSQL_DATABASE_PRIVILEGES);
      if (typeof privileges === 'string') {
        throw refuse(`${privileges.slice(0, 40)} is not a privilege sy grants on ${onTable ? 'a table' : 'a database'}`);
      }
      const what = privileges.join(', ');
      if (grant.schema === '*') {
        if (grant.table !== '*') throw refuse('a table needs a database');
        // Database by database, so that the system databases (mysql.user and its password
        // hashes) stay out of reach and no global privilege is ever granted.
        const reachable = databases.filter((db) => !isSystemSchema('mysql', db));
        if (reachable.length === 0) throw refuse('the admin sees no database other than the system ones');
        for (const db of reachable) statements.push({ sql: `GRANT ${what} ON ${databaseGrantName(db)}.* ${to}`, action: `grant ${named} on ${db}.*` });
      } else if (isSystemSchema('mysql', grant.schema)) {
        throw refuse(`"${grant.schema}" is a system database`);
      } else if (grant.table === '*') {
        if (!knownDatabases.has(fold(grant.schema))) throw refuse(`database "${grant.schema}" does not exist`);
        statements.push({ sql: `GRANT ${what} ON ${databaseGrantName(grant.schema)}.* ${to}`, action: `grant ${named} on ${where}` });
      } else {
        if (!knownTables.has(`${fold(grant.schema)}.${fold(grant.table)}`)) throw refuse(`table "${where}" does not exist`);
        // Table-level grants take names literally: no escaping here.
        statements.push({ sql: `GRANT ${what} ON ${ident(grant.schema)}.${ident(grant.table)} ${to}`, action: `grant ${named} on ${where}` });
      }
    }
    return { mariadb, grants: statements };
  }

  /**
   * What createUser would refuse, or the server would deny: names that do not exist, and
   * privileges the admin cannot hand out (SHOW GRANTS: its own, its roles', added up over
   * the global, database and table levels, as the server does). `*.*` is checked on every
   * database the admin sees, since a lease gets it on each of them.
   */
  async checkRecipe(grants: GrantPermission[], _options: RecipeCheckOptions = {}): Promise<string[]> {
    const names = await this.lookUpNames(grants, 'look up the databases and tables of the recipe', 'target_error', true);
    const lines = await this.run<Row[]>('SHOW GRANTS', [], "read the admin's grants");
    const held = lines.map((row) => parseGrantLine(text(Object.values(row)[0]))).filter((g): g is HeldGrant => g !== undefined);
    const problems: string[] = [];
    const add = (problem: string) => {
      if (!problems.includes(problem)) problems.push(problem);
    };
    const grantable = (privileges: string[], database: string, table?: string) => {
      const missing = notGrantable(held, privileges, database, table, names.folded);
      const where = `${database}.${table ?? '*'}`;
      if (missing.length > 0) add(`grantPermissions: the admin ${this.conn.username} does not hold ${missing.join(', ')} on ${where} WITH GRANT OPTION.`);
    };
    for (const grant of grants) {
      const onTable = grant.schema !== '*' && grant.table !== '*';
      const privileges = expandPrivileges(grant.privileges, onTable ? MYSQL_TABLE_PRIVILEGES : MYSQL_DATABASE_PRIVILEGES);
      if (typeof privileges === 'string') {
        add(`grantPermissions: ${privileges.slice(0, 40)} is not a privilege sy grants on ${onTable ? 'a table' : 'a database'}.`);
      } else if (grant.schema === '*') {
        const reachable = names.databases.filter((db) => !isSystemSchema('mysql', db));
        if (reachable.length === 0) add(`grantPermissions: *.* reaches nothing on ${this.address}: the admin sees no database but the system ones.`);
        for (const db of reachable) grantable(privileges, db);
      } else if (isSystemSchema('mysql', grant.schema)) {
        add(`grantPermissions: ${grant.schema} is a system database, which a lease never reaches.`);
      } else if (!names.knownDatabases.has(names.fold(grant.schema))) {
        add(`grantPermissions: database ${grant.schema} does not exist on ${this.address}.`);
      } else if (!onTable) {
        grantable(privileges, grant.schema);
      } else if (!names.knownTables.has(`${names.fold(grant.schema)}.${names.fold(grant.table)}`)) {
        add(`grantPermissions: table ${grant.schema}.${grant.table} does not exist on ${this.address}.`);
      } else {
        grantable(privileges, grant.schema, grant.table);
      }
    }
    return problems;
  }

  /** Nothing to move on the server; only checks, as on PostgreSQL, that the user still exists. */
  async renewUser(username: string, _expiresAt: Date): Promise<void> {
    const name = checkedName(username);
    const rows = await this.run<Row[]>("SELECT 1 FROM mysql.user WHERE host = '%' AND user = ?", [name], `renew user ${name}`, 'renew_failed');
    if (rows.length === 0) throw failed('user_not_found', `The user ${name} no longer exists on ${LABEL} at ${this.address}.`);
  }

  /**
   * Locks the accounts (no new logins), kills their sessions (which also releases any lock
   * they hold), drops what they defined, drops every host variant, then looks again.
   * Tables and databases a lease created stay: MySQL records no owner for them.
   */
  async revokeUsers(usernames: string[], options: RevokeOptions = {}): Promise<RevokeResult> {
    const names = [...new Set(usernames.map((name) => checkedName(name)))];
    if (names.length === 0) return { dropped: [], absent: [], failed: [] };
    let holdings: Map<string, Holding>;
    try {
      holdings = await this.holdings(names);
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
        await this.run(`ALTER USER IF EXISTS ${accounts.join(', ')} ACCOUNT LOCK`, [], 'lock the accounts').catch(rethrowIfLost);
      }
      // Also for the absent names: a session can outlive its user.
      await this.endSessions(names, failures);
      await this.dropStoredObjects(present.filter((n) => !failures.has(n)), holdings, failures);
      const droppable = present.filter((n) => !failures.has(n));
      if (options.revocationStatements && options.revocationStatements.length > 0) {
        await this.runRevocationStatements(droppable, options.revocationStatements, failures);
      } else {
        await this.dropAccounts(droppable, holdings, failures);
      }
    } catch (error) {
      rethrowIfLost(error);
      for (const name of present) if (!failures.has(name)) failures.set(name, error as SyError);
    }
    if (present.length === 0) return { dropped: [], absent, failed: [] };
    let left: Set<string>;
    try {
      const rows = await this.run<Row[]>('SELECT DISTINCT user AS name FROM mysql.user WHERE user IN (?)', [present], 'check that the users are gone', 'revoke_failed');
      left = new Set(rows.map(userName));
    } catch (error) {
      rethrowIfLost(error);
      return { dropped: [], absent, failed: present.map((username) => ({ username, error: failures.get(username) ?? (error as SyError) })) };
    }
    const stillThere = (name: string) => failures.get(name) ?? failed('revoke_failed', `Could not revoke user ${name} at ${this.address}: it still exists.`);
    return {
      dropped: present.filter((n) => !left.has(n)),
      absent,
      failed: present.filter((n) => left.has(n)).map((username) => ({ username, error: stillThere(username) })),
    };
  }

  /** Hosts of each name (absent names are missing), and where each could have created objects. */
  private async holdings(names: string[]): Promise<Map<string, Holding>> {
    const rows = await this.run<Row[]>(
      `SELECT 'account' AS kind, user AS name, host AS host, NULL AS db, CONCAT(Create_routine_priv, Event_priv, Trigger_priv, Create_view_priv) AS global
         FROM mysql.user WHERE user IN (?)
       UNION ALL SELECT 'database', user, host, db, NULL FROM mysql.db WHERE user IN (?)
          AND (Create_routine_priv = 'Y' OR Event_priv = 'Y' OR Trigger_priv = 'Y' OR Create_view_priv = 'Y')
       UNION ALL SELECT 'table', user, host, db, NULL FROM mysql.tables_priv WHERE user IN (?)
          AND (FIND_IN_SET('Trigger', table_priv) > 0 OR FIND_IN_SET('Create View', table_priv) > 0)`,
      [names, names, names],
      `look up ${names.length === 1 ? `user ${names[0]}` : `${names.length} users`}`,
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
  private async endSessions(names: string[], failures: Map<string, SyError>): Promise<void> {
    const wanted = new Set(names);
    const killed = new Set<number>();
    const deadline = Date.now() + SESSION_END_WAIT_MS;
    for (;;) {
      const rows = await this.run<Row[]>(
        'SELECT id AS id, user AS name FROM information_schema.processlist WHERE user IN (?) AND id <> CONNECTION_ID()',
        [names],
        'look up the sessions to end',
        'revoke_failed',
      );
      const sessions = rows.filter((r) => wanted.has(text(r.name)) && !failures.has(text(r.name)));
      if (sessions.length === 0 || Date.now() > deadline) return;
      const fresh = sessions.filter((s) => !killed.has(Number(s.id)));
      for (const session of fresh) {
        const id = Number(session.id);
        killed.add(id);
        try {
          await this.send(`KILL CONNECTION ${id}`);
        } catch (error) {
          // The session ended on its own between the lookup and the kill.
          if ((error as MysqlError).errno === ER_NO_SUCH_THREAD) continue;
          const failure = this.queryFailure('revoke_failed', `end a session of user ${text(session.name)}`, error);
          rethrowIfLost(failure);
          failures.set(text(session.name), failure);
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
  private async dropStoredObjects(names: string[], holdings: Map<string, Holding>, failures: Map<string, SyError>): Promise<void> {
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
    const rows = await this.run<Row[]>(sql, values, 'look up what the users defined', 'revoke_failed');
    const objects: StoredObject[] = [];
    for (const row of rows) {
      const definer = text(row.definer);
      const owner = definer.slice(0, definer.indexOf('@'));
      if (names.includes(owner)) objects.push({ kind: text(row.kind) as StoredObject['kind'], database: text(row.db), name: text(row.name), owner });
    }
    objects.sort((a, b) => DROP_ORDER.indexOf(a.kind) - DROP_ORDER.indexOf(b.kind));
    for (const object of objects) {
      const what = `${object.kind.toLowerCase()} ${object.database}.${object.name}`;
      try {
        await this.run(`DROP ${object.kind} IF EXISTS ${ident(object.database)}.${ident(object.name)}`, [], `drop the ${what} of user ${object.owner}`, 'revoke_failed');
      } catch (error) {
        rethrowIfLost(error);
        // The user stays (locked) so that the next attempt still finds what it defined.
        if (!failures.has(object.owner)) failures.set(object.owner, error as SyError);
      }
    }
  }

  /** One DROP USER for all; only if that fails, one per user to find whose cannot be dropped. */
  private async dropAccounts(names: string[], holdings: Map<string, Holding>, failures: Map<string, SyError>): Promise<void> {
    const accountsOf = (name: string) => holdings.get(name)!.hosts.map((h) => account(name, h));
    if (names.length === 0) return;
    const who = names.length === 1 ? `user ${names[0]}` : `${names.length} users`;
    try {
      await this.run(`DROP USER IF EXISTS ${names.flatMap(accountsOf).join(', ')}`, [], `revoke ${who}`, 'revoke_failed');
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
        await this.run(`DROP USER IF EXISTS ${accountsOf(name).join(', ')}`, [], `revoke user ${name}`, 'revoke_failed');
      } catch (error) {
        rethrowIfLost(error);
        failures.set(name, error as SyError);
      }
    }
  }

  private async runRevocationStatements(names: string[], templates: string[], failures: Map<string, SyError>): Promise<void> {
    for (const name of names) {
      try {
        for (const template of templates) {
          await this.run(renderTemplate(template, { name, password: '', expiration: '' }, escapePasswordLiteral), [], `revoke user ${name}`, 'revoke_failed');
        }
      } catch (error) {
        rethrowIfLost(error);
        failures.set(name, error as SyError);
      }
    }
  }

  async listManagedUsers(): Promise<ManagedUsers> {
    const rows = await this.run<Row[]>(
      'SELECT NULL AS name, UNIX_TIMESTAMP(NOW(6)) AS now UNION ALL SELECT DISTINCT user, NULL FROM mysql.user WHERE user REGEXP ?',
      [MANAGED_NAME_SQL_PATTERN],
      'list users',
    );
    const users: ManagedUser[] = [];
    for (const username of rows.filter((r) => r.name !== null).map(userName).sort()) {
      const parsed = parseManagedName(username);
      if (parsed) users.push({ username, reapAfter: parsed.reapAfter });
    }
    const now = rows.find((r) => r.name === null)?.now;
    return { serverNow: new Date(Math.round(Number(now) * 1000)), users };
  }

  async close(): Promise<void> {
    this.signal?.removeEventListener('abort', this.onAbort);
    if (this.closed) return;
    // An idle session says goodbye, so the server does not log an aborted connection; a busy
    // one, or a server that does not acknowledge, is cut off at once.
    if (this.inFlight === 0) {
      let timer: NodeJS.Timeout | undefined;
      const cap = new Promise<void>((resolve) => (timer = setTimeout(resolve, QUIT_WAIT_MS)));
      // The cap's timer is cleared once the goodbye is done: a pending timer would keep the
      // process alive for its whole length after every command.
      await Promise.race([this.connection.end().catch(() => undefined), cap]);
      clearTimeout(timer);
    }
    this.abandon();
  }

  /** Ends the connection now: the socket is destroyed and every pending call rejects. */
  private abandon(): void {
    if (this.closed) return;
    this.closed = true;
    this.signal?.removeEventListener('abort', this.onAbort);
    this.rejectPending(Object.assign(new Error('closed by sy'), { code: CLOSED_BY_SY }));
    cutOff(this.core);
  }

  /** One statement, answered or abandoned; the driver's own error is passed on. */
  private async send<T extends Row[] | ResultSetHeader = ResultSetHeader>(sql: string, values: unknown[] = []): Promise<T> {
    this.inFlight++;
    try {
      const [rows] = await Promise.race([this.connection.query<T>(sql, values), this.abandoned]);
      return rows;
    } finally {
      this.inFlight--;
    }
  }

  private async run<T extends Row[] | ResultSetHeader = ResultSetHeader>(
    sql: string,
    values: unknown[],
    action: string,
    code = 'target_error',
    secret?: string,
  ): Promise<T> {
    try {
      return await this.send<T>(sql, values);
    } catch (error) {
      throw this.queryFailure(code, action, error, secret);
    }
  }

  /** Never carries the driver's error as cause: mysql2 errors hold the SQL text, password included. */
  private queryFailure(code: string, action: string, error: unknown, secret?: string): SyError {
    if (error instanceof SyError) return error;
    const err = error as MysqlError;
    if (this.closed || err?.code === CLOSED_BY_SY) {
      return failed('target_unreachable', `Could not ${action} at ${this.address}: the connection was closed before the server answered.`);
    }
    const reason = reasonOf(error, [this.conn.password, secret ?? '']);
    if (err?.errno === undefined || !err.sqlState) {
      return failed('target_unreachable', `Could not ${action} at ${this.address}: the connection to ${LABEL} was lost (${reason}).`);
    }
    let why = reason;
    if (STATEMENT_TIMEOUT_ERRNOS.has(err.errno)) why = `the server did not finish within ${this.limits.statementMs} ms`;
    else if (err.errno === ER_LOCK_WAIT_TIMEOUT) why = `another session held a lock it needs for more than ${this.limits.lockSeconds} s`;
    return failed(code, `Could not ${action} at ${this.address}: ${why}.`);
  }
}

/** A connection-level failure ends the whole call; a statement's own failure belongs to one user. */
function rethrowIfLost(error: unknown): void {
  if (!(error instanceof SyError) || error.code === 'target_unreachable') throw error;
}

/** Destroys the socket at once; the driver is told first so that it raises no error for it. */
function cutOff(core: mysql.Connection): void {
  core.destroy();
  (core as unknown as { stream?: net.Socket }).stream?.destroy();
}

/** MariaDB logs statements as sent, so it gets the hash; MySQL 8 rewrites the password out of its logs itself. */
function identifiedBy(password: string, mariadb: boolean): string {
  return mariadb ? `IDENTIFIED BY PASSWORD ${literal(nativePasswordHash(password))}` : `IDENTIFIED BY ${literal(password)}`;
}

function positive(ms: number | undefined): number | undefined {
  return ms !== undefined && Number.isFinite(ms) && ms > 0 ? ms : undefined;
}

/**
 * `ALL` is the data privileges of the level, merged with any others named; the first
 * privilege that is not one of the level's comes back as a string.
 */
function expandPrivileges(named: string[], level: string[]): string[] | string {
  const out = new Set<string>();
  for (const privilege of named) {
    if (ALL_PRIVILEGES.has(privilege)) level.forEach((p) => out.add(p));
    else if (level.includes(privilege)) out.add(privilege);
    else return privilege;
  }
  return [...out];
}

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

/** mysql.user.User and some information_schema columns are binary on some versions: mysql2 then returns a Buffer. */
function text(value: unknown): string {
  return Buffer.isBuffer(value) ? value.toString('utf8') : String(value);
}

function userName(row: Row): string {
  return text(row.name);
}

function checkedName(username: string): string {
  return checkedUserName(username, ENGINES.mysql.maxUserName, LABEL);
}

/** A '...' literal in MySQL's default SQL mode: backslashes and quotes escaped. */
const escapePasswordLiteral = (password: string): string => password.replace(/\\/g, '\\\\').replace(/'/g, "''");
