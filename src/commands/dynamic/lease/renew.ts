import type { Context, OutputFlags } from '../../../cli/context.js';
import { renewLease } from '../../../leases/renew.js';
import { leaseDetails, type LeaseDetails } from '../../../leases/view.js';
import { leaseDetailsPrintable } from '../shared.js';

/** `sy dynamic lease renew <lease_id> [--increment T]`: extend from now, capped at the max TTL. */
export async function renewLeaseCommand(ctx: Context, leaseId: string, options: OutputFlags & { increment?: string }): Promise<LeaseDetails> {
  const deps = await ctx.leaseDeps();
  const { lease, capped } = await renewLease(deps, leaseId, options.increment);
  if (capped) deps.warn?.(`The lease was extended only to its max TTL (${new Date(lease.maxExpiresAt).toISOString()}).`);
  const details = leaseDetails(lease, Date.now());
  await ctx.print(leaseDetailsPrintable(details), options);
  return details;
}
