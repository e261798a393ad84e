/**
 * The admin's session on a MySQL/MariaDB server: connecting (the password only to a verified
 * server, see auth.ts), bounding every wait, one statement at a time, and every
 * failure told in sy's words. A session can be abandoned at any moment (close, or the
 * caller's signal): every pending call then rejects at once.
 */
import net from 'node:net';
import mysql from 'mysql2';
import type { Connection as PromiseConnection, ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import { SyError } from '../../errors.js';
import { ENGINES } from '../../model/engines.js';
import type { BaseConnection } from '../../model/secret.js';
import {
  checkedUserName,
  connectFailed,
  type DriverError,
  driverReason,
  isConnectionLost,
  lockHeld,
  networkReason,
  type StatementFailures,
  statementFailure,
  tlsMaterial,
} from '../shared.js';
import { type ConnectOptions, DEFAULT_LOCK_TIMEOUT_MS, DEFAULT_STATEMENT_TIMEOUT_MS } from '../target.js';
import { authPlugins, checkAddressBeforeLogin, PasswordRefused } from './auth.js';

export const LABEL = ENGINES.mysql.label;
const ER_LOCK_WAIT_TIMEOUT = 1205;
/** MariaDB's max_statement_time and MySQL's max_execution_time. */
const STATEMENT_TIMEOUT_ERRNOS = new Set([1969, 3024]);
/** How long an idle connection waits for the server to acknowledge QUIT before it is cut. */
const QUIT_WAIT_MS = 200;
const CLOSED_BY_SY = 'SY_CLOSED';

export type Row = RowDataPacket;

export const ident = (name: string): string => `\`${name.replace(/`/g, '``')}\``;
export const literal = (value: string): string => mysql.escape(value);
export const account = (name: string, host = '%'): string => `${literal(name)}@${literal(host)}`;

export function checkedName(username: string): string {
  return checkedUserName(username, 'mysql');
}

/** mysql.user.User and some information_schema columns are binary on some versions: mysql2 then returns a Buffer. */
export function text(value: unknown): string {
  return Buffer.isBuffer(value) ? value.toString('utf8') : String(value);
}

export function userName(row: Row): string {
  return text(row.name);
}

/** A connection-level failure ends the whole call; a statement's own failure belongs to one user. */
export function rethrowIfLost(error: unknown): void {
  if (!(error instanceof SyError) || isConnectionLost(error)) throw error;
}

/**
 * mysql2 checks the certificate against a host name itself; an IP address it would check as
 * "localhost" (Node's fallback), so for an address sy checks it instead (checkAddressBeforeLogin).
 */
function tlsOptions(ssl: BaseConnection['ssl'], host: string): mysql.SslOptions | undefined {
  if (!ssl) return undefined;
  const verify = ssl === true || (ssl.rejectUnauthorized ?? true);
  return { rejectUnauthorized: verify, verifyIdentity: verify && net.isIP(host) === 0, ...(ssl === true ? {} : tlsMaterial(ssl)) };
}

function connectFailure(conn: BaseConnection, error: unknown, timeoutMs: number): SyError {
  const err = error as DriverError;
  const code = err?.code ?? '';
  let kind: 'target_unreachable' | 'target_refused' = 'target_unreachable';
  const network = networkReason(code);
  let reason: string;
  if (error instanceof PasswordRefused) {
    kind = 'target_refused';
    reason = "the server asked for the admin's password itself, which sy sends only over TLS that verified the server or encrypted with data.serverPublicKey";
  } else if (code === 'ETIMEDOUT') {
    reason = `no answer within ${timeoutMs} ms`;
  } else if (network !== undefined) {
    reason = network;
  } else if (code === 'PROTOCOL_CONNECTION_LOST') {
    reason = 'the server closed the connection';
  } else if (code === 'HANDSHAKE_SSL_ERROR') {
    // mysql2 replaces Node's TLS error code with its own; Node's message says what was wrong.
    const message = driverReason(error, [conn.password]);
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
    reason = driverReason(error, [conn.password]);
  }
  return connectFailed(LABEL, conn, kind, reason);
}

const cancelled = (conn: BaseConnection): SyError => connectFailed(LABEL, conn, 'target_unreachable', 'the attempt was cancelled');

/**
 * Connects as the admin, the certificate's address checked before the login; the session's
 * waits are bounded by MysqlSession.ready, its first statement.
 */
export async function connectCore(conn: BaseConnection, options: ConnectOptions): Promise<mysql.Connection> {
  const { signal } = options;
  if (signal?.aborted) throw cancelled(conn);
  const ssl = tlsOptions(conn.ssl, conn.host);
  const core = mysql.createConnection({
    host: conn.host,
    port: conn.port,
    user: conn.username,
    password: conn.password,
    database: conn.database,
    ssl,
    connectTimeout: options.connectTimeoutMs,
    multipleStatements: false,
    authPlugins: authPlugins(conn.password, ssl?.rejectUnauthorized === true, conn.serverPublicKey),
  });
  if (ssl?.rejectUnauthorized) checkAddressBeforeLogin(core, conn.host);
  // A dropped connection surfaces on the next query; without a listener it would crash sy.
  core.on('error', () => undefined);
  try {
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => reject(cancelled(conn));
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
  return core;
}

/** Destroys the socket at once; the driver is told first so that it raises no error for it. */
function cutOff(core: mysql.Connection): void {
  core.destroy();
  (core as unknown as { stream?: net.Socket }).stream?.destroy();
}

function positive(ms: number | undefined): number | undefined {
  return ms !== undefined && Number.isFinite(ms) && ms > 0 ? ms : undefined;
}

export class MysqlSession implements StatementFailures {
  readonly address: string;
  readonly label = LABEL;
  /** Rejects once the connection is abandoned, so that no call waits for an answer that cannot come. */
  private readonly abandoned: Promise<never>;
  private rejectPending!: (error: Error) => void;
  private closed = false;
  private inFlight = 0;
  private readonly onAbort = (): void => this.abandon();
  /** The driver's promise interface (what the tests spy on). */
  private readonly connection: PromiseConnection;
  private readonly limits: { lockSeconds: number; statementMs: number };
  private readonly signal: AbortSignal | undefined;

  constructor(
    private readonly core: mysql.Connection,
    readonly conn: BaseConnection,
    options: ConnectOptions,
  ) {
    this.address = `${conn.host}:${conn.port}`;
    const lockMs = positive(options.lockTimeoutMs) ?? DEFAULT_LOCK_TIMEOUT_MS;
    const statementMs = positive(options.statementTimeoutMs) ?? DEFAULT_STATEMENT_TIMEOUT_MS;
    this.limits = { lockSeconds: Math.max(1, Math.ceil(lockMs / 1000)), statementMs };
    this.signal = options.signal;
    this.connection = core.promise();
    this.abandoned = new Promise<never>((_resolve, reject) => {
      this.rejectPending = reject;
    });
    this.abandoned.catch(() => undefined);
    this.signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  /** Bounds the session's waits before anything else is sent; abandons the session when that fails. */
  async ready(): Promise<this> {
    try {
      if (this.signal?.aborted) throw cancelled(this.conn);
      await this.limitWaits();
    } catch (error) {
      this.abandon();
      throw error;
    }
    return this;
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
  async isMariadb(): Promise<boolean> {
    const rows = await this.run<Row[]>('SELECT VERSION() AS version', [], 'read the server version');
    return /mariadb/i.test(String(rows[0]?.version ?? ''));
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
  async send<T extends Row[] | ResultSetHeader = ResultSetHeader>(sql: string, values: unknown[] = []): Promise<T> {
    this.inFlight++;
    try {
      const [rows] = await Promise.race([this.connection.query<T>(sql, values), this.abandoned]);
      return rows;
    } finally {
      this.inFlight--;
    }
  }

  async run<T extends Row[] | ResultSetHeader = ResultSetHeader>(
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
  queryFailure(code: string, action: string, error: unknown, secret?: string): SyError {
    return statementFailure(this, code, action, error, secret);
  }

  fromServer(error: DriverError): boolean {
    return error?.errno !== undefined && Boolean(error.sqlState);
  }

  explain(error: DriverError, fromServer: boolean): { code?: string; why: string } | undefined {
    if (this.closed || error?.code === CLOSED_BY_SY) return { code: 'target_unreachable', why: 'the connection was closed before the server answered' };
    if (!fromServer) return undefined;
    if (STATEMENT_TIMEOUT_ERRNOS.has(error.errno!)) return { why: `the server did not finish within ${this.limits.statementMs} ms` };
    if (error.errno === ER_LOCK_WAIT_TIMEOUT) return { why: lockHeld(this.limits.lockSeconds) };
    return undefined;
  }
}
