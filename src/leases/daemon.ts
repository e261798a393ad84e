import { type FSWatcher, watch } from 'node:fs';
import type { LeaseDeps } from './deps.js';
import { reapOrphans } from './reap.js';
import { sweep } from './sweep.js';

export interface DaemonOptions {
  /** The longest the daemon sleeps between passes. */
  intervalMs: number;
  /** How often the orphan reaper runs. */
  reapEveryMs: number;
  pool?: string;
  once: boolean;
  signal: AbortSignal;
  /** SY_HOME: a write to the store wakes the daemon, so a new short lease is not missed. */
  watchDir?: string;
}

export interface DaemonEvent {
  event: 'start' | 'revoked' | 'revoke_failed' | 'reaped' | 'reap_failed' | 'stop';
  unreachable?: boolean;
  lease_id?: string;
  path?: string;
  db_user?: string;
  target?: string;
  state?: string;
  error?: string;
  count?: number;
  pool?: string;
}

/**
 * `sy daemon`: revokes leases on time until stopped. It sleeps until the next lease is due
 * (capped by the interval) and wakes early when another process writes the store. On abort
 * it finishes the batch in flight and returns. The orphan reaper runs beside the sweeps,
 * never in front of them: a slow or unreachable server delays no revocation that is due.
 */
export async function runDaemon(deps: LeaseDeps, options: DaemonOptions, log: (event: DaemonEvent) => void): Promise<void> {
  log({ event: 'start', pool: options.pool });
  const waker = new Waker(options.watchDir);
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
  try {
    while (!options.signal.aborted) {
      const due = await deps.store.leases.nextDue(options.pool);
      if (due !== undefined && due <= deps.now()) {
        await sweep(deps, {
          pool: options.pool,
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
            }),
        });
      }
      if (!options.signal.aborted && !reaping && deps.now() >= nextReap) {
        nextReap = Infinity; // until this pass ends
        reaping = reap();
        if (options.once) await reaping;
      }
      if (options.once) break;
      const next = await deps.store.leases.nextDue(options.pool);
      const wait = Math.min(options.intervalMs, next === undefined ? options.intervalMs : Math.max(0, next - deps.now()), Math.max(0, nextReap - deps.now()));
      await waker.sleep(Math.max(wait, 10), options.signal);
    }
  } finally {
    await reaping;
    waker.close();
    log({ event: 'stop' });
  }
}

/** A reaper pass gives up on servers that have not answered by then. */
const REAP_BUDGET_MS = 60_000;

class Waker {
  private watcher?: FSWatcher;
  private wake?: () => void;

  constructor(dir: string | undefined) {
    if (!dir) return;
    try {
      this.watcher = watch(dir, (_type, file) => {
        if (file && String(file).startsWith('sy.db')) this.wake?.();
      });
    } catch {
      // Without a watcher the interval still bounds the delay.
    }
  }

  sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done);
      this.wake = done;
    });
  }

  close(): void {
    this.watcher?.close();
  }
}
