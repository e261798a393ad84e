import { CLAIM_MS, type LeaseDeps, STALE_INTENT_MS } from './deps.js';
import { type RevokeOutcome, revokeClaimed } from './revoke.js';

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
  /** Checked between batches: a daemon asked to stop finishes the batch in flight, then returns. */
  shouldStop?(): boolean;
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
 * Revokes what is due: expired active leases, failed revocations whose backoff has passed,
 * claims abandoned by dead processes, and intents that never completed. Batches are
 * claimed atomically, so several sweeps (CLI processes, daemons) never revoke the same
 * lease at once.
 */
export async function sweep(deps: LeaseDeps, options: SweepOptions = {}): Promise<SweepReport> {
  const started = deps.now();
  const report: SweepReport = { revoked: 0, failed: 0, irrevocable: 0, remaining: false, errors: [] };
  // One claim, one connection and a handful of round trips per 1,000 leases: bigger batches
  // cost the server nothing more (one REVOKE per kind of object names them all).
  const batchSize = options.batchSize ?? 1000;
  for (;;) {
    if (options.shouldStop?.()) {
      report.remaining = (await deps.store.leases.nextDue(options.pool) ?? Infinity) <= deps.now();
      break;
    }
    const now = deps.now();
    if (options.budgetMs !== undefined && now - started >= options.budgetMs) {
      report.remaining = (await deps.store.leases.nextDue(options.pool) ?? Infinity) <= now;
      break;
    }
    const claimed = await deps.store.leases.claimDue(
      { now, limit: batchSize, pool: options.pool, staleIntentBefore: now - STALE_INTENT_MS, claimMs: options.claimMs ?? CLAIM_MS },
      deps.claimant,
    );
    if (claimed.length === 0) break;
    const deadline = options.budgetMs === undefined ? undefined : started + options.budgetMs;
    const outcomes = await revokeClaimed(deps, claimed, { connectTimeoutMs: options.connectTimeoutMs, action: 'sweep.revoke', deadline });
    for (const outcome of outcomes) {
      options.onOutcome?.(outcome);
      if (outcome.revoked) {
        report.revoked++;
      } else {
        report.failed++;
        if (outcome.lease.state === 'irrevocable') report.irrevocable++;
        report.errors.push({ lease_id: outcome.lease.id, target: outcome.lease.target, error: outcome.error ?? 'unknown error' });
      }
    }
    // Targets that failed wait for their backoff; stop rather than spin on them.
    if (outcomes.every((o) => !o.revoked)) break;
  }
  return report;
}
