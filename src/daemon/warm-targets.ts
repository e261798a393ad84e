/**
 * Warm admin connections for the lease API of `sy daemon --listen`. The CLI connects to the
 * target for each lease and closes; a daemon serving many creates would spend a connection
 * and an authentication on each. Here a connection that only issued a lease (read the
 * server's clock, created the user from grantPermissions, nothing failed) goes back to an
 * idle list of its base connection, and the next create on it skips connecting. Anything
 * else (revoke, renew, listing, custom creationStatements, which may change the session, or
 * any failure) closes the connection as before, so no session state carries over.
 *
 * Creates on one server database also take turns (NewUser.turn), with a bounded wait.
 * PostgreSQL fails concurrent GRANTs on one catalog row ("tuple concurrently updated"), so
 * ten creates of one recipe at once mostly roll back and try again; in turn they each run
 * once. The target holds the turn only from its first GRANT to its COMMIT. A create that
 * waited longer than `turnWaitMs` (a target that hangs) goes ahead and relies on the retry.
 */
import { createHash } from 'node:crypto';
import type { BaseConnection } from '../model/secret.js';
import { targetLabel } from '../leases/connection.js';
import type { LeaseDeps } from '../leases/deps.js';
import type { ConnectOptions, ManagedUsers, NewUser, RevokeOptions, RevokeResult, Target } from '../targets/target.js';

export interface WarmTargetOptions {
  /** An idle connection is closed after this long. */
  idleMs?: number;
  /** At most this many idle connections per base connection. */
  maxIdle?: number;
  /** A create waits at most this long for its turn on a database. */
  turnWaitMs?: number;
}

export interface WarmTargets {
  /** LeaseDeps.connect, with warm connections. */
  connect: LeaseDeps['connect'];
  /**
   * LeaseDeps.connect without them, for the revocation loop: when a server refuses a new
   * connection while idle ones of this pool sit on it (an admin's CONNECTION LIMIT, the
   * server's max_connections), those are closed and the connection is tried once more. What
   * the warm connections save must never keep a revocation out.
   */
  plain: LeaseDeps['connect'];
  /** Idle connections held now (tests, metrics). */
  idle(): number;
  /** Closes every idle connection; later releases close theirs. */
  close(): Promise<void>;
}

interface Idle {
  target: Target;
  since: number;
  /** serverKey of its connection. */
  server: string;
}

export function warmTargets(connect: LeaseDeps['connect'], options: WarmTargetOptions = {}): WarmTargets {
  const idleMs = options.idleMs ?? 10_000;
  const maxIdle = options.maxIdle ?? 16;
  const turnWaitMs = options.turnWaitMs ?? 1_000;
  const idle = new Map<string, Idle[]>();
  const turns = new Turns();
  let closed = false;

  const expire = setInterval(() => {
    const now = Date.now();
    for (const [key, list] of idle) {
      const keep = list.filter((entry) => now - entry.since < idleMs);
      for (const entry of list) if (!keep.includes(entry)) void entry.target.close().catch(() => undefined);
      if (keep.length > 0) idle.set(key, keep);
      else idle.delete(key);
    }
  }, Math.max(250, Math.floor(idleMs / 4)));
  expire.unref();

  const release = (key: string, server: string, target: Target): void => {
    const list = idle.get(key) ?? [];
    if (closed || list.length >= maxIdle) {
      void target.close().catch(() => undefined);
      return;
    }
    list.push({ target, since: Date.now(), server });
    idle.set(key, list);
  };

  /** Closes the idle connections to `connection`'s server; were there any? */
  const closeIdleOn = async (connection: BaseConnection): Promise<boolean> => {
    const server = serverKey(connection);
    const closing: Idle[] = [];
    for (const [key, list] of idle) {
      if (list[0]?.server !== server) continue;
      closing.push(...list);
      idle.delete(key);
    }
    await Promise.all(closing.map((entry) => entry.target.close().catch(() => undefined)));
    return closing.length > 0;
  };
  const plain = async (connection: BaseConnection, connectOptions: ConnectOptions): Promise<Target> => {
    try {
      return await connect(connection, connectOptions);
    } catch (error) {
      if (await closeIdleOn(connection)) return connect(connection, connectOptions);
      throw error;
    }
  };

  return {
    plain,
    async connect(connection: BaseConnection, connectOptions: ConnectOptions): Promise<Target> {
      // A connection bound to an abort signal is the caller's alone.
      if (connectOptions.signal) return plain(connection, connectOptions);
      const key = poolKey(connection, connectOptions);
      const taken = idle.get(key)?.pop();
      const fresh = () => plain(connection, connectOptions);
      const target = taken ? taken.target : await fresh();
      const database = targetLabel(connection);
      return new WarmTarget(target, taken !== undefined, {
        fresh,
        release: (t) => release(key, serverKey(connection), t),
        turn: () => turns.take(database, turnWaitMs),
      });
    },
    idle: () => [...idle.values()].reduce((n, list) => n + list.length, 0),
    async close() {
      closed = true;
      clearInterval(expire);
      const all = [...idle.values()].flat();
      idle.clear();
      await Promise.all(all.map((entry) => entry.target.close().catch(() => undefined)));
    },
  };
}

/** The server a connection reaches: engine, host and port. */
function serverKey(connection: BaseConnection): string {
  return JSON.stringify([connection.engine, connection.host.toLowerCase(), connection.port]);
}

/** Everything that makes two connections interchangeable, hashed: the key holds no password. */
function poolKey(connection: BaseConnection, options: ConnectOptions): string {
  const { connectTimeoutMs, lockTimeoutMs, statementTimeoutMs } = options;
  return createHash('sha256').update(JSON.stringify([connection, connectTimeoutMs, lockTimeoutMs, statementTimeoutMs])).digest('base64url');
}

/** What a lent connection needs from its pool. */
interface Lender {
  /** A new connection to the same place. */
  fresh(): Promise<Target>;
  /** Takes back a connection that only issued leases. */
  release(target: Target): void;
  /** Waits for this database's turn to create; call what it returns when done. */
  turn(): Promise<() => void>;
}

/** One connection lent out: it goes back to the idle list only if it did nothing but issue a lease, without a failure. */
class WarmTarget implements Target {
  private clean = true;
  private done = false;

  constructor(
    private inner: Target,
    private reused: boolean,
    private readonly lender: Lender,
  ) {}

  get address(): string {
    return this.inner.address;
  }

  /**
   * The first statement of an issue. On a connection that sat idle, a failure here (the
   * server closed it meanwhile) is no failure of the lease: nothing was sent that could
   * have made anything, so it is asked again on a new connection.
   */
  async serverNow(): Promise<Date> {
    if (this.reused) {
      this.reused = false;
      try {
        return await this.inner.serverNow();
      } catch {
        await this.inner.close().catch(() => undefined);
        // Until the new one is in hand, what close() would give back is the dead one.
        this.clean = false;
        this.inner = await this.lender.fresh();
        this.clean = true;
      }
    }
    return this.tracked(() => this.inner.serverNow());
  }

  async createUser(user: NewUser): Promise<void> {
    this.reused = false;
    if (user.creationStatements !== undefined && user.creationStatements.length > 0) this.clean = false;
    await this.tracked(() => this.inner.createUser({ ...user, turn: this.lender.turn }));
  }

  renewUser(username: string, expiresAt: Date): Promise<void> {
    return this.other(() => this.inner.renewUser(username, expiresAt));
  }

  revokeUsers(usernames: string[], options?: RevokeOptions): Promise<RevokeResult> {
    return this.other(() => this.inner.revokeUsers(usernames, options));
  }

  listManagedUsers(): Promise<ManagedUsers> {
    return this.other(() => this.inner.listManagedUsers());
  }

  checkRecipe(...args: Parameters<Target['checkRecipe']>): ReturnType<Target['checkRecipe']> {
    return this.other(() => this.inner.checkRecipe(...args));
  }

  async close(): Promise<void> {
    if (this.done) return;
    this.done = true;
    if (this.clean) this.lender.release(this.inner);
    else await this.inner.close();
  }

  private async tracked<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      this.clean = false;
      throw error;
    }
  }

  /** Anything but issuing: the connection is closed after it. */
  private other<T>(work: () => Promise<T>): Promise<T> {
    this.reused = false;
    this.clean = false;
    return work();
  }
}

/**
 * Turns per key: each taker waits for the one before it, or for `maxWaitMs`, whichever
 * comes first, and calls what it got back when it is done.
 */
export class Turns {
  private readonly tails = new Map<string, Promise<void>>();

  async take(key: string, maxWaitMs: number): Promise<() => void> {
    const before = this.tails.get(key) ?? Promise.resolve();
    let finish!: () => void;
    const mine = new Promise<void>((resolve) => (finish = resolve));
    const tail = before.then(() => mine);
    this.tails.set(key, tail);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([before, new Promise<void>((resolve) => (timer = setTimeout(resolve, maxWaitMs)))]);
    clearTimeout(timer);
    return () => {
      finish();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    };
  }
}
