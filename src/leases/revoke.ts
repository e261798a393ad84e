import { failed, notFound } from '../errors.js';
import { ENDED_LEASE_STATES, type LeaseRecord } from '../model/lease.js';
import type { RevokeResult, Target } from '../targets/target.js';
import { revocationConnection, sealedUsername } from './connection.js';
import { CLAIM_MS, CONNECT_TIMEOUT_MS, type LeaseDeps, MAX_ATTEMPTS, retryDelayMs } from './deps.js';
import { errorText } from './issue.js';

export interface RevokeOutcome {
  lease: LeaseRecord;
  revoked: boolean;
  error?: string;
}

export interface RevokeRunOptions {
  force?: boolean;
  connectTimeoutMs?: number;
  action?: string;
  /** Give up on the server at this instant (the pre-command sweep's budget): the leases are retried later. */
  deadline?: number;
}

/**
 * Revokes leases this process has claimed, one admin connection and one batched
 * revocation per target and recipe. Each lease is settled on its own from what the target
 * saw afterwards: revoked only when its user is gone, otherwise back to `failed` with a
 * backoff (`irrevocable` after MAX_ATTEMPTS), or `forgotten` with `force`.
 */
export async function revokeClaimed(deps: LeaseDeps, claimed: LeaseRecord[], options: RevokeRunOptions = {}): Promise<RevokeOutcome[]> {
  const groups = new Map<string, LeaseRecord[]>();
  for (const lease of claimed) {
    const { connection, revocationStatements, reassignTo } = lease.revocation;
    const where = [connection.engine, connection.host, connection.port, connection.database];
    const key = JSON.stringify([where, revocationStatements ?? null, reassignTo ?? null]);
    const group = groups.get(key);
    if (group) group.push(lease);
    else groups.set(key, [lease]);
  }
  // Targets are revoked in parallel (a few at a time), so one that hangs until its connect
  // timeout delays the others by nothing and the sweep's budget holds.
  const perGroup = await mapConcurrently([...groups.values()], PARALLEL_TARGETS, async (leases) => {
    const errors = await revokeGroup(deps, leases, options);
    return settleGroup(deps, leases, errors, options);
  });
  return perGroup.flat();
}

/** One revocation on one server; the error of each lease whose user is not seen gone. */
async function revokeGroup(deps: LeaseDeps, leases: LeaseRecord[], options: RevokeRunOptions): Promise<Map<string, unknown>> {
  const controller = new AbortController();
  const timer = options.deadline === undefined ? undefined : setTimeout(() => controller.abort(), Math.max(0, options.deadline - deps.now()));
  let client: Target | undefined;
  const errors = new Map<string, unknown>();
  try {
    const connection = await revocationConnection(deps.store, leases[0]);
    const usernames = leases.map(sealedUsername);
    deps.progress?.(`Revoking ${usernames.length === 1 ? usernames[0] : `${usernames.length} users`} on ${connection.host}:${connection.port}`);
    const work = (async (): Promise<RevokeResult> => {
      client = await deps.connect(connection, { connectTimeoutMs: options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS, signal: controller.signal });
      const { revocationStatements, reassignTo } = leases[0].revocation;
      return client.revokeUsers(usernames, { revocationStatements, reassignTo });
    })();
    work.catch(() => undefined); // once the budget has run out, its late failure is of no interest
    const result = await Promise.race([work, aborted(controller.signal, connection.host, connection.port)]);
    const byUser = new Map(result.failed.map((f) => [f.username, f.error]));
    for (const lease of leases) {
      const error = byUser.get(sealedUsername(lease));
      if (error !== undefined) errors.set(lease.id, error);
    }
  } catch (error) {
    for (const lease of leases) errors.set(lease.id, error);
  } finally {
    if (timer) clearTimeout(timer);
    await client?.close().catch(() => undefined);
  }
  return errors;
}

function aborted(signal: AbortSignal, host: string, port: number): Promise<never> {
  return new Promise((_resolve, reject) => {
    const fail = () => reject(failed('revoke_timeout', `The revocation on ${host}:${port} did not finish within this command's budget; it is retried later.`));
    if (signal.aborted) fail();
    else signal.addEventListener('abort', fail, { once: true });
  });
}

const PARALLEL_TARGETS = 8;

export async function mapConcurrently<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
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
async function settleGroup(deps: LeaseDeps, leases: LeaseRecord[], errors: Map<string, unknown>, options: RevokeRunOptions): Promise<RevokeOutcome[]> {
  const now = deps.now();
  const plans = leases.map((lease) => {
    const caught = errors.get(lease.id);
    if (caught === undefined) {
      return { lease, to: 'revoked' as const, changes: { endedAt: now, lastError: null, nextAttemptAt: null }, outcome: 'success' as const };
    }
    const message = errorText(caught);
    if (options.force) {
      return { lease, to: 'forgotten' as const, changes: { endedAt: now, lastError: message }, outcome: 'failure' as const, message, error: `forgotten with --force: ${message}` };
    }
    const attempts = lease.attempts + 1;
    const to = attempts >= MAX_ATTEMPTS ? ('irrevocable' as const) : ('failed' as const);
    return { lease, to, changes: { attempts, nextAttemptAt: now + retryDelayMs(attempts), lastError: message }, outcome: 'failure' as const, message, error: message, detail: { attempts, state: to } };
  });
  const settled = await deps.store.leases.settleAll(deps.claimant, plans.map((p) => ({ id: p.lease.id, to: p.to, changes: p.changes })));
  // A lease whose claim ran out while this process worked was taken over by another, which
  // records its own outcome: each revocation is in the log once, by the one that settled it.
  await deps.store.audit.append(
    plans.filter((_p, i) => settled[i] !== undefined).map((p) => ({
      action: options.action ?? 'lease.revoke',
      actor: deps.actor,
      path: p.lease.path,
      lease_id: p.lease.id,
      db_user: sealedUsername(p.lease),
      target: p.lease.target,
      outcome: p.outcome,
      error: p.error,
      detail: p.detail,
    })),
  );
  return plans.map((p, i) => {
    if (p.to === 'forgotten') deps.warn?.(`Forgot lease ${p.lease.id} without revoking it: ${sealedUsername(p.lease)} may remain on ${p.lease.target}.`);
    return { lease: settled[i] ?? p.lease, revoked: p.outcome === 'success', error: p.message };
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
