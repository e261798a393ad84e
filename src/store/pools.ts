/**
 * The pool registry of the Store contract: which `sy daemon` processes run, and for which
 * pool. It feeds `sy pool list` and the warning of `lease create` about a pool that nobody
 * serves, and nothing else.
 *
 * Member rows are plain and unauthenticated, on purpose: a host name, a pid and a version
 * are no secret, and a heartbeat every few seconds should not cost a MAC over a census.
 * Someone who can write the store's tables without the key can therefore add, hide or age
 * members; all that changes is what `sy pool list` shows and whether `lease create` warns.
 * No claim, revocation or lease state ever depends on a member row, so a forged one cannot
 * make sy revoke, skip or keep anything.
 */

/** What a daemon says about itself when it joins. */
export interface NewPoolMember {
  /** The pool it serves; undefined: every pool. */
  pool?: string;
  host: string;
  pid: number;
  /** sy's version. */
  version: string;
}

export interface PoolMember extends NewPoolMember {
  id: string;
  /** Milliseconds since the epoch, by the member's clock, as lease times are. */
  startedAt: number;
  lastSeen: number;
}

export interface PoolRegistry {
  /** Adds a member seen now; returns its id. Members silent for a long time are forgotten on the way. */
  join(member: NewPoolMember, now?: number): Promise<string>;
  /** Marks the member seen now. False when its row is gone (forgotten, or the store was replaced): join again. */
  heartbeat(id: string, now?: number): Promise<boolean>;
  /** Removes the member; nothing happens when it is already gone. */
  leave(id: string): Promise<void>;
  /** Every member the store holds, live or not, oldest first: liveness is the reader's call (src/leases/pool.ts). */
  list(): Promise<PoolMember[]>;
}

/** Members not seen for this long are deleted at the next join: a SIGKILLed daemon leaves its row behind. */
export const FORGET_MEMBERS_AFTER_MS = 24 * 3600_000;

/**
 * The optional `watch` capability of a store: a long-lived process (the daemon) hears soon
 * after another process records, activates or renews a lease, so that a new short lease
 * wakes it before its interval ends. Best effort: a change missed while the watch is down
 * is caught at the daemon's next pass.
 */
export interface StoreWatcher {
  /** Something changed in the ledger; `pool` when the store knows which pool. */
  change(pool?: string): void;
  /** The watch broke (its connection was lost): it is closed, and the caller may watch again later. */
  error(error: unknown): void;
}

export interface StoreWatch {
  close(): Promise<void>;
}
