import type { Context, OutputFlags } from '../../../cli/context.js';
import type { LeaseDetails } from '../../../io/lease-view.js';
import { leaseDetailsPrintable } from '../shared.js';

/** `sy dynamic lease lookup <lease_id>`: one lease, never its password (sy does not keep it). */
export async function lookupLeaseCommand(ctx: Context, leaseId: string, options: OutputFlags): Promise<LeaseDetails> {
  const details = await (await ctx.leases()).lookup(leaseId);
  await ctx.print(leaseDetailsPrintable(details), options);
  return details;
}
