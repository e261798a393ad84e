import type { Context, OutputFlags } from '../../../cli/context.js';
import { seconds } from '../../../cli/flags.js';
import type { LeaseDetails } from '../../../io/lease-view.js';
import { leaseDetailsPrintable } from '../shared.js';

/**
 * `sy dynamic lease renew <lease_id> [--increment T]`: extend from now, capped at the max TTL.
 * A renewal that would shorten the lease keeps it as it is and exits 0, as Vault does, with
 * a notice: a script that renews on a timer must not fail because it renewed early.
 */
export async function renewLeaseCommand(ctx: Context, leaseId: string, options: OutputFlags & { increment?: string }): Promise<LeaseDetails> {
  const increment = seconds(options.increment, '--increment');
  const { lease, capped, unchanged } = await (await ctx.leases()).renew(leaseId, increment);
  ctx.stopSpinner();
  if (unchanged) {
    const why = lease.expires_at >= lease.max_expires_at ? 'its max TTL' : 'later than the increment asked for';
    ctx.io.notice(`Lease ${lease.lease_id} already runs until ${lease.expires_at}, ${why}; its expiry is unchanged.`);
  } else if (capped) {
    ctx.io.warn(`warning: The lease was extended only to its max TTL (${lease.max_expires_at}).`);
  }
  await ctx.print(leaseDetailsPrintable(lease), options);
  return lease;
}
