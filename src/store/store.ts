/**
 * The store behind sy: secrets with versions, the lease ledger and the audit log.
 * Everything above this interface deals in plaintext records; an implementation seals
 * payloads itself. Methods are asynchronous and each one is atomic on its own, so a shared,
 * networked store (a PostgreSQL-backed one for fleets of daemons) can implement the same
 * interface. test/contract/store.contract.ts is the suite every implementation passes.
 */
import type { AuditTrail } from '../audit/trail.js';

export type { AuditTrail, AuditVerifyResult } from '../audit/trail.js';
import type { ClientRecord } from '../model/client.js';
import type { LeaseChanges, LeaseRecord, LeaseState, NewLease } from '../model/lease.js';
import type { NewSecret, Secret, SecretContent, SecretMetadata, SecretRef } from '../model/secret.js';
import type { PoolRegistry, StoreWatch, StoreWatcher } from './pools.js';

export interface SecretSearch {
  /** Paths containing this text (case-insensitive). */
  query?: string;
  /** Only dynamic secrets linked to this base path. */
  linkedTo?: string;
  limit: number;
}

export interface DeleteOptions {
  /** Delete even while dynamic secrets link to it or its leases are active. */
  force: boolean;
}

export interface SecretRepository {
  get(ref: SecretRef, version?: number): Promise<Secret | undefined>;
  /** Throws a usage error when the path is taken. */
  create(secret: NewSecret): Promise<Secret>;
  /**
   * Adds version `expectedVersion + 1`. Returns undefined when another writer got there
   * first, so the caller can re-read and retry.
   */
  addVersion(id: string, expectedVersion: number, content: SecretContent & { linkedPath?: string }): Promise<Secret | undefined>;
  /** Throws a usage error when something depends on the secret and `force` is not set. */
  delete(id: string, options: DeleteOptions): Promise<void>;
  search(search: SecretSearch): Promise<SecretMetadata[]>;
}

export type StoreKind = 'sqlite' | 'postgresql';

export interface Store {
  readonly kind: StoreKind;
  /** Where it lives, for messages and `sy store info`: the SY_HOME directory, or the URL without its password. */
  readonly location: string;
  readonly secrets: SecretRepository;
  readonly leases: LeaseLedger;
  /** The clients of the lease API (PRODUCT.md, "Clients and the lease API"). */
  readonly clients: ClientRegistry;
  /** The daemons that run, by pool (pools.ts). */
  readonly pools: PoolRegistry;
  /** Optional: tells a long-lived process about changes to the ledger made by others (pools.ts). */
  watch?(watcher: StoreWatcher): Promise<StoreWatch>;
  /** The audit log belongs to the store: one chain, whoever appends to it. */
  readonly audit: AuditTrail;
  /** Schema version and counts, for `sy store info`. */
  info(): Promise<StoreInfo>;
  close(): Promise<void>;
}

/** What a store needs from the one who opens it: who acts, and where warnings go. */
export interface StoreOptions {
  /** Named in every audit line this handle writes. */
  actor: string;
  /** Warnings for the user (the audit log could not be written); the CLI prints them on stderr. */
  warn: (text: string) => void;
  /**
   * For a process serving many requests at once (`sy daemon`): commits of the SQLite store are
   * made durable off the event loop, one sync for all that came before it (WalSync). A write
   * still resolves only once it is on disk. The PostgreSQL store has its own group commit.
   */
  groupCommit?: boolean;
}

export interface StoreInfo {
  schemaVersion: number;
  /** Secrets, not versions. */
  secrets: number;
  secretVersions: number;
  /** Leases per state; states with none are left out. */
  leases: Record<string, number>;
  auditLines: number;
  /**
   * The store's generation (records.ts) and the hash of the log's last line: kept elsewhere,
   * they show a whole store put back to an older copy of itself, which nothing inside it can.
   */
  generation: number;
  auditHash: string;
  /** Clients of the lease API. */
  clients: number;
}

/**
 * The clients of the lease API, with the same integrity as every other record: each row is
 * checked against its MAC, and every read compares the whole set with its census, so a
 * client removed, brought back or set back to an older copy of itself behind sy's back is
 * refused (exit 4) rather than trusted.
 */
export interface ClientRegistry {
  /** Throws a usage error (exit 2) when the name is taken. */
  create(record: ClientRecord): Promise<void>;
  get(name: string): Promise<ClientRecord | undefined>;
  /** Every client, by name. */
  list(): Promise<ClientRecord[]>;
  /** Replaces the client's patterns, caps, key and updatedAt (createdAt stays); notFound (exit 3) when there is none. */
  update(record: ClientRecord): Promise<void>;
  /** False when there was no such client. */
  delete(name: string): Promise<boolean>;
}

export interface LeaseQuery {
  secretId?: string;
  path?: string;
  /** Paths that start with this prefix (revoke --prefix). */
  pathPrefix?: string;
  /** Also ended leases. */
  all?: boolean;
  pool?: string;
  /** Only the leases of this API client. */
  client?: string;
  limit: number;
  offset?: number;
}

export interface DueQuery {
  now: number;
  limit: number;
  pool?: string;
  /** Intents older than this (or whose creating process is gone) count as abandoned. */
  staleIntentBefore: number;
  /** Claims of `revoking` leases last this long before another process may take over. */
  claimMs: number;
}

export interface LeaseLedger {
  recordIntent(lease: NewLease): Promise<void>;
  get(id: string): Promise<LeaseRecord | undefined>;
  list(query: LeaseQuery): Promise<LeaseRecord[]>;
  /**
   * Compare-and-set of a lease's state. Returns the lease after the change, or undefined
   * when it was not in one of `from` (another process changed it first).
   */
  transition(id: string, from: readonly LeaseState[], to: LeaseState, changes?: LeaseChanges): Promise<LeaseRecord | undefined>;
  /** Claims up to `limit` due leases for revocation (they become `revoking`, owned by `claimant`). */
  claimDue(query: DueQuery, claimant: string): Promise<LeaseRecord[]>;
  /** Claims one lease for revocation; undefined when another process holds a live claim or it has ended. */
  claim(id: string, claimant: string, now: number, claimMs: number): Promise<LeaseRecord | undefined>;
  /**
   * Ends or releases claims taken by `claimant`, all in one transaction. Each result is
   * undefined where the lease was no longer claimed by `claimant`.
   */
  settleAll(claimant: string, items: { id: string; to: LeaseState; changes?: LeaseChanges }[]): Promise<(LeaseRecord | undefined)[]>;
  countByState(pool?: string): Promise<Record<string, number>>;
  /**
   * The live leases issued for API client `client` (a client's cap on active leases), counted
   * from the index as countByState is: each live row is checked when the census is recounted.
   */
  countLive(client: string): Promise<number>;
  /** The earliest instant something will be due (for the daemon's sleep). */
  nextDue(pool?: string): Promise<number | undefined>;
  /** Users the ledger holds as in use or in flight (intent, active, revoking): the reaper leaves them. */
  liveUsernames(): Promise<Set<string>>;
}

