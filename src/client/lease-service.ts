import type { IssuedLease, LeaseDetails, LeaseSummary } from '../io/lease-view.js';
import type { Secret, SecretRef } from '../model/secret.js';

/**
 * What a command can ask of sy about leases, whoever does the work (STYLE.md: "a client is a
 * peer of the store"). Two implementations, chosen once at the edge: the local one works on
 * the store with the master key (client/local.ts); the HTTP one asks a pool's daemons through
 * the lease API with the client's own key (`SY_SERVER`). Nothing below the command checks
 * which one it has. Results are PRODUCT.md's JSON shapes, so both print the same bytes.
 */
export interface LeaseService {
  /** `lease create` / `secret read` of a dynamic secret. */
  issue(ref: SecretRef, request: { ttlSeconds?: number; version?: number }): Promise<IssuedLease>;
  /** `lease list`: active leases (with `all`, ended ones too); a client sees only its own. */
  list(filter: { recordUid?: string; path?: string; all?: boolean; limit?: number; offset?: number }): Promise<LeaseSummary[]>;
  /** `lease lookup`: throws notFound (exit 3 / 404) for no such lease or another client's. */
  lookup(leaseId: string): Promise<LeaseDetails>;
  /** `lease renew`: extend from now, capped at the max TTL, never shortened. */
  renew(leaseId: string, incrementSeconds?: number): Promise<RenewResult>;
  /** `lease revoke`: drop the user now; "revoked" only once it is checked gone. */
  revoke(leaseId: string): Promise<void>;
  /**
   * `secret read`: a static secret, or for a dynamic one a lease issued from it (the version
   * read, as on the store). A client never reads a base secret (forbidden, exit 5).
   */
  read(ref: SecretRef, request: { ttlSeconds?: number; version?: number }): Promise<{ secret: Secret } | { lease: IssuedLease }>;
  close(): Promise<void>;
}

export interface RenewResult {
  lease: LeaseDetails;
  /** Extended, but only up to the max TTL. */
  capped: boolean;
  /** Already ran later than asked: left as it was. */
  unchanged: boolean;
}
