/**
 * The admin's session on one PostgreSQL database: connecting with sy's timeouts, statements
 * one or several to a round trip, transactions tried again when another session changed the
 * same catalog row, and every failure told in sy's words.
 */
import tls from 'node:tls';
import pg from 'pg';
import { SyError } from '../../errors.js';
import { ENGINES } from '../../model/engines.js';
import type { BaseConnection } from '../../model/secret.js';
import { refuseCleartextUnverified } from '../../util/pg-password.js';
import {
  checkedUserName,
  connectFailed,
  type DriverError,
  driverReason,
  lockHeld,
  networkReason,
  type StatementFailures,
  statementFailure,
  tlsMaterial,
} from '../shared.js';
import { type ConnectOptions, DEFAULT_LOCK_TIMEOUT_MS, DEFAULT_STATEMENT_TIMEOUT_MS } from '../target.js';

export const DEFAULT_DATABASE = 'postgres';
const LABEL = ENGINES.postgresql.label;
/** See connectClient: the admin's search_path, sent in the startup packet. */
export const ADMIN_SEARCH_PATH = '-c search_path=pg_catalog,pg_temp';
/** Errors that mean "another session changed the same catalog row": try the transaction again. */
const RETRYABLE = new Set(['40001', '40P01']);
const MAX_TRIES = 12;

export const ident = (name: string): string => pg.escapeIdentifier(name);
export const literal = (value: string): string => pg.escapeLiteral(value);

/** A '...' literal with standard_conforming_strings on (the default since 9.1): quotes doubled. */
export const escapePasswordLiteral = (password: string): string => password.replace(/'/g, "''");

export function checkedName(username: string): string {
  return checkedUserName(username, 'postgresql');
}

/** Server errors carry a SQLSTATE; anything else means the connection itself failed. */
const isServerError = (err: DriverError | undefined): boolean => /^[0-9A-Z]{5}$/.test(err?.code ?? '');

/** The driver error behind a SyError, kept out of the error itself (no cause to print with --debug). */
const driverErrors = new WeakMap<SyError, unknown>();

function tlsOptions(ssl: BaseConnection['ssl']): false | tls.ConnectionOptions {
  if (!ssl) return false;
  if (ssl === true) return { rejectUnauthorized: true };
  const options: tls.ConnectionOptions = { rejectUnauthorized: ssl.rejectUnauthorized ?? true, ...tlsMaterial(ssl) };
  const servername = ssl.servername;
  if (servername !== undefined) {
    options.servername = servername;
    // pg replaces servername with the host when the host is a DNS name; verify against ours.
    options.checkServerIdentity = (_host, cert) => tls.checkServerIdentity(servername, cert);
  }
  return options;
}

function connectFailure(conn: BaseConnection, error: unknown, timeoutMs: number, elapsedMs: number): SyError {
  if (error instanceof SyError) return error;
  const err = error as DriverError;
  const code = err?.code ?? '';
  const message = String(err?.message ?? '');
  let kind: 'target_unreachable' | 'target_refused' = 'target_unreachable';
  const network = networkReason(code);
  let reason: string;
  if (/timeout expired|connection timeout/i.test(message) || (elapsedMs >= timeoutMs && /terminated/i.test(message))) {
    reason = `no answer within ${timeoutMs} ms`;
  } else if (network !== undefined) {
    reason = network;
  } else if (code === 'ETIMEDOUT') {
    reason = 'connection timed out';
  } else if (/terminated unexpectedly/i.test(message)) {
    reason = 'the server closed the connection';
  } else if (/does not support SSL/i.test(message)) {
    reason = 'the server does not accept TLS connections';
  } else if (code === '28P01') {
    kind = 'target_refused';
    reason = `password authentication failed for user "${conn.username}"`;
  } else if (code === '28000') {
    kind = 'target_refused';
    reason = `the server refused the login of "${conn.username}" (check pg_hba.conf and TLS settings)`;
  } else if (code === '3D000') {
    kind = 'target_refused';
    reason = `database "${conn.database ?? DEFAULT_DATABASE}" does not exist`;
  } else if (code === '53300') {
    kind = 'target_refused';
    reason = 'too many connections';
  } else if (code.startsWith('57P')) {
    kind = 'target_refused';
    reason = 'the server is starting up or shutting down';
  } else {
    if (isServerError(err)) kind = 'target_refused';
    reason = driverReason(error, [conn.password]);
  }
  return connectFailed(LABEL, conn, kind, reason, error);
}

/** Connects as the admin to `database`; aborting `options.signal` ends the connection at once. */
export async function connectClient(conn: BaseConnection, options: ConnectOptions, database: string): Promise<pg.Client> {
  const lockTimeout = options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
  const statementTimeout = options.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS;
  const client = new pg.Client({
    host: conn.host,
    port: conn.port,
    user: conn.username,
    password: conn.password,
    database,
    ssl: tlsOptions(conn.ssl),
    connectionTimeoutMillis: options.connectTimeoutMs,
    application_name: 'sy',
    // Every name sy's statements use resolves in the system catalog only: nothing a lease
    // created (in public or any other schema) can match better, and pg_temp, listed last,
    // is never searched first. A startup option: no role or database setting overrides it.
    options: ADMIN_SEARCH_PATH,
    // Sent in the startup packet: no extra round trip. The client-side timeout covers a
    // server that stops answering altogether.
    lock_timeout: lockTimeout,
    statement_timeout: statementTimeout,
    query_timeout: statementTimeout + 2_000,
  });
  refuseCleartextUnverified(client, () =>
    connectFailed(LABEL, conn, 'target_refused', "the server asked for the admin's password in clear, which sy sends only over TLS that verified the server"));
  // A dropped connection surfaces on the next query; without a listener it would crash sy.
  client.on('error', () => undefined);
  const abort = () => destroy(client);
  if (options.signal?.aborted) abort();
  options.signal?.addEventListener('abort', abort, { once: true });
  const started = Date.now();
  try {
    await client.connect();
  } catch (error) {
    options.signal?.removeEventListener('abort', abort);
    await client.end().catch(() => undefined);
    throw connectFailure(conn, error, options.connectTimeoutMs, Date.now() - started);
  }
  return client;
}

/** Ends the socket now: close() must not wait for a statement stuck behind a lock. */
function destroy(client: pg.Client): void {
  const stream = (client as unknown as { connection?: { stream?: { destroy?: () => void } } }).connection?.stream;
  client.end().catch(() => undefined);
  stream?.destroy?.();
}

function isConcurrentUpdate(error: unknown): boolean {
  const err = error as DriverError;
  return RETRYABLE.has(err?.code ?? '') || (err?.code === 'XX000' && /tuple concurrently (updated|deleted)/i.test(String(err.message)));
}

export class PgSession implements StatementFailures {
  readonly address: string;
  readonly label = LABEL;

  constructor(
    readonly client: pg.Client,
    readonly conn: BaseConnection,
    readonly database: string,
    readonly options: ConnectOptions,
  ) {
    this.address = `${conn.host}:${conn.port}`;
  }

  /** A session of the same admin, with the same limits, on `database`. */
  static async open(conn: BaseConnection, options: ConnectOptions, database: string): Promise<PgSession> {
    return new PgSession(await connectClient(conn, options, database), conn, database, options);
  }

  /**
   * Runs `body` in a transaction, again from the start when another session changed the same
   * catalog row (concurrent GRANTs on one table or database), with a short random pause.
   */
  async transaction(action: string, code: string, secret: string | undefined, body: () => Promise<void>): Promise<void> {
    await this.retrying(action, code, secret, async () => {
      await this.client.query('BEGIN');
      await body();
      await this.client.query('COMMIT');
    });
  }

  /** Runs `attempt`, which opens and commits its own transaction, rolling back and retrying as above. */
  async retrying(action: string, code: string, secret: string | undefined, body: () => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await body();
        return;
      } catch (error) {
        await this.client.query('ROLLBACK').catch(() => undefined);
        if (attempt < MAX_TRIES && PgSession.concurrentUpdate(error)) {
          await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20 * attempt));
          continue;
        }
        throw this.queryFailure(code, action, error, secret);
      }
    }
  }

  /** Did `error` (a driver error, or sy's error for one) come of another session changing the same catalog row? */
  static concurrentUpdate(error: unknown): boolean {
    return isConcurrentUpdate(error instanceof SyError ? driverErrors.get(error) : error);
  }

  /** Several statements in one round trip; pg returns one result per statement. */
  async multi(text: string, action: string, code = 'revoke_failed', secret?: string): Promise<pg.QueryResult[]> {
    try {
      const result = (await this.client.query(text)) as unknown as pg.QueryResult | pg.QueryResult[];
      return Array.isArray(result) ? result : [result];
    } catch (error) {
      throw this.queryFailure(code, action, error, secret);
    }
  }

  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    values: unknown[],
    action: string,
    code = 'target_error',
    secret?: string,
  ): Promise<pg.QueryResult<R>> {
    try {
      return await this.client.query<R>(text, values);
    } catch (error) {
      throw this.queryFailure(code, action, error, secret);
    }
  }

  queryFailure(code: string, action: string, error: unknown, secret?: string): SyError {
    const failure = statementFailure(this, code, action, error, secret);
    // Kept for retrying, which looks behind the SyError for a concurrent update.
    if (failure !== error && isServerError(error as DriverError)) driverErrors.set(failure, error);
    return failure;
  }

  fromServer(error: DriverError): boolean {
    return isServerError(error);
  }

  explain(error: DriverError, fromServer: boolean): { code: string; why: string } | undefined {
    if (!fromServer) {
      return /query read timeout/i.test(String(error?.message)) ? { code: 'target_unreachable', why: `${LABEL} did not answer in time` } : undefined;
    }
    if (error.code === '55P03') {
      return { code: 'target_locked', why: lockHeld((this.options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS) / 1000) };
    }
    if (error.code === '57014') {
      const seconds = (this.options.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS) / 1000;
      return { code: 'target_timeout', why: `a statement ran longer than ${seconds} s` };
    }
    return undefined;
  }

  async close(): Promise<void> {
    destroy(this.client);
  }
}
