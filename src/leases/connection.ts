import { notFound } from '../errors.js';
import { ENGINES } from '../targets/engines.js';
import type { IssuedLease } from './view.js';
import { type BaseConnection, kindOf, parseBaseConnection } from '../secrets/validate.js';
import type { LeaseRecord, Store } from '../store/store.js';

/** `host:port/database`: how a target is named in listings and the audit log. */
export function targetLabel(connection: BaseConnection): string {
  return `${hostForUrl(connection.host)}:${connection.port}/${defaultDatabase(connection) ?? ''}`;
}

export function defaultDatabase(connection: BaseConnection): string | undefined {
  return connection.database ?? (connection.engine === 'postgresql' ? 'postgres' : undefined);
}

function hostForUrl(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/**
 * The connection string of an issued lease: user and password percent-encoded, TLS carried
 * over from the base secret (`sslmode` for PostgreSQL, `ssl-mode` for MySQL).
 */
export function connectionString(base: BaseConnection, username: string, password: string, database: string | undefined): string {
  const scheme = ENGINES[base.engine].urlScheme;
  const auth = `${encodeURIComponent(username)}:${encodeURIComponent(password)}`;
  const path = database ? `/${encodeURIComponent(database)}` : '';
  const query = tlsQuery(base);
  return `${scheme}://${auth}@${hostForUrl(base.host)}:${base.port}${path}${query}`;
}

function tlsQuery(base: BaseConnection): string {
  if (!base.ssl) return '';
  const verify = base.ssl === true || base.ssl.rejectUnauthorized !== false;
  if (base.engine === 'postgresql') return `?sslmode=${verify ? 'verify-full' : 'require'}`;
  return `?ssl-mode=${verify ? 'VERIFY_IDENTITY' : 'REQUIRED'}`;
}

/** The variables clients of the engine read, plus DATABASE_URL. */
export function engineEnv(lease: IssuedLease): Record<string, string> {
  const database = lease.database ?? '';
  if (lease.engine === 'postgresql') {
    return {
      PGHOST: lease.host,
      PGPORT: String(lease.port),
      PGDATABASE: database,
      PGUSER: lease.username,
      PGPASSWORD: lease.password,
      DATABASE_URL: lease.connection_string,
    };
  }
  return {
    MYSQL_HOST: lease.host,
    MYSQL_TCP_PORT: String(lease.port),
    MYSQL_DATABASE: database,
    MYSQL_USER: lease.username,
    MYSQL_PWD: lease.password,
    DATABASE_URL: lease.connection_string,
  };
}

/** The admin connection for revoking: the base secret as it is now, or as it was when the lease was made. */
export async function revocationConnection(store: Store, lease: LeaseRecord): Promise<BaseConnection> {
  const base = await store.secrets.get({ id: lease.baseId });
  if (base && kindOf(base.attributes) === 'base') {
    try {
      return parseBaseConnection(base.attributes, base.data);
    } catch {
      // fall back to the snapshot
    }
  }
  const snapshot = lease.revocation.connection as unknown as BaseConnection;
  if (!snapshot?.engine) throw notFound('base_not_found', `The base secret of lease ${lease.id} no longer exists.`);
  return snapshot;
}
