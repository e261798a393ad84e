import type { Context, OutputFlags } from '../../../cli/context.js';
import { recordUid, wholeNumber } from '../../../cli/flags.js';
import type { LeaseSummary } from '../../../io/lease-view.js';
import { canonicalPath } from '../../../secrets/path.js';
import { leaseListPrintable } from '../shared.js';

export interface LeaseListOptions extends OutputFlags {
  recordUid?: string;
  path?: string;
  all?: boolean;
  limit?: string;
  offset?: string;
}

/** `sy dynamic lease list`: active leases (with --all, ended ones too), oldest first, paged; a client sees its own. */
export async function listLeasesCommand(ctx: Context, options: LeaseListOptions): Promise<LeaseSummary[]> {
  const secretId = recordUid(options.recordUid);
  const limit = wholeNumber(options.limit, '--limit', { min: 1 }) ?? 1000;
  const offset = wholeNumber(options.offset, '--offset', { min: 0 }) ?? 0;
  const path = options.path === undefined ? undefined : canonicalPath(options.path);
  const summaries = await (await ctx.leases()).list({ recordUid: secretId, path, all: Boolean(options.all), limit, offset });
  await ctx.print(leaseListPrintable(summaries, Date.now()), options);
  return summaries;
}
