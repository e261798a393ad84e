/**
 * One interface for every database sy creates users on. Implementations load their driver
 * only when a target of their engine is used (see connectTarget).
 */
import type { BaseConnection, GrantPermission } from '../secrets/validate.js';

export interface NewUser {
  username: string;
  password: string;
  /** When the lease ends: PostgreSQL's VALID UNTIL, so an orphan stops working on time. */
  expiresAt: Date;
  grants: GrantPermission[];
  /** Expert override of the engine's own CREATE/GRANT statements. */
  creationStatements?: string[];
}

export interface ManagedUser {
  username: string;
  /** After this instant the user may be dropped even if no ledger knows it. */
  reapAfter: Date;
}

export interface Target {
  /** `host:port`, for messages. */
  readonly address: string;
  /**
   * Creates the user with its grants. On any failure it drops what it created before
   * throwing, so no half-made user is left behind.
   */
  createUser(user: NewUser): Promise<void>;
  /** Moves the user's expiry (VALID UNTIL on PostgreSQL; nothing to do on MySQL). */
  renewUser(username: string, expiresAt: Date): Promise<void>;
  /**
   * Ends the users' sessions and drops them, in as few round trips as possible.
   * Users that no longer exist are not an error.
   */
  revokeUsers(usernames: string[], revocationStatements?: string[]): Promise<void>;
  /** The users on this server that carry sy's name marker. */
  listManagedUsers(): Promise<ManagedUser[]>;
  close(): Promise<void>;
}

export interface ConnectOptions {
  /** How long to wait for the admin connection before failing. */
  connectTimeoutMs: number;
}

/** Connects as the base secret's admin, importing only the driver of its engine. */
export async function connectTarget(connection: BaseConnection, options: ConnectOptions): Promise<Target> {
  if (connection.engine === 'postgresql') {
    // pg probes for Cloudflare Workers when it loads by building a fetch Response unless
    // `navigator` exists, which loads Node's whole HTTP client (~20 ms). Node 21+ defines
    // navigator; on Node 20 sy defines the same userAgent-only shape first.
    (globalThis as { navigator?: unknown }).navigator ??= { userAgent: `Node.js/${process.versions.node.split('.')[0]}` };
    const { PostgresTarget } = await import('./postgres.js');
    return PostgresTarget.connect(connection, options);
  }
  const { MysqlTarget } = await import('./mysql.js');
  return MysqlTarget.connect(connection, options);
}
