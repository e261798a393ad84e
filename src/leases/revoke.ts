import { failed, notFound } from '../errors.js';
import { ENDED_LEASE_STATES, type LeaseRecord } from '../store/store.js';
import type { Target } from '../targets/target.js';
import { revocationConnection } from './connection.js';
import { CLAIM_MS, CONNECT_TIMEOUT_MS, type LeaseDeps, MAX_ATTEMPTS, retryDelayMs } from './deps.js';
import { errorText } from './issue.js';

export interface RevokeOutcome {
  lease: LeaseRecord;
  revoked: boolean;
  error?: string;
}

/**
 * Revokes leases this process has claimed, one admin connection and one batched
 * revocation per target and recipe. Each lease is settled on its own: revoked, or back to
 * `failed` with a backoff (`irrevocable` after MAX_ATTEMPTS), or `forgotten` with `force`.
 */
export async function revokeClaimed(
  deps: LeaseDeps,
  claimed: LeaseRecord[],
  options: { force?: boolean; connectTimeoutMs?: number; action?: string } = {},
): Promise<RevokeOutcome[]> {
  const groups = new Map<string, LeaseRecord[]>();
  for (const lease of claimed) {
    const key = `${lease.baseId}\u0000${JSON.stringify(lease.revocation.revocationStatements ?? null)}`;
    const group = groups.get(key);
    if (group) group.push(lease);
    else groups.set(key, [lease]);
  }
  // Targets are revoked in parallel (a few at a time), so one that hangs until its connect
  // timeout delays the others by nothing and the sweep's budget holds.
  const perGroup = await mapConcurrently([...groups.values()], PARALLEL_TARGETS, async (leases) => {
    let client: Target | undefined;
    let error: unknown;
    try {
      const connection = await revocationConnection(deps.store, leases[0]);
      deps.progress?.(`Revoking ${leases.length === 1 ? leases[0].username : `${leases.length} users`} on ${connection.host}:${connection.port}`);
      client = await deps.connect(connection, { connectTimeoutMs: options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS });
      await client.revokeUsers(leases.map((l) => l.username), leases[0].revocation.revocationStatements);
    } catch (caught) {
      error = caught;
    } finally {
      await client?.close().catch(() => undefined);
    }
    return settleGroup(deps, leases, error, options);
  });
  return perGroup.flat();
}

const PARALLEL_TARGETS = 8;

async function mapConcurrently<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/**
 * Settles a group that shared one revocation attempt: one ledger transaction and one audit
 * append for the whole group, so a sweep of thousands of leases is not a thousand fsyncs.
 */
async function settleGroup(deps: LeaseDeps, leases: LeaseRecord[], error: unknown, options: { force?: boolean; action?: string }): Promise<RevokeOutcome[]> {
  const now = deps.now();
  const message = error === undefined ? undefined : errorText(error);
  const plans = leases.map((lease) => {
    if (message === undefined) {
      return { lease, to: 'revoked' as const, changes: { endedAt: now, lastError: null, nextAttemptAt: null }, outcome: 'success' as const };
    }
    if (options.force) {
      return { lease, to: 'forgotten' as const, changes: { endedAt: now, lastError: message }, outcome: 'failure' as const, error: `forgotten with --force: ${message}` };
    }
    const attempts = lease.attempts + 1;
    const to = attempts >= MAX_ATTEMPTS ? ('irrevocable' as const) : ('failed' as const);
    return { lease, to, changes: { attempts, nextAttemptAt: now + retryDelayMs(attempts), lastError: message }, outcome: 'failure' as const, error: message, detail: { attempts, state: to } };
  });
  const settled = await deps.store.leases.settleAll(deps.claimant, plans.map((p) => ({ id: p.lease.id, to: p.to, changes: p.changes })));
  deps.audit.appendAll(
    plans.map((p) => ({
      action: options.action ?? 'lease.revoke',
      path: p.lease.path,
      lease_id: p.lease.id,
      db_user: p.lease.username,
      target: p.lease.target,
      outcome: p.outcome,
      error: p.error,
      detail: p.detail,
    })),
  );
  return plans.map((p, i) => {
    if (p.to === 'forgotten') deps.warn?.(`Forgot lease ${p.lease.id} without revoking it: ${p.lease.username} may remain on ${p.lease.target}.`);
    return { lease: settled[i] ?? p.lease, revoked: message === undefined, error: message };
  });
}

/**
 * `lease revoke <id>`: idempotent. When another process holds the claim, waits for it to
 * finish rather than revoking twice.
 */
export async function revokeLease(deps: LeaseDeps, leaseId: string, options: { force?: boolean } = {}): Promise<LeaseRecord> {
  const deadline = deps.now() + 15_000;
  for (;;) {
    const lease = await deps.store.leases.get(leaseId);
    if (!lease) throw notFound('lease_not_found', `No lease with id ${leaseId}.`);
    if (ENDED_LEASE_STATES.includes(lease.state)) return lease;
    const claimed = await deps.store.leases.claim(leaseId, deps.claimant, deps.now(), CLAIM_MS);
    if (claimed) {
      const [outcome] = await revokeClaimed(deps, [claimed], options);
      if (!outcome.revoked && !options.force) {
        throw failed('revoke_failed', `Could not revoke lease ${leaseId}: ${outcome.error}`, 'The lease is kept and the sweep will retry; `--force` forgets it.');
      }
      return outcome.lease;
    }
    if (deps.now() > deadline) {
      throw failed('revoke_busy', `Lease ${leaseId} is being revoked by another sy process.`, 'Check again with `sy dynamic lease lookup`.');
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
