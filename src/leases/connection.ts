import { notFound } from '../errors.js';
import { ENGINES } from '../model/engines.js';
import { kindOf, parseBaseConnection } from '../secrets/validate.js';
import type { BaseConnection } from '../model/secret.js';
import type { Store } from '../store/store.js';
import type { LeaseRecord } from '../model/lease.js';

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

/** Engine, host, port and database: the place a user lives, whatever the credentials. */
export function sameTarget(a: BaseConnection, b: BaseConnection): boolean {
  return a.engine === b.engine && a.host.toLowerCase() === b.host.toLowerCase() && a.port === b.port && defaultDatabase(a) === defaultDatabase(b);
}

/**
 * The admin connection for revoking or renewing: always the server and database sealed with
 * the lease, where its user was created. The base secret's current credentials are used
 * while it still points there (passwords rotate); once it points elsewhere, the sealed ones.
 */
export async function revocationConnection(store: Store, lease: LeaseRecord): Promise<BaseConnection> {
  const sealed = lease.revocation.connection as unknown as BaseConnection;
  if (!sealed?.engine) throw notFound('base_not_found', `The base secret of lease ${lease.id} no longer exists.`);
  const base = await store.secrets.get({ id: lease.baseId });
  if (base && kindOf(base.attributes) === 'base') {
    try {
      const current = parseBaseConnection(base.attributes, base.data);
      if (sameTarget(current, sealed)) return current;
    } catch {
      // A base secret that no longer parses: the sealed connection still works.
    }
  }
  return sealed;
}

/** The user a lease created, as sealed with it (leases issued before it was sealed: the ledger's). */
export function sealedUsername(lease: LeaseRecord): string {
  return lease.revocation.username ?? lease.username;
}
