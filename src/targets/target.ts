/**
 * One interface for every database sy creates users on. Implementations load their driver
 * only when a target of their engine is used (see connectTarget).
 */
import type { SyError } from '../errors.js';
import type { GrantPermission } from '../model/secret.js';

export interface NewUser {
  username: string;
  password: string;
  /** When the lease ends: PostgreSQL's VALID UNTIL, so an orphan stops working on time. */
  expiresAt: Date;
  grants: GrantPermission[];
  /** Expert override of the engine's own CREATE/GRANT statements. */
  creationStatements?: string[];
  /**
   * PostgreSQL: the role that receives what the lease user created when it is revoked. It
   * must exist and must not be able to log in; createUser checks that before it creates anything.
   */
  reassignTo?: string;
  /**
   * The most sessions the user may hold at once: PostgreSQL `CONNECTION LIMIT`, MySQL
   * `MAX_USER_CONNECTIONS`; set after custom creation statements too.
   */
  connectionLimit?: number;
  /**
   * Waits for this create's turn among the creates on the same database and resolves with
   * what ends it. A target whose grants fail when another session grants on the same object
   * at once (PostgreSQL's "tuple concurrently updated") holds it from its first grant to its
   * COMMIT only; the rest of the create runs beside the others. Without it, creates only
   * retry.
   */
  turn?: () => Promise<() => void>;
}

export interface ManagedUser {
  username: string;
  /** After this instant the user may be dropped even if no ledger knows it (the bound in its name). */
  reapAfter: Date;
  /** PostgreSQL's VALID UNTIL: the lease's current expiry, a tighter bound than the name. */
  validUntil?: Date;
}

export interface ManagedUsers {
  /** The server's own clock (`now()`), which decides what is past its bound. */
  serverNow: Date;
  users: ManagedUser[];
}

export interface RevokeOptions {
  revocationStatements?: string[];
  /** PostgreSQL: hand what the users own to this role (which cannot log in) instead of dropping it. */
  reassignTo?: string;
}

/**
 * What a revocation achieved, user by user, as seen on the server afterwards: only a user
 * that no longer exists there (with nothing left in pg_shdepend on PostgreSQL) is `dropped`
 * or `absent`.
 */
export interface RevokeResult {
  /** Existed and is gone now. */
  dropped: string[];
  /** Did not exist when the revocation started. */
  absent: string[];
  /** Still exist, each with a one-sentence reason (naming the database where it failed). */
  failed: { username: string; error: SyError }[];
}

/** What a recipe asks of the server besides its grants. */
export interface RecipeCheckOptions {
  /** PostgreSQL: the role that would receive what a lease created (see NewUser.reassignTo). */
  reassignTo?: string;
}

export interface Target {
  /** `host:port`, for messages. */
  readonly address: string;
  /**
   * What on this server would keep a recipe from being granted as written, one sentence per
   * problem (`grantPermissions: table app.nope does not exist on ...`); empty when nothing
   * would. Read-only: it creates, grants and changes nothing. Checked: each named schema or
   * database and table exists (`*.*`: at least one non-system one does), the admin holds
   * each privilege WITH GRANT OPTION on everything the grant reaches, and `reassignTo` is
   * a role that cannot log in. Throws only when the server cannot be used at all.
   */
  checkRecipe(grants: GrantPermission[], options?: RecipeCheckOptions): Promise<string[]>;
  /**
   * Creates the user with its grants. On any failure it drops what it created before
   * throwing, so no half-made user is left behind.
   */
  createUser(user: NewUser): Promise<void>;
  /** Moves the user's expiry (VALID UNTIL on PostgreSQL; nothing to do on MySQL). */
  renewUser(username: string, expiresAt: Date): Promise<void>;
  /**
   * Ends the users' sessions, removes what they own or were granted, drops them, then checks
   * that they are gone. Users that no longer exist are not an error. One user that cannot be
   * dropped never blocks the others. Throws only when the server cannot be used at all
   * (connection lost).
   */
  revokeUsers(usernames: string[], options?: RevokeOptions): Promise<RevokeResult>;
  /** The users on this server that carry sy's name marker, and the server's clock. */
  listManagedUsers(): Promise<ManagedUsers>;
  /** The server's own clock, which a new lease's times follow. */
  serverNow(): Promise<Date>;
  /** Ends the connection at once, abandoning any statement in flight. */
  close(): Promise<void>;
}

export interface ConnectOptions {
  /** How long to wait for the admin connection before failing. */
  connectTimeoutMs: number;
  /** Longest wait for a lock held by another session (PostgreSQL lock_timeout, MySQL lock_wait_timeout). */
  lockTimeoutMs?: number;
  /** Longest any one statement may run (PostgreSQL statement_timeout, MariaDB max_statement_time). */
  statementTimeoutMs?: number;
  /** Aborting it ends the connection at once (the pre-command sweep's budget). */
  signal?: AbortSignal;
}

/** Defaults for every admin session: a held lock or a stuck statement fails well under 30 s. */
export const DEFAULT_LOCK_TIMEOUT_MS = 5_000;
export const DEFAULT_STATEMENT_TIMEOUT_MS = 10_000;
