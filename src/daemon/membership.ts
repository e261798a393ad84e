/** The parts of `sy daemon` that keep it in its pool and alive through store outages. */
import { SyError } from '../errors.js';
import type { NewPoolMember, PoolRegistry, StoreWatch } from '../store/pools.js';
import type { Store } from '../store/store.js';

/**
 * Errors after which a daemon must stop rather than retry: the store refuses to be opened
 * or was changed by someone without the key (tampered rows, a moved audit log, a wrong
 * key, a schema from a newer sy). Everything else, a lost connection above all, passes.
 */
const RETRIABLE_STORE_CODES = new Set(['store_locked', 'store_unreachable', 'store_unavailable', 'store_io']);

export function isFatalStoreError(error: unknown): boolean {
  return error instanceof SyError && error.kind === 'store' && !RETRIABLE_STORE_CODES.has(error.code);
}

export const errorText = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/**
 * The first retry after the store was lost, doubled up to the cap, each with some jitter.
 * The cap is short: a store's database that restarts is back within seconds, and leases
 * that expired meanwhile are waiting; one connection attempt every two seconds per daemon
 * costs the database nothing while it is away.
 */
const FIRST_RETRY_MS = 200;
const MAX_RETRY_MS = 2_000;

/** What StoreHealth logs (a subset of the daemon's events). */
export type HealthEvent =
  | { event: 'store_unreachable'; error: string; retry_ms: number }
  | { event: 'store_reconnected'; after_ms: number };

/**
 * Whether the store answers. It logs one line when the store is lost and one when it is
 * back, however many attempts fail in between, and spaces the passes with a backoff.
 */
export class StoreHealth {
  private downSince: number | undefined;
  private attempts = 0;

  constructor(
    private readonly now: () => number,
    private readonly log: (event: HealthEvent) => void,
  ) {}

  get down(): boolean {
    return this.downSince !== undefined;
  }

  /** A pass failed: returns how long to wait before the next one. */
  failed(error: unknown): number {
    const wait = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** this.attempts) * (0.75 + Math.random() / 2);
    this.attempts++;
    this.lost(error, wait);
    return wait;
  }

  /** Something besides a pass (a heartbeat) found the store away: said once, with no effect on the backoff. */
  lost(error: unknown, retryMs = FIRST_RETRY_MS): void {
    if (this.downSince !== undefined) return;
    this.downSince = this.now();
    this.log({ event: 'store_unreachable', error: errorText(error), retry_ms: Math.round(retryMs) });
  }

  /** The store answered; true when it had been away. */
  ok(): boolean {
    const wasDown = this.downSince !== undefined;
    if (wasDown) this.log({ event: 'store_reconnected', after_ms: this.now() - this.downSince! });
    this.downSince = undefined;
    this.attempts = 0;
    return wasDown;
  }
}

/**
 * Opens the store for a daemon that starts while the store's database is away (a node and
 * the database restarting together): the same one line and backoff as a store lost later.
 * Only a store that cannot be reached waits; a wrong key, a tampered store, a URL that is
 * not one, or no store there ends the start at once. Undefined when stopped meanwhile.
 */
export async function openPatiently<T>(open: () => Promise<T>, signal: AbortSignal, health: StoreHealth): Promise<T | undefined> {
  while (!signal.aborted) {
    try {
      const opened = await open();
      health.ok();
      return opened;
    } catch (error) {
      const away = error instanceof SyError && (error.kind === 'failed' || (error.kind === 'store' && !isFatalStoreError(error)));
      if (!away) throw error;
      const wait = health.failed(error);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, wait);
        function done() {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          resolve();
        }
        signal.addEventListener('abort', done);
      });
    }
  }
  return undefined;
}

export interface MembershipEvents {
  beat(): void;
  failed(error: unknown): void;
}

/**
 * The daemon's row in the pool registry: joined once, marked seen at each heartbeat, joined
 * afresh when the row is gone (forgotten, or the store database was replaced), left on
 * stop. It never throws: failures go to `events.failed`.
 */
export class PoolMembership {
  private id: string | undefined;
  private inFlight: Promise<void> | undefined;
  healthy = false;

  constructor(
    private readonly registry: PoolRegistry,
    private readonly member: NewPoolMember,
    private readonly now: () => number,
    private readonly events: MembershipEvents,
  ) {}

  get joined(): boolean {
    return this.id !== undefined;
  }

  beat(): Promise<void> {
    this.inFlight ??= this.beatOnce().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  private async beatOnce(): Promise<void> {
    try {
      if (this.id === undefined || !(await this.registry.heartbeat(this.id, this.now()))) {
        this.id = await this.registry.join(this.member, this.now());
      }
      this.healthy = true;
      this.events.beat();
    } catch (error) {
      this.healthy = false;
      this.events.failed(error);
    }
  }

  /** Best effort, and quick: a store that is away must not hold up a stop. */
  async leave(): Promise<void> {
    await this.inFlight;
    const id = this.id;
    if (id === undefined) return;
    this.id = undefined;
    await Promise.race([this.registry.leave(id).catch(() => undefined), new Promise((resolve) => setTimeout(resolve, LEAVE_WAIT_MS).unref())]);
  }
}

const LEAVE_WAIT_MS = 2_000;

/**
 * Changes within this long wake the daemon once: a burst of creates (each notifies twice,
 * intent and activation) costs a pass per tenth of a second, not one per lease, and a new
 * lease, whose TTL is a second at least, is still seen long before it expires.
 */
const COALESCE_MS = 100;

/**
 * The daemon's sleep: until a timeout, an abort, a change reported by the store's watch
 * (of the daemon's pool, when the store says which), or a fatal error from the heartbeat.
 * A change that comes while the daemon is awake is kept for the next sleep.
 */
export class Waker {
  private handle: StoreWatch | undefined;
  private pending = false;
  private wake: (() => void) | undefined;
  private fatal: unknown;

  constructor(
    private readonly signal: AbortSignal,
    private readonly pool: string | undefined,
  ) {}

  /** Starts the store's watch when it has one and none is running; a store that is away throws. */
  async watch(store: Store): Promise<void> {
    if (this.handle || !store.watch) return;
    this.handle = await store.watch({
      change: (pool) => {
        if (this.pool === undefined || pool === undefined || pool === this.pool) this.poke();
      },
      error: () => {
        // Watched again at the next pass; the pass after a wake-up finds what was missed.
        this.handle = undefined;
        this.poke();
      },
    });
  }

  fail(error: unknown): void {
    this.fatal ??= error;
    this.poke();
  }

  throwIfFailed(): void {
    if (this.fatal !== undefined) throw this.fatal;
  }

  /** Ends the current sleep (or the next one) early. */
  poke(): void {
    this.pending = true;
    this.wake?.();
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout;
      const done = () => {
        clearTimeout(timer);
        this.signal.removeEventListener('abort', done);
        this.wake = undefined;
        this.pending = false;
        resolve();
      };
      if (this.signal.aborted) return done();
      this.signal.addEventListener('abort', done);
      if (this.pending) {
        timer = setTimeout(done, Math.min(ms, COALESCE_MS));
        return;
      }
      timer = setTimeout(done, ms);
      this.wake = () => {
        clearTimeout(timer);
        timer = setTimeout(done, Math.min(ms, COALESCE_MS));
        this.wake = undefined;
      };
    });
  }

  async close(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    await handle?.close().catch(() => undefined);
  }
}
