import { failed, notFound } from '../errors.js';
import { kindOf, parseDynamicRecipe } from '../secrets/validate.js';
import { MAX_LEASE_SECONDS, DEFAULT_LEASE_SECONDS } from '../model/secret.js';
import type { LeaseRecord } from '../model/lease.js';
import type { Engine } from '../model/engines.js';
import type { Target } from '../targets/target.js';
import { revocationConnection } from './connection.js';
import { CONNECT_TIMEOUT_MS, type LeaseDeps } from './deps.js';
import { errorText, resolveTtl } from './issue.js';
import { isoSeconds } from '../util/time.js';

export interface RenewResult {
  lease: LeaseRecord;
  /** True when the increment was cut to the lease's max TTL. */
  capped: boolean;
  /** True when the lease already ran at least as long as asked: its expiry was kept. */
  unchanged: boolean;
}

/**
 * Extends a lease from now by `incrementSeconds` (default: the secret's ttl), capped at the max
 * TTL fixed when it was issued. As in Vault, renewing never shortens a lease: an increment
 * that would end it sooner keeps the current expiry and touches nothing. An expired lease
 * stays expired (its user may already be gone, and the sweep is due to drop it). The
 * target's expiry moves first (VALID UNTIL), then the ledger, only if the lease is still
 * active: a concurrent revoke wins.
 */
export async function renewLease(deps: LeaseDeps, leaseId: string, incrementSeconds?: number): Promise<RenewResult> {
  const lease = await deps.store.leases.get(leaseId);
  if (!lease) throw notFound('lease_not_found', `No lease with id ${leaseId}.`);
  if (lease.state !== 'active') {
    throw failed('lease_not_active', `Lease ${leaseId} is ${lease.state} and cannot be renewed.`);
  }
  const seconds = resolveTtl(incrementSeconds, await defaultIncrement(deps, lease), MAX_LEASE_SECONDS);
  const now = deps.now();
  // The max TTL is never before the expiry, so this also covers a lease past its max TTL.
  if (now >= lease.expiresAt) {
    throw failed('lease_expired', `Lease ${leaseId} expired at ${isoSeconds(lease.expiresAt)} and cannot be renewed.`);
  }
  const wanted = now + seconds * 1000;
  const expiresAt = Math.min(wanted, lease.maxExpiresAt);
  const audit = { action: 'lease.renew', actor: deps.actor, path: lease.path, lease_id: lease.id, db_user: lease.username, target: lease.target, ttl: Math.round((expiresAt - now) / 1000) };
  if (expiresAt <= lease.expiresAt) {
    await deps.store.audit.append([{ ...audit, ttl: Math.round((lease.expiresAt - now) / 1000), outcome: 'success', detail: { unchanged: true } }]);
    return { lease, capped: expiresAt < wanted, unchanged: true };
  }

  let client: Target | undefined;
  try {
    const connection = await revocationConnection(deps.store, lease);
    deps.progress?.(`Renewing ${lease.username} on ${connection.host}:${connection.port}`);
    client = await deps.connect(connection, { connectTimeoutMs: CONNECT_TIMEOUT_MS });
    await client.renewUser(lease.username, new Date(expiresAt));
  } catch (error) {
    await deps.store.audit.append([{ ...audit, outcome: 'failure', error: errorText(error) }]);
    const current = await deps.store.leases.get(leaseId);
    if (current && current.state !== 'active') {
      throw failed('lease_not_active', `Lease ${leaseId} was ${current.state} while it was being renewed.`);
    }
    throw error;
  } finally {
    await client?.close().catch(() => undefined);
  }
  const renewed = await deps.store.leases.transition(leaseId, ['active'], 'active', { expiresAt });
  if (!renewed) {
    await deps.store.audit.append([{ ...audit, outcome: 'failure', error: 'revoked while renewing' }]);
    throw failed('lease_not_active', `Lease ${leaseId} was revoked while it was being renewed.`);
  }
  await deps.store.audit.append([{ ...audit, outcome: 'success' }]);
  return { lease: renewed, capped: expiresAt < wanted, unchanged: false };
}

async function defaultIncrement(deps: LeaseDeps, lease: LeaseRecord): Promise<number> {
  const secret = await deps.store.secrets.get({ id: lease.secretId });
  if (secret && kindOf(secret.attributes) === 'dynamic') {
    try {
      return parseDynamicRecipe(secret.attributes, secret.data, lease.engine as Engine).ttl;
    } catch {
      // The secret changed shape; fall back to the default.
    }
  }
  return DEFAULT_LEASE_SECONDS;
}
