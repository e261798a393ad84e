import type { Context, OutputFlags } from '../../../cli/context.js';
import { usageError } from '../../../errors.js';
import { leaseSummary, type LeaseSummary } from '../../../leases/view.js';
import { canonicalPath, isUuid } from '../../../secrets/path.js';
import { leaseListPrintable } from '../shared.js';

export interface LeaseListOptions extends OutputFlags {
  recordUid?: string;
  path?: string;
  all?: boolean;
  limit?: string;
  offset?: string;
}

/** `sy dynamic lease list`: active leases (with --all, ended ones too), oldest first, paged. */
export async function listLeasesCommand(ctx: Context, options: LeaseListOptions): Promise<LeaseSummary[]> {
  if (options.recordUid !== undefined && !isUuid(options.recordUid)) {
    throw usageError('invalid_record_uid', '--record-uid must be the id (a UUID) of a dynamic secret.');
  }
  const limit = wholeNumber(options.limit, '--limit', 1000, 1);
  const offset = wholeNumber(options.offset, '--offset', 0, 0);
  const store = await ctx.store();
  const leases = await store.leases.list({
    secretId: options.recordUid?.toLowerCase(),
    path: options.path === undefined ? undefined : canonicalPath(options.path),
    all: Boolean(options.all),
    limit,
    offset,
  });
  const summaries = leases.map(leaseSummary);
  await ctx.print(leaseListPrintable(summaries, Date.now()), options);
  return summaries;
}

export function wholeNumber(value: string | undefined, flag: string, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) < min) throw usageError('invalid_number', `${flag} must be a whole number of ${min} or more.`);
  return Number(value);
}
