/**
 * The one connection a process keeps to a PostgreSQL store. It is opened on first use and
 * closed again once idle (IDLE_RELEASE_MS), so a command that waits on a slow target, or a
 * daemon between passes, holds no server slot: forty commands at once cost at most forty
 * connections, and usually far fewer. Uses are queued, never nested: one client is enough
 * for a CLI and keeps the server's view of a process simple.
 *
 * Every store session has a lock timeout (a row held by someone else fails the call within
 * seconds, as SQLite's busy timeout does) and an idle-in-transaction timeout (a process
 * stopped mid-transaction cannot hold the ledger for ever).
 */
import pg from 'pg';
import { SyError, failed, storeError } from '../../errors.js';
import { refuseCleartextUnverified } from '../../util/pg-password.js';
import { plaintextWarning, type StoreUrl, type TlsChoice, tlsChoice } from './url.js';

export const IDLE_RELEASE_MS = 1000;
const LOCK_TIMEOUT_MS = 15_000;
const STATEMENT_TIMEOUT_MS = 120_000;
const IDLE_IN_TRANSACTION_MS = 60_000;
/** Serialization failures and deadlocks: the transaction is simply run again. */
const RETRYABLE = new Set(['40001', '40P01']);
const MAX_TRIES = 6;

export type Row = Record<string, any>;
/** A query on the connection in use, its errors in sy's words. */
export type Sql = <R extends Row = Row>(text: string, params?: unknown[]) => Promise<R[]>;

/** bigint columns hold milliseconds (below 2^53): numbers, as SQLite returns them, so row MACs agree. */
const INT8 = 20;
const types = {
  getTypeParser: (oid: number, format?: 'text' | 'binary') =>
    oid === INT8 && format !== 'binary' ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format as 'text'),
};

/** Warnings already given by this process: each once, however often it connects. */
const warned = new Set<string>();

/** Statement names by text: each is parsed once per connection, however often it runs. */
const statementNames = new Map<string, string>();
const statementName = (text: string): string => {
  let name = statementNames.get(text);
  if (!name) {
    name = `sy_${statementNames.size + 1}`;
    statementNames.set(text, name);
  }
  return name;
};

export class StoreConnection {
  private client?: pg.Client;
  private broken = false;
  private tls?: TlsChoice;
  private queue: Promise<unknown> = Promise.resolve();
  private idleTimer?: NodeJS.Timeout;
  private closed = false;

  private readonly idleMs: number;
  private readonly warn?: (text: string) => void;

  constructor(
    readonly url: StoreUrl,
    options: { warn?: (text: string) => void; idleMs?: number } = {},
  ) {
    this.idleMs = options.idleMs ?? IDLE_RELEASE_MS;
    this.warn = options.warn;
  }

  /** Runs `fn` with the connection (autocommit: each statement on its own). */
  use<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    const run = this.queue.then(() => this.withClient(fn));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Runs `fn` in a transaction, again from the start after a serialization failure or a
   * deadlock. `write`: READ COMMITTED, each statement sees the newest commits and rows are
   * locked where the code says so. `snapshot`: one REPEATABLE READ, read-only view, so that
   * a census and the rows it counts are of the same instant.
   */
  tx<T>(fn: (sql: Sql) => Promise<T>, mode: 'write' | 'snapshot' = 'write'): Promise<T> {
    return this.use(async (sql) => {
      for (let attempt = 1; ; attempt++) {
        await sql(mode === 'write' ? 'BEGIN' : 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        try {
          const result = await fn(sql);
          await sql('COMMIT');
          return result;
        } catch (error) {
          if (!this.broken) await sql('ROLLBACK').catch(() => undefined);
          const code = (error as { driverCode?: string }).driverCode;
          if (code === undefined || !RETRYABLE.has(code) || attempt >= MAX_TRIES || this.broken) throw error;
          await new Promise((resolve) => setTimeout(resolve, 5 * attempt + Math.random() * 20));
        }
      }
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.queue;
    await this.release();
  }

  private async withClient<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    if (this.closed) throw new Error('the store was closed');
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    if (!this.client || this.broken) {
      void this.release();
      this.client = await this.connect();
      this.broken = false;
    }
    const client = this.client;
    const sql: Sql = async <R extends Row>(text: string, params: unknown[] = []) => {
      try {
        const result = await client.query<R>({ name: statementName(text), text, values: params });
        return result.rows;
      } catch (error) {
        throw this.queryFailure(error);
      }
    };
    try {
      return await fn(sql);
    } finally {
      if (this.broken) void this.release();
      else {
        this.idleTimer = setTimeout(() => void this.release(), this.idleMs);
        this.idleTimer.unref();
      }
    }
  }

  /** Ends the connection (politely: the server logs no broken session); resolves when it is closed. */
  private release(): Promise<void> {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    const client = this.client;
    this.client = undefined;
    return client ? client.end().catch(() => undefined) : Promise.resolve();
  }

  /**
   * A connection of the caller's own, outside the queue, with the same settings and errors:
   * for LISTEN, which needs a session that stays open (the watch of pools.ts).
   */
  dedicated(): Promise<pg.Client> {
    return this.connect();
  }

  private async connect(): Promise<pg.Client> {
    const warning = plaintextWarning(this.url);
    if (warning !== undefined && this.warn && !warned.has(warning)) {
      warned.add(warning);
      this.warn(warning);
    }
    this.tls ??= await tlsChoice(this.url);
    try {
      return await this.connectWith(this.tls.options);
    } catch (error) {
      // sslmode=prefer: a server without TLS is spoken to in the clear, as libpq does.
      if (!this.tls.fallbackToPlain || !/does not support SSL/i.test(String((error as Error)?.message))) throw this.connectFailure(error);
      this.tls = { fallbackToPlain: false };
      try {
        return await this.connectWith(undefined);
      } catch (plainError) {
        throw this.connectFailure(plainError);
      }
    }
  }

  private async connectWith(ssl: TlsChoice['options']): Promise<pg.Client> {
    const { url } = this;
    const client = new pg.Client({
      host: url.host,
      port: url.port,
      user: url.user,
      database: url.database,
      // A function, so that a missing password is sy's sentence and PGPASSWORD is never read.
      password: () => {
        if (url.password === undefined) throw storeError('store_no_password', `The store at ${url.address} asks for a password, and SY_STORE has none.`, 'Put it in the URL: postgresql://user:password@host/db.');
        return url.password;
      },
      ssl: ssl ?? false,
      connectionTimeoutMillis: url.connectTimeoutMs,
      application_name: url.applicationName,
      // Set here so that PGOPTIONS and PGCLIENTENCODING cannot change what a session of the store does.
      options: '-c search_path=pg_catalog',
      client_encoding: 'UTF8',
      lock_timeout: LOCK_TIMEOUT_MS,
      statement_timeout: STATEMENT_TIMEOUT_MS,
      idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_MS,
      keepAlive: true,
      types,
    } as pg.ClientConfig);
    refuseCleartextUnverified(client, () => storeError('store_cleartext_refused',
      `The store at ${url.address} asked for the password in clear, which sy sends only over TLS that verified the server (sslmode=verify-ca or verify-full).`), { unixSocket: url.host.startsWith('/') });
    // A connection the server ends between uses (a restart) is only marked: the next use reconnects.
    client.on('error', () => {
      if (this.client === client) this.broken = true;
    });
    try {
      await client.connect();
    } catch (error) {
      client.end().catch(() => undefined);
      throw error;
    }
    return client;
  }

  /** Why the store cannot be reached (exit 1: try again) or opened as configured (exit 4). */
  private connectFailure(error: unknown): SyError {
    if (error instanceof SyError) return error;
    const { address, user, database } = this.url;
    const err = error as { code?: string; message?: string };
    const code = err?.code ?? '';
    const message = String(err?.message ?? error);
    const unreachable = (reason: string) => failed('store_unreachable', `Could not reach the store at ${address}: ${reason}.`, undefined, error);
    if (/timeout expired|connection timeout/i.test(message)) return unreachable(`no answer within ${this.url.connectTimeoutMs / 1000} s`);
    const network = NETWORK[code];
    if (network) return unreachable(network);
    if (/terminated unexpectedly|Connection terminated/i.test(message)) return unreachable('the server closed the connection');
    if (code === '53300') return unreachable('the server has no free connection slots');
    if (code.startsWith('57P')) return unreachable('the server is starting up or shutting down');
    if (/does not support SSL/i.test(message)) {
      return storeError('store_tls', `The store at ${address} does not accept TLS connections, and sslmode=${this.url.sslmode} requires TLS.`, 'Use sslmode=prefer or disable only on a network you trust.', error);
    }
    const tlsReason = TLS[code];
    if (tlsReason || code.startsWith('ERR_TLS') || /certificate/i.test(message)) {
      return storeError('store_tls', `The store at ${address} could not be trusted: ${tlsReason ?? 'its certificate was refused'}.`,
        'Check sslrootcert and the host name in SY_STORE; nothing was changed.', error);
    }
    if (code === '28P01') return storeError('store_refused', `The store at ${address} refused the password of "${user}".`, 'Check the user and password in SY_STORE.', error);
    if (code === '28000') return storeError('store_refused', `The store at ${address} refused the login of "${user}".`, 'Check pg_hba.conf, the user in SY_STORE and its sslmode.', error);
    if (code === '3D000') return storeError('no_store', `There is no database "${database}" at ${address} for the store.`, 'Create it (createdb), then run `sy init`.', error);
    return storeError('store_unavailable', `Could not open the store at ${address}: ${code ? `error ${code}` : 'the connection failed'}.`, undefined, error);
  }

  /** A failed statement: the connection may be gone, or the store refused the work. */
  private queryFailure(error: unknown): unknown {
    if (error instanceof SyError) return error;
    const err = error as { code?: string; message?: string };
    const code = err?.code ?? '';
    const { address } = this.url;
    const lost = NETWORK[code] !== undefined || /Connection terminated|not queryable|terminated unexpectedly/i.test(String(err?.message)) || code.startsWith('57P') || code.startsWith('08');
    if (lost) {
      this.broken = true;
      return failed('store_unreachable', `Lost the connection to the store at ${address}; what was being done there was not completed.`, 'Try again.', error);
    }
    const wrapped = (e: SyError): SyError => Object.assign(e, { driverCode: code });
    if (RETRYABLE.has(code)) return Object.assign(error as object, { driverCode: code });
    if (code === '55P03') return wrapped(storeError('store_locked', 'The store is locked by another sy process and stayed locked for 15 seconds.', 'Try again in a moment.', error));
    if (code === '57014') return wrapped(failed('store_timeout', `The store at ${address} did not finish a statement within ${STATEMENT_TIMEOUT_MS / 1000} s.`, 'Try again.', error));
    if (code === '42501') return wrapped(storeError('store_forbidden', `The store's database user may not do what sy needs at ${address} (permission denied).`, 'Grant it the store role (see the README), or run `sy init` as the schema owner.', error));
    if (code === '25006') return wrapped(storeError('store_read_only', `The store at ${address} is read-only (a standby?), so sy cannot record anything there.`, 'Point SY_STORE at the primary.', error));
    if (code === '42P01' || code === '3F000' || code === '42703') {
      return wrapped(storeError('store_damaged', `The store's tables at ${address} are not what this sy expects: one is missing or changed.`, 'Run `sy init` to complete the schema, or restore the database from a backup.', error));
    }
    if (code === '53100') return wrapped(failed('store_io', `The store at ${address} could not be written: its disk is full.`, undefined, error));
    return error;
  }
}

const NETWORK: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'the connection was reset',
  ENOTFOUND: 'no such host',
  EAI_AGAIN: 'the host name could not be resolved',
  EHOSTUNREACH: 'no route to the host',
  ENETUNREACH: 'the network is unreachable',
  ETIMEDOUT: 'the connection timed out',
  EPIPE: 'the connection was closed',
  ENOENT: 'no server socket there',
};

const TLS: Record<string, string> = {
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'its certificate is not signed by the CA in sslrootcert',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'its certificate is not signed by the CA in sslrootcert',
  SELF_SIGNED_CERT_IN_CHAIN: 'its certificate is not signed by the CA in sslrootcert',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'its certificate is self-signed and not the CA in sslrootcert',
  CERT_HAS_EXPIRED: 'its certificate has expired',
  CERT_NOT_YET_VALID: 'its certificate is not valid yet',
  ERR_TLS_CERT_ALTNAME_INVALID: 'its certificate is not for the host name in SY_STORE',
};
