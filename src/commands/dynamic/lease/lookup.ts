import type { Context, OutputFlags } from '../../../cli/context.js';
import { notFound } from '../../../errors.js';
import { leaseDetails, type LeaseDetails } from '../../../io/lease-view.js';
import { leaseDetailsPrintable } from '../shared.js';

/** `sy dynamic lease lookup <lease_id>`: one lease, never its password (sy does not keep it). */
export async function lookupLeaseCommand(ctx: Context, leaseId: string, options: OutputFlags): Promise<LeaseDetails> {
  const lease = await (await ctx.store()).leases.get(leaseId);
  if (!lease) throw notFound('lease_not_found', `No lease with id ${leaseId}.`);
  const details = leaseDetails(lease, Date.now());
  await ctx.print(leaseDetailsPrintable(details), options);
  return details;
}
