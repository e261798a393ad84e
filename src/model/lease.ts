/** The model of a lease: its record in the ledger and the states it moves through. */

/**
 * The life of a lease. `intent` is written before the user is created, so a crash between
 * the two leaves something the sweep can find; `revoking` is a claim held by one process;
 * `failed` waits for a retry with backoff; `irrevocable` after too many attempts (retried
 * rarely); `revoked` and `forgotten` (revoke --force on an unreachable target) are ended.
 */
export type LeaseState = 'intent' | 'active' | 'revoking' | 'failed' | 'irrevocable' | 'revoked' | 'forgotten';

/** Every state, once: the stores' checks and queries are built from these lists. */
export const LEASE_STATES: readonly LeaseState[] = ['intent', 'active', 'revoking', 'failed', 'irrevocable', 'revoked', 'forgotten'];
/** A user may exist on the target: the sweep and the census look after these. */
export const LIVE_LEASE_STATES = ['intent', 'active', 'revoking', 'failed', 'irrevocable'] as const satisfies readonly LeaseState[];
/** The user is in use or being made or dropped right now: the reaper leaves it alone. */
export const IN_USE_LEASE_STATES = ['intent', 'active', 'revoking'] as const satisfies readonly LeaseState[];
export const ENDED_LEASE_STATES: readonly LeaseState[] = ['revoked', 'forgotten'];

export interface LeaseRecord {
  id: string;
  /** The dynamic secret the lease came from (its record_uid). */
  secretId: string;
  baseId: string;
  path: string;
  pool: string;
  engine: string;
  /** `host:port/database`, for listings and the audit log. */
  target: string;
  username: string;
  state: LeaseState;
  createdAt: number;
  expiresAt: number;
  maxExpiresAt: number;
  attempts: number;
  nextAttemptAt?: number;
  lastError?: string;
  endedAt?: number;
  /**
   * The API client the lease was issued for (its name), none when issued on the store
   * itself. Fixed at issue and covered by the row's MAC: no one without the key can move a
   * lease to another client.
   */
  client?: string;
  /** Sealed in the store: what revocation needs even if the secrets change or go. */
  revocation: LeaseRevocation;
}

export interface LeaseRevocation {
  /** The base secret's connection as it was when the lease was made: where the user lives. */
  connection: Record<string, unknown>;
  /** The user created on it. Revocation drops this name, never one read from a plain column. */
  username?: string;
  revocationStatements?: string[];
  /** PostgreSQL: the role that receives what the lease user created. */
  reassignTo?: string;
}

export interface NewLease extends Omit<LeaseRecord, 'state' | 'attempts' | 'nextAttemptAt' | 'lastError' | 'endedAt'> {
  ownerPid: number;
  ownerHost: string;
}

export interface LeaseChanges {
  expiresAt?: number;
  attempts?: number;
  nextAttemptAt?: number | null;
  lastError?: string | null;
  endedAt?: number | null;
}
