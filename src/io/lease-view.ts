import { type ClientTls, hostForUrl } from '../leases/connection.js';
import type { IssuedCredentials } from '../leases/issue.js';
import type { LeaseRecord } from '../model/lease.js';
import { ENGINES, type Engine } from '../model/engines.js';
import { isoSeconds } from '../util/time.js';

/**
 * Leases as sy shows them: PRODUCT.md's JSON shapes (snake_case, ISO-8601 UTC times) and
 * the connection string clients take. The lease code returns records and numbers; this is
 * where they become what people and scripts read.
 */

/** PRODUCT.md's lease JSON, as printed by `lease create` and `secret read` of a dynamic secret. */
export interface IssuedLease {
  lease_id: string;
  record_uid: string;
  path: string;
  engine: string;
  host: string;
  port: number;
  database: string | null;
  username: string;
  password: string;
  connection_string: string;
  created_at: string;
  expires_at: string;
  lease_duration: number;
  renewable: boolean;
}

/** One row of `lease list`: never a password. */
export interface LeaseSummary {
  lease_id: string;
  record_uid: string;
  path: string;
  username: string;
  state: string;
  created_at: string;
  expires_at: string;
}

export interface LeaseDetails extends LeaseSummary {
  engine: string;
  target: string;
  pool: string;
  ttl: number;
  max_expires_at: string;
  renewable: boolean;
  attempts: number;
  last_error: string | null;
  ended_at: string | null;
  /** The API client the lease was issued for; null when issued on the store. */
  client: string | null;
}

export function issuedLease(issued: IssuedCredentials): IssuedLease {
  return {
    lease_id: issued.leaseId,
    record_uid: issued.secretId,
    path: issued.path,
    engine: issued.engine,
    host: issued.host,
    port: issued.port,
    database: issued.database ?? null,
    username: issued.username,
    password: issued.password,
    connection_string: connectionString(issued, issued.username, issued.password, issued.database),
    created_at: isoSeconds(issued.createdAt),
    expires_at: isoSeconds(issued.expiresAt),
    lease_duration: issued.ttl,
    renewable: issued.expiresAt < issued.maxExpiresAt,
  };
}

/** The server a lease's clients connect to. */
export interface ClientServer {
  engine: Engine;
  host: string;
  port: number;
  tls?: ClientTls;
}

/**
 * The connection string of an issued lease: user and password percent-encoded, TLS carried
 * over from the base secret (`sslmode` for PostgreSQL, `ssl-mode` for MySQL).
 */
export function connectionString(server: ClientServer, username: string, password: string, database: string | undefined): string {
  const scheme = ENGINES[server.engine].urlScheme;
  const auth = `${encodeURIComponent(username)}:${encodeURIComponent(password)}`;
  const path = database ? `/${encodeURIComponent(database)}` : '';
  return `${scheme}://${auth}@${hostForUrl(server.host)}:${server.port}${path}${tlsQuery(server)}`;
}

function tlsQuery(server: ClientServer): string {
  if (!server.tls) return '';
  if (server.engine === 'postgresql') return `?sslmode=${server.tls.verify ? 'verify-full' : 'require'}`;
  return `?ssl-mode=${server.tls.verify ? 'VERIFY_IDENTITY' : 'REQUIRED'}`;
}

export function leaseSummary(lease: LeaseRecord): LeaseSummary {
  return {
    lease_id: lease.id,
    record_uid: lease.secretId,
    path: lease.path,
    username: lease.username,
    state: lease.state,
    created_at: isoSeconds(lease.createdAt),
    expires_at: isoSeconds(lease.expiresAt),
  };
}

export function leaseDetails(lease: LeaseRecord, now: number): LeaseDetails {
  const live = lease.state === 'active';
  return {
    ...leaseSummary(lease),
    engine: lease.engine,
    target: lease.target,
    pool: lease.pool,
    ttl: live ? Math.max(0, Math.round((lease.expiresAt - now) / 1000)) : 0,
    max_expires_at: isoSeconds(lease.maxExpiresAt),
    renewable: live && lease.expiresAt < lease.maxExpiresAt,
    attempts: lease.attempts,
    last_error: lease.lastError ?? null,
    ended_at: lease.endedAt === undefined ? null : isoSeconds(lease.endedAt),
    client: lease.client ?? null,
  };
}
