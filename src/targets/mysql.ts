/**
 * MySQL and MariaDB target. Loaded only when such a base secret is used (see connectTarget),
 * so `mysql2` is imported here and nowhere else.
 *
 * Choices worth knowing:
 * - Every user is `'<name>'@'%'`.
 * - On MariaDB the password is sent as its mysql_native_password hash, never in plaintext;
 *   MySQL 8 gets the escaped literal (its logs rewrite passwords out of CREATE USER).
 * - There is no transactional DDL: a failed grant drops the user before the error is thrown.
 * - A grant on a missing database or table is refused here, because MySQL accepts one
 *   when CREATE is among the privileges.
 * - renewUser changes nothing (MySQL has no VALID UNTIL; the reap-after bound is in the name)
 *   but, as on PostgreSQL, throws `user_not_found` when the user is gone.
 * - Revoking drops the users first (no new logins), then kills their sessions.
 * - TLS: `ssl.servername` is not supported by mysql2; the host name is verified when the
 *   host is a DNS name and the certificate is checked against `ca` in every case.
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import mysql from 'mysql2/promise';
import { failed, SyError } from '../errors.js';
import type { BaseConnection, GrantPermission } from '../secrets/validate.js';
import { ENGINES } from './engines.js';
import { MANAGED_NAME_SQL_PATTERN, parseManagedName } from './names.js';
import { checkedUserName, networkReason, renderTemplate, safeReason } from './shared.js';
import type { ConnectOptions, ManagedUser, NewUser, Target } from './target.js';

const LABEL = 'MySQL/MariaDB';
/** Names sy generates; anything else is refused before it reaches SQL. */
const ER_NO_SUCH_THREAD = 1094;

interface MysqlError extends Error {
  code?: string;
  errno?: number;
  sqlState?: string;
  sqlMessage?: string;
}

type Row = mysql.RowDataPacket;

const ident = (name: string): string => `\`${name.replace(/`/g, '``')}\``;
const literal = (value: string): string => mysql.escape(value);
const account = (name: string): string => `${literal(name)}@'%'`;

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
  const socket = (connection as unknown as { connection?: { stream?: Partial<tls.TLSSocket> } }).connection?.stream;
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

const SESSION_END_WAIT_MS = 5000;

export class MysqlTarget implements Target {
  readonly address: string;

  private constructor(
    private readonly connection: mysql.Connection,
    private readonly conn: BaseConnection,
  ) {
    this.address = `${conn.host}:${conn.port}`;
  }

  static async connect(conn: BaseConnection, options: ConnectOptions): Promise<MysqlTarget> {
    const ssl = tlsOptions(conn.ssl);
    let connection: mysql.Connection;
    try {
      connection = await mysql.createConnection({
        host: conn.host,
        port: conn.port,
        user: conn.username,
        password: conn.password,
        database: conn.database,
        ssl,
        connectTimeout: options.connectTimeoutMs,
        multipleStatements: false,
      });
    } catch (error) {
      throw connectFailure(conn, error, options.connectTimeoutMs);
    }
    // A dropped connection surfaces on the next query; without a listener it would crash sy.
    connection.on('error', () => undefined);
    if (ssl?.verifyIdentity && !identityMatches(connection, conn.host)) {
      connection.destroy();
      throw failed('target_unreachable', `Could not connect to ${LABEL} at ${conn.host}:${conn.port}: the TLS certificate does not match the host name.`);
    }
    return new MysqlTarget(connection, conn);
  }

  /** Only creating a user needs to know the server; revoking and listing do not ask. */
  private async isMariadb(): Promise<boolean> {
    const [rows] = await this.run<Row[]>('SELECT VERSION() AS version', [], 'read the server version');
    return /mariadb/i.test(String(rows[0]?.version ?? ''));
  }

  async createUser(user: NewUser): Promise<void> {
    const name = checkedName(user.username);
    try {
      if (user.creationStatements && user.creationStatements.length > 0) {
        for (const template of user.creationStatements) {
          const statement = renderTemplate(template, { name, password: user.password, expiration: user.expiresAt.toISOString() }, escapePasswordLiteral);
          await this.run(statement, [], `create user ${name}`, 'create_user_failed', user.password);
        }
      } else {
        const credential = (await this.isMariadb())
          ? `IDENTIFIED BY PASSWORD ${literal(nativePasswordHash(user.password))}`
          : `IDENTIFIED BY ${literal(user.password)}`;
        await this.run(`CREATE USER ${account(name)} ${credential}`, [], `create user ${name}`, 'create_user_failed', user.password);
        for (const grant of user.grants) await this.grant(name, grant);
      }
    } catch (error) {
      await this.connection.query(`DROP USER IF EXISTS ${account(name)}`).catch(() => undefined);
      throw error;
    }
  }

  /** Nothing to move on the server; only checks, as on PostgreSQL, that the user still exists. */
  async renewUser(username: string, _expiresAt: Date): Promise<void> {
    const name = checkedName(username);
    const [rows] = await this.run<Row[]>("SELECT 1 FROM mysql.user WHERE host = '%' AND user = ?", [name], `renew user ${name}`, 'renew_failed');
    if (rows.length === 0) throw failed('user_not_found', `The user ${name} no longer exists on ${LABEL} at ${this.address}.`);
  }

  async revokeUsers(usernames: string[], revocationStatements?: string[]): Promise<void> {
    const names = [...new Set(usernames.map((name) => checkedName(name)))];
    if (names.length === 0) return;
    const who = names.length === 1 ? `user ${names[0]}` : `${names.length} users`;
    if (revocationStatements && revocationStatements.length > 0) {
      const [rows] = await this.run<Row[]>("SELECT user AS name FROM mysql.user WHERE host = '%' AND user IN (?)", [names], `revoke ${who}`);
      for (const name of rows.map(userName)) {
        for (const template of revocationStatements) {
          await this.run(renderTemplate(template, { name, password: '', expiration: '' }, escapePasswordLiteral), [], `revoke user ${name}`, 'revoke_failed');
        }
      }
    } else {
      // Dropping first closes the door to new logins; the sessions still open are killed next.
      await this.run(`DROP USER IF EXISTS ${names.map(account).join(', ')}`, [], `revoke ${who}`, 'revoke_failed');
    }
    const [sessions] = await this.run<Row[]>(
      'SELECT id FROM information_schema.processlist WHERE user IN (?) AND id <> CONNECTION_ID()',
      [names],
      `revoke ${who}`,
      'revoke_failed',
    );
    for (const { id } of sessions) {
      try {
        await this.connection.query(`KILL CONNECTION ${Number(id)}`);
      } catch (error) {
        // The session ended on its own between the lookup and the kill.
        if ((error as MysqlError).errno === ER_NO_SUCH_THREAD) continue;
        throw this.queryFailure('revoke_failed', `end the sessions of ${who}`, error);
      }
    }
    if (sessions.length > 0) await this.waitForSessionsToEnd(sessions.map((s) => Number(s.id)));
  }

  /**
   * KILL only marks a session; it ends when its thread next wakes. Wait (briefly) until they
   * are gone, as PostgreSQL's pg_terminate_backend(pid, timeout) does, so a revoke that
   * returns has really ended them.
   */
  private async waitForSessionsToEnd(ids: number[]): Promise<void> {
    const deadline = Date.now() + SESSION_END_WAIT_MS;
    while (Date.now() < deadline) {
      const [left] = await this.run<Row[]>('SELECT id FROM information_schema.processlist WHERE id IN (?)', [ids], 'check the ended sessions');
      if (left.length === 0) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async listManagedUsers(): Promise<ManagedUser[]> {
    const [rows] = await this.run<Row[]>(
      "SELECT DISTINCT user AS name FROM mysql.user WHERE host = '%' AND user REGEXP ? ORDER BY name",
      [MANAGED_NAME_SQL_PATTERN],
      'list users',
    );
    const users: ManagedUser[] = [];
    for (const username of rows.map(userName)) {
      const parsed = parseManagedName(username);
      if (parsed) users.push({ username, reapAfter: parsed.reapAfter });
    }
    return users;
  }

  async close(): Promise<void> {
    await this.connection.end().catch(() => this.connection.destroy());
  }

  private async grant(name: string, grant: GrantPermission): Promise<void> {
    const privileges = grant.privileges.map((p) => {
      if (!/^[A-Z]+( [A-Z]+)*$/.test(p)) throw failed('grant_failed', `The privilege ${p.slice(0, 40)} cannot be granted on ${LABEL}.`);
      return p;
    });
    const what = privileges.join(', ');
    const where = `${grant.schema}.${grant.table}`;
    const description = `grant ${what} on ${where}`;
    let on: string;
    if (grant.schema === '*') {
      if (grant.table !== '*') throw failed('grant_failed', `Could not ${description} at ${this.address}: a table needs a database.`);
      on = '*.*';
    } else if (grant.table === '*') {
      const [rows] = await this.run<Row[]>('SELECT 1 FROM information_schema.schemata WHERE schema_name = ?', [grant.schema], description);
      if (rows.length === 0) {
        throw failed('grant_failed', `Could not ${description} at ${this.address}: database "${grant.schema}" does not exist.`);
      }
      on = `${ident(grant.schema)}.*`;
    } else {
      const [rows] = await this.run<Row[]>(
        'SELECT 1 FROM information_schema.tables WHERE table_schema = ? AND table_name = ?',
        [grant.schema, grant.table],
        description,
      );
      if (rows.length === 0) {
        throw failed('grant_failed', `Could not ${description} at ${this.address}: table "${where}" does not exist.`);
      }
      on = `${ident(grant.schema)}.${ident(grant.table)}`;
    }
    await this.run(`GRANT ${what} ON ${on} TO ${account(name)}`, [], description, 'grant_failed');
  }

  private async run<T extends Row[] | mysql.ResultSetHeader = mysql.ResultSetHeader>(
    sql: string,
    values: unknown[],
    action: string,
    code = 'target_error',
    secret?: string,
  ): Promise<[T, mysql.FieldPacket[]]> {
    try {
      return await this.connection.query<T>(sql, values);
    } catch (error) {
      throw this.queryFailure(code, action, error, secret);
    }
  }

  /** Never carries the driver's error as cause: mysql2 errors hold the SQL text, password included. */
  private queryFailure(code: string, action: string, error: unknown, secret?: string): SyError {
    if (error instanceof SyError) return error;
    const err = error as MysqlError;
    const reason = reasonOf(error, [this.conn.password, secret ?? '']);
    if (err?.errno === undefined || !err.sqlState) {
      return failed('target_unreachable', `Could not ${action} at ${this.address}: the connection to ${LABEL} was lost (${reason}).`);
    }
    return failed(code, `Could not ${action} at ${this.address}: ${reason}.`);
  }
}

/** mysql.user.User is binary on some versions: mysql2 then returns a Buffer. */
function userName(row: Row): string {
  return Buffer.isBuffer(row.name) ? row.name.toString('utf8') : String(row.name);
}

function checkedName(username: string): string {
  return checkedUserName(username, ENGINES.mysql.maxUserName, LABEL);
}

/** A '...' literal in MySQL's default SQL mode: backslashes and quotes escaped. */
const escapePasswordLiteral = (password: string): string => password.replace(/\\/g, '\\\\').replace(/'/g, "''");
