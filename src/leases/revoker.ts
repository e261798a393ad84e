import type { LeaseRecord } from '../model/lease.js';
import type { LeaseDeps } from './deps.js';
import { groupKey, revokeGroup, type RevokeOutcome, settleGroup } from './revoke.js';

/** How the sweeps and the daemon run the revocations they claimed. */
export interface RevokerOptions {
  /** An attempt on one target is given up this long after it began (its own deadline). */
  targetMs: number;
  connectTimeoutMs?: number;
  /** No attempt runs past this instant (the pre-command sweep's budget). */
  deadline?: number;
  /** The most leases in one attempt. */
  batchSize: number;
  /**
   * One-shot sweeps: a target whose attempt failed whole is not tried again; the leases
   * claimed for it later share that failure. The daemon tries each time.
   */
  oneAttemptPerTarget: boolean;
  /** Recorded in the audit log. */
  action: string;
  onOutcome?(outcome: RevokeOutcome): void;
  /** The store refused a settlement: those leases keep their claims until the claims lapse and are taken over. */
  onError?(error: unknown): void;
  /** An attempt ended or turned slow: there may be room to claim again. */
  onChange?(): void;
  limits?: Partial<RevokerLimits>;
}

export interface RevokerLimits {
  /** Attempts that began less than `slowAfterMs` ago: the lane that healthy targets go through. */
  young: number;
  /** Attempts in flight in all, the slow ones included. */
  total: number;
  slowAfterMs: number;
  /** Leases claimed to wait behind their own target's attempt in flight. */
  queued: number;
}

/**
 * A healthy target answers within a second: an attempt older than that stops counting
 * against the eight young ones, so up to 56 targets may hang at once without delaying the
 * others, and no more than 64 connections are ever open.
 */
const DEFAULT_LIMITS = { young: 8, total: 64, slowAfterMs: 1_000 };

/** An attempt is not started with less time left on its leases' claims than this. */
const CLAIM_MARGIN_MS = 1_000;

interface TargetQueue {
  /** Claimed leases waiting for this target's next attempt, each with when its claim lapses. */
  waiting: { lease: LeaseRecord; claimedUntil: number }[];
  running: boolean;
  /** Why its last attempt failed whole (kept for one-shot sweeps). */
  failure?: unknown;
}

/**
 * Revocations that run side by side, so a slow or dead target never delays the leases of
 * another. Claimed leases are grouped by target (server, database, recipe); each target
 * has at most one attempt in flight, with its own deadline, and leases claimed for it
 * meanwhile wait for that attempt: they share its failure when the target could not be
 * used at all (it was just tried), or go in its next attempt. Attempts are bounded (see
 * RevokerLimits) and new ones go first to the targets that have waited longest.
 */
export class Revoker {
  private readonly targets = new Map<string, TargetQueue>();
  private readonly limits: RevokerLimits;
  private young = 0;
  private inFlight = 0;
  private queuedLeases = 0;
  private changeWaiters: (() => void)[] = [];

  constructor(
    private readonly deps: LeaseDeps,
    private readonly options: RevokerOptions,
  ) {
    this.limits = { ...DEFAULT_LIMITS, queued: options.batchSize, ...options.limits };
  }

  /** Whether more may be claimed now: nothing waits for a free attempt, and little behind targets in flight. */
  get hasRoom(): boolean {
    return this.waitingForSlot() === 0 && this.queuedLeases < this.limits.queued;
  }

  /** Nothing in flight and nothing waiting. */
  get idle(): boolean {
    return this.inFlight === 0 && this.queuedLeases === 0;
  }

  /** Leases this process claimed (until `claimedUntil`) and is now to revoke. */
  add(claimed: LeaseRecord[], claimedUntil: number): void {
    for (const lease of claimed) {
      const key = groupKey(lease);
      let target = this.targets.get(key);
      if (!target) {
        target = { waiting: [], running: false };
        this.targets.set(key, target);
      }
      target.waiting.push({ lease, claimedUntil });
      this.queuedLeases++;
    }
    this.pump();
  }

  /** Resolves when an attempt ends or turns slow (at once when nothing is in flight). */
  changed(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.changeWaiters.push(resolve));
  }

  /** Resolves once every lease added has been settled or given up. */
  async drained(): Promise<void> {
    while (!this.idle) await this.changed();
  }

  private waitingForSlot(): number {
    let count = 0;
    for (const target of this.targets.values()) if (!target.running) count += target.waiting.length;
    return count;
  }

  /** Starts what may start: one attempt per target, within the limits. */
  private pump(): void {
    for (const [key, target] of this.targets) {
      if (target.running) continue;
      if (target.waiting.length === 0) {
        if (target.failure === undefined) this.targets.delete(key);
        continue;
      }
      // A target known not to answer costs no connection: its leases share the failure.
      const known = this.options.oneAttemptPerTarget ? target.failure : undefined;
      if (known === undefined && (this.young >= this.limits.young || this.inFlight >= this.limits.total)) continue;
      const batch = target.waiting.splice(0, this.options.batchSize);
      this.queuedLeases -= batch.length;
      // Leave the target where it was in the order only while it still has leases waiting.
      this.targets.delete(key);
      this.targets.set(key, target);
      this.start(target, batch, known);
    }
  }

  private start(target: TargetQueue, batch: TargetQueue['waiting'], known: unknown): void {
    target.running = true;
    this.inFlight++;
    const connects = known === undefined;
    if (connects) this.young++;
    let isYoung = connects;
    const slow = connects
      ? setTimeout(() => {
        isYoung = false;
        this.young--;
        this.pump();
        this.notify();
      }, this.limits.slowAfterMs)
      : undefined;
    slow?.unref?.();
    void this.attempt(target, batch, known)
      .catch((error: unknown) => this.options.onError?.(error))
      .finally(() => {
        clearTimeout(slow);
        if (isYoung) this.young--;
        this.inFlight--;
        target.running = false;
        this.pump();
        this.notify();
      });
  }

  /** An attempt ended or turned slow: whoever waits for room looks again. */
  private notify(): void {
    const waiters = this.changeWaiters;
    this.changeWaiters = [];
    for (const wake of waiters) wake();
    this.options.onChange?.();
  }

  private async attempt(target: TargetQueue, batch: TargetQueue['waiting'], known: unknown): Promise<void> {
    const leases = batch.map((b) => b.lease);
    let result;
    if (known !== undefined) {
      result = { errors: new Map<string, unknown>(leases.map((l) => [l.id, known])), whole: known };
    } else {
      const now = this.deps.now();
      const claimsLapse = Math.min(...batch.map((b) => b.claimedUntil)) - CLAIM_MARGIN_MS;
      // Their claims have all but lapsed (a long wait behind a slow target): whoever claims them next revokes them.
      if (claimsLapse <= now) return;
      // Its own deadline, within the command's budget and the claims it holds.
      const budget = this.options.deadline ?? Infinity;
      const deadline = Math.min(now + this.options.targetMs, budget, claimsLapse);
      const deadlineReason = deadline === budget ? undefined : seconds(deadline - now);
      result = await revokeGroup(this.deps, leases, { connectTimeoutMs: this.options.connectTimeoutMs, deadline, deadlineReason });
    }
    if (result.whole !== undefined) {
      if (this.options.oneAttemptPerTarget) target.failure = result.whole;
      // Leases that came due while the target was being tried share its failure: it was just tried.
      const behind = target.waiting.splice(0);
      this.queuedLeases -= behind.length;
      for (const b of behind) {
        leases.push(b.lease);
        result.errors.set(b.lease.id, result.whole);
      }
    }
    const outcomes = await settleGroup(this.deps, leases, result.errors, { action: this.options.action });
    for (const outcome of outcomes) this.options.onOutcome?.(outcome);
  }
}

const seconds = (ms: number): string => `${Number((ms / 1000).toFixed(ms < 10_000 ? 1 : 0))} s`;
