import { CLAIM_MS, type LeaseDeps, STALE_INTENT_MS } from './deps.js';
import type { RevokeOutcome } from './revoke.js';
import { Revoker, type RevokerLimits } from './revoker.js';

export interface SweepOptions {
  /** Stop claiming new batches after this long (the sweep before each command); none for `sy dynamic sweep`. */
  budgetMs?: number;
  pool?: string;
  connectTimeoutMs?: number;
  batchSize?: number;
  /** How long claims last (default CLAIM_MS); the daemon holds shorter ones, so a dead daemon's work is taken over sooner. */
  claimMs?: number;
  /** Called for each lease the sweep settles (the daemon logs them). */
  onOutcome?(outcome: RevokeOutcome): void;
  /** Checked between batches: asked to stop, it claims no more and finishes what it claimed. */
  shouldStop?(): boolean;
  /** How long one target may take (default TARGET_MS). */
  targetMs?: number;
  limits?: Partial<RevokerLimits>;
}

export interface SweepReport {
  revoked: number;
  failed: number;
  irrevocable: number;
  /** Leases still due when the budget ran out. */
  remaining: boolean;
  errors: { lease_id: string; target: string; error: string }[];
}

/**
 * An attempt on one target is given up after this long: a connect timeout (10 s) and a
 * revocation that meets a held lock (5 s) fit; a claim (60 s for a sweep, 30 s for a
 * daemon) outlasts it with a second attempt waiting behind it.
 */
export const TARGET_MS = 14_000;

/**
 * Revokes what was due when it began: expired active leases, failed revocations whose
 * backoff has passed, claims abandoned by dead processes, and intents that never completed.
 * Batches are claimed atomically, so several sweeps (CLI processes, daemons) never revoke
 * the same lease at once. Targets are revoked side by side (revoker.ts), each with its own
 * deadline, and claims go on while a slow one runs: a target that hangs costs the sweep
 * one deadline (or its budget) and delays no other target. Each target is tried once.
 */
export async function sweep(deps: LeaseDeps, options: SweepOptions = {}): Promise<SweepReport> {
  const started = deps.now();
  const report: SweepReport = { revoked: 0, failed: 0, irrevocable: 0, remaining: false, errors: [] };
  // One claim, one connection and a handful of round trips per 1,000 leases: bigger batches
  // cost the server nothing more (one REVOKE per kind of object names them all).
  const batchSize = options.batchSize ?? 1000;
  const claimMs = options.claimMs ?? CLAIM_MS;
  const budgetEnd = options.budgetMs === undefined ? undefined : started + options.budgetMs;
  let storeError: unknown;
  const revoker = new Revoker(deps, {
    targetMs: options.targetMs ?? TARGET_MS,
    connectTimeoutMs: options.connectTimeoutMs,
    deadline: budgetEnd,
    batchSize,
    oneAttemptPerTarget: true,
    action: 'sweep.revoke',
    limits: options.limits,
    onError: (error) => (storeError ??= error),
    onOutcome: (outcome) => {
      options.onOutcome?.(outcome);
      if (outcome.revoked) {
        report.revoked++;
      } else {
        report.failed++;
        if (outcome.lease.state === 'irrevocable') report.irrevocable++;
        report.errors.push({ lease_id: outcome.lease.id, target: outcome.lease.target, error: outcome.error ?? 'unknown error' });
      }
    },
  });
  let cut = false;
  try {
    for (;;) {
      if (options.shouldStop?.() || (budgetEnd !== undefined && deps.now() >= budgetEnd)) {
        cut = true;
        break;
      }
      if (!revoker.hasRoom) {
        await revoker.changed();
        continue;
      }
      // What was due when the sweep began, so that it ends: a retry whose backoff passes
      // meanwhile, or a lease that expires meanwhile, is the next sweep's.
      const claimed = await deps.store.leases.claimDue(
        { now: started, limit: batchSize, pool: options.pool, staleIntentBefore: started - STALE_INTENT_MS, claimMs },
        deps.claimant,
      );
      if (claimed.length === 0) break;
      revoker.add(claimed, started + claimMs);
    }
  } finally {
    // Bounded: each attempt ends by its deadline.
    await revoker.drained();
  }
  if (storeError !== undefined) throw storeError;
  if (cut) report.remaining = (await deps.store.leases.nextDue(options.pool) ?? Infinity) <= deps.now();
  return report;
}
