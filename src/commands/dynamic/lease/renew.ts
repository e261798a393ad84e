import type { Context, OutputFlags } from '../../../cli/context.js';
import { seconds } from '../../../cli/flags.js';
import { leaseDetails, type LeaseDetails } from '../../../io/lease-view.js';
import { renewLease } from '../../../leases/renew.js';
import { leaseDetailsPrintable } from '../shared.js';
import { isoSeconds } from '../../../util/time.js';

/**
 * `sy dynamic lease renew <lease_id> [--increment T]`: extend from now, capped at the max TTL.
 * A renewal that would shorten the lease keeps it as it is and exits 0, as Vault does, with
 * a notice: a script that renews on a timer must not fail because it renewed early.
 */
export async function renewLeaseCommand(ctx: Context, leaseId: string, options: OutputFlags & { increment?: string }): Promise<LeaseDetails> {
  const increment = seconds(options.increment, '--increment');
  const deps = await ctx.leaseDeps();
  const { lease, capped, unchanged } = await renewLease(deps, leaseId, increment);
  if (unchanged) {
    const why = lease.expiresAt >= lease.maxExpiresAt ? 'its max TTL' : 'later than the increment asked for';
    ctx.io.notice(`Lease ${lease.id} already runs until ${isoSeconds(lease.expiresAt)}, ${why}; its expiry is unchanged.`);
  } else if (capped) {
    deps.warn?.(`The lease was extended only to its max TTL (${new Date(lease.maxExpiresAt).toISOString()}).`);
  }
  const details = leaseDetails(lease, Date.now());
  await ctx.print(leaseDetailsPrintable(details), options);
  return details;
}
