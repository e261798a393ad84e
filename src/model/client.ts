/**
 * A client of the lease API (PRODUCT.md, "Clients and the lease API"): who may ask a pool's
 * daemons for leases without the master key. The store keeps only the public half of its key.
 */
export interface ClientRecord {
  /** 1–64 of `[A-Za-z0-9._@-]`; the JWT's `iss` and `sub`. */
  name: string;
  /** The client's Ed25519 public key, SPKI PEM. */
  publicKey: string;
  /** Path patterns by whole segments: a path, `prefix:*` (or `prefix/*`), or `*`. */
  allow: string[];
  /** Caps the TTL of its leases, in seconds (below the recipe's own cap); none: the recipe's. */
  maxTtl?: number;
  /** How many of its leases may be active at once (default 100). */
  maxLeases: number;
  createdAt: number;
  updatedAt: number;
}

export const CLIENT_NAME = /^[A-Za-z0-9._@-]{1,64}$/;
export const DEFAULT_MAX_LEASES = 100;

/**
 * The audit log's actor for what a daemon does for a client: marked, so that it cannot be
 * read as a user@host or an SY_CLIENT_ID of someone working on the store.
 */
export const clientActor = (name: string): string => `client:${name}`;
