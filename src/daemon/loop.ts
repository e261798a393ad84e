import type { NewPoolMember } from '../store/pools.js';
import type { LeaseDeps } from '../leases/deps.js';
import { HEARTBEAT_MS } from '../leases/pool.js';
import { PoolMembership, StoreHealth, Waker, isFatalStoreError } from './membership.js';
import { reapOrphans } from '../leases/reap.js';
import { sweep } from '../leases/sweep.js';

export interface DaemonOptions {
  /** The longest the daemon sleeps between passes. */
  intervalMs: number;
  /** How often the orphan reaper runs. */
  reapEveryMs: number;
  pool?: string;
  once: boolean;
  signal: AbortSignal;
  /** Who this daemon is, for the pool registry; without it the daemon does not register. */
  member?: Omit<NewPoolMember, 'pool'>;
  /** Called after each pass and heartbeat that both succeeded (the readiness file of `--ready-file`). */
  onHealthy?(): void;
  heartbeatMs?: number;
  /** How long its revocation claims last before another daemon may take them over. */
  claimMs?: number;
}

/**
 * What the loop reports, one typed event at a time; the log, the ready file, the readiness
 * probe and the metrics are observers of them (daemon/observers.ts, daemon/metrics.ts).
 */
export interface DaemonEvent {
  event: 'start' | 'pass' | 'revoked' | 'revoke_failed' | 'reaped' | 'reap_failed' | 'store_unreachable' | 'store_reconnected' | 'stop';
  unreachable?: boolean;
  lease_id?: string;
  path?: string;
  db_user?: string;
  target?: string;
  state?: string;
  error?: string;
  count?: number;
  pool?: string;
  /** How long the store was unreachable. */
  after_ms?: number;
  /** When the next attempt to reach the store is made. */
  retry_ms?: number;
  /** `pass`: how long the pass took; `revoked`: how long after its expiry the lease was revoked. */
  duration_ms?: number;
  delay_ms?: number;
  /** `pass`: leases it ended or could not end. */
  revoked?: number;
  failed?: number;
}

/**
 * A daemon's claims outlast the slowest revocation of a batch (a connect timeout, then five
 * seconds for sessions to end) and are short enough that a daemon killed mid-revocation
 * has its leases taken over by another within half a minute.
 */
export const DAEMON_CLAIM_MS = 30_000;

/**
 * Past the due time but nothing to claim (another daemon took it, or an intent is still in
 * flight): look again this soon rather than spin.
 */
const NOTHING_CLAIMABLE_MS = 200;

/** A reaper pass gives up on servers that have not answered by then. */
const REAP_BUDGET_MS = 60_000;

/**
 * `sy daemon`: revokes leases on time until stopped. It sleeps until the next lease is due
 * (capped by the interval) and wakes early when the store reports a change (SQLite: a
 * write to its files; PostgreSQL: a notification). It registers in the store's pool
 * registry and heartbeats, so that `sy pool list` shows it. When the store cannot be
 * reached it says so once, retries with backoff, and says when it is back; only a store
 * that is tampered with or a key that does not open it ends it (thrown). On abort it
 * finishes the batch in flight, leaves the registry and returns. The orphan reaper runs
 * beside the sweeps, never in front of them: a slow or unreachable server delays no
 * revocation that is due.
 */
export async function runDaemon(deps: LeaseDeps, options: DaemonOptions, log: (event: DaemonEvent) => void): Promise<void> {
  log({ event: 'start', pool: options.pool });
  const { store } = deps;
  const waker = new Waker(options.signal, options.pool);
  const health = new StoreHealth(deps.now, log);
  let passOk = false;
  const membership = options.member && !options.once
    ? new PoolMembership(store.pools, { ...options.member, pool: options.pool }, deps.now, {
      beat: () => {
        // Back: the main loop need not sleep out its backoff.
        if (health.ok()) waker.poke();
        if (passOk) options.onHealthy?.();
      },
      failed: (error) => {
        // A fatal error ends the daemon from its main loop; a lost store is retried there too.
        passOk = false;
        if (isFatalStoreError(error)) waker.fail(error);
        else health.lost(error);
      },
    })
    : undefined;
  const heartbeat = membership ? setInterval(() => void membership.beat(), options.heartbeatMs ?? HEARTBEAT_MS) : undefined;

  let nextReap = 0;
  let reaping: Promise<void> | undefined;
  const reap = async () => {
    const report = await reapOrphans(deps, { budgetMs: REAP_BUDGET_MS }).catch((error: unknown) => {
      log({ event: 'reap_failed', error: error instanceof Error ? error.message : String(error) });
      return undefined;
    });
    if (report && report.reaped > 0) log({ event: 'reaped', count: report.reaped });
    for (const e of report?.errors ?? []) log({ event: 'reap_failed', target: e.target, db_user: e.db_user, error: e.error, unreachable: e.unreachable });
    nextReap = deps.now() + options.reapEveryMs;
    reaping = undefined;
  };

  const pass = async (): Promise<number> => {
    const began = performance.now();
    await waker.watch(store);
    if (membership && !membership.joined) await membership.beat();
    waker.throwIfFailed();
    const due = await store.leases.nextDue(options.pool);
    let revoked = 0;
    if (due !== undefined && due <= deps.now()) {
      const report = await sweep(deps, {
        pool: options.pool,
        claimMs: options.claimMs ?? DAEMON_CLAIM_MS,
        shouldStop: () => options.signal.aborted,
        onOutcome: (o) =>
          log({
            event: o.revoked ? 'revoked' : 'revoke_failed',
            lease_id: o.lease.id,
            path: o.lease.path,
            db_user: o.lease.username,
            target: o.lease.target,
            state: o.lease.state,
            error: o.error,
            delay_ms: o.revoked ? Math.max(0, deps.now() - o.lease.expiresAt) : undefined,
          }),
      });
      revoked = report.revoked + report.failed;
      log({ event: 'pass', duration_ms: Math.round(performance.now() - began), revoked: report.revoked, failed: report.failed });
    } else {
      log({ event: 'pass', duration_ms: Math.round(performance.now() - began), revoked: 0, failed: 0 });
    }
    if (!options.signal.aborted && !reaping && deps.now() >= nextReap) {
      nextReap = Infinity; // until this pass ends
      reaping = reap();
      if (options.once) await reaping;
    }
    const next = await store.leases.nextDue(options.pool);
    const now = deps.now();
    const untilDue = next === undefined ? options.intervalMs : next <= now ? (revoked > 0 ? 0 : NOTHING_CLAIMABLE_MS) : next - now;
    return Math.min(options.intervalMs, untilDue, Math.max(0, nextReap - now));
  };

  try {
    while (!options.signal.aborted) {
      let wait: number;
      try {
        wait = await pass();
        health.ok();
        passOk = true;
        if (!membership || membership.healthy) options.onHealthy?.();
      } catch (error) {
        passOk = false;
        // Whatever else a pass throws is the store (or its database) being away: a restart, a
        // network cut, a lock held too long. A bug would show the same way, and is retried
        // with the same backoff rather than crash-looping.
        if (options.once || isFatalStoreError(error)) throw error;
        wait = health.failed(error);
      }
      if (options.once) break;
      await waker.sleep(Math.max(wait, 10));
    }
  } finally {
    if (heartbeat) clearInterval(heartbeat);
    await reaping;
    await membership?.leave();
    await waker.close();
    log({ event: 'stop' });
  }
}

