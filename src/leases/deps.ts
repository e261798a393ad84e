import type { BaseConnection } from '../model/secret.js';
import type { Store } from '../store/store.js';
import type { ConnectOptions, Target } from '../targets/target.js';

/** What the lease operations need; tests pass their own clock or target connector. */
export interface LeaseDeps {
  /** The store, whose audit log records every change to a lease. */
  store: Store;
  connect(connection: BaseConnection, options: ConnectOptions): Promise<Target>;
  now(): number;
  /** Progress for spinners ("Creating user on host:port"); never printed by this layer. */
  progress?(text: string): void;
  /** Notices for the user (capped TTL, forgotten lease); printed by the CLI layer. */
  warn?(text: string): void;
  /**
   * Who the audit log names for these operations when not the store handle's actor: the
   * API client a daemon works for (`clientActor(name)`). Set per request on a copy of the
   * deps; the store handle is shared.
   */
  actor?: string;
  /** Identifies this process's claims on leases. */
  claimant: string;
}

export const CONNECT_TIMEOUT_MS = 10_000;
/** A revocation claim lasts this long before another process may take the lease over. */
export const CLAIM_MS = 60_000;
/** An intent older than this, whose process may still run elsewhere, is considered abandoned. */
export const STALE_INTENT_MS = 120_000;
/** Clock-skew allowance added to the reap-after bound carried in user names. */
export const REAP_GRACE_MS = 10_000;
/**
 * A PostgreSQL role past its VALID UNTIL by this much, and not live in this ledger, is an
 * orphan: renew moves VALID UNTIL before the ledger, so no store's live lease is behind it.
 */
export const VALID_UNTIL_GRACE_MS = 60_000;
export const MAX_ATTEMPTS = 8;

/** Exponential backoff: 5 s, 10 s, 20 s ... capped at an hour; after MAX_ATTEMPTS, every 6 hours. */
export function retryDelayMs(attempts: number): number {
  if (attempts >= MAX_ATTEMPTS) return 6 * 3600_000;
  return Math.min(5_000 * 2 ** (attempts - 1), 3600_000);
}
