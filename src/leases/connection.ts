import { notFound } from '../errors.js';
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

/** A host as URLs and target labels write it: an IPv6 address in brackets. */
export function hostForUrl(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/** TLS as a lease's clients need it: as sy itself reaches the base's server, verifying it unless told not to. */
export interface ClientTls {
  verify: boolean;
}

export function clientTls(base: BaseConnection): ClientTls | undefined {
  if (!base.ssl) return undefined;
  return { verify: base.ssl === true || base.ssl.rejectUnauthorized !== false };
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
