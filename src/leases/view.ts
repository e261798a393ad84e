import type { LeaseRecord } from '../model/lease.js';
import { isoSeconds } from '../util/time.js';

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
  };
}
