import type { Context, OutputFlags } from '../../../cli/context.js';
import { cancelled, failed, usageError } from '../../../errors.js';
import { confirmDestructive } from '../../../io/prompt.js';
import { CLAIM_MS } from '../../../leases/deps.js';
import { revokeClaimed, revokeLease } from '../../../leases/revoke.js';
import { leaseDetails, leaseSummary } from '../../../io/lease-view.js';
import { canonicalPrefix, isUnderPrefix } from '../../../secrets/path.js';
import type { LeaseRecord } from '../../../model/lease.js';
import { leaseDetailsPrintable, leaseListPrintable } from '../shared.js';

export interface RevokeOptions extends OutputFlags {
  prefix?: string;
  force?: boolean;
  yes?: boolean;
}

/**
 * `sy dynamic lease revoke <lease_id> | --prefix P`: drops the users now. Revoking what is
 * already revoked succeeds. `--force` forgets a lease whose target cannot be reached: a
 * destructive act, so like every other one it is confirmed, or needs `--yes`.
 */
export async function revokeLeaseCommand(ctx: Context, leaseId: string | undefined, options: RevokeOptions): Promise<unknown> {
  if ((leaseId === undefined) === (options.prefix === undefined)) {
    throw usageError('missing_lease', 'Give a lease id or --prefix <path>, not both.');
  }
  if (leaseId !== undefined) {
    if (options.force) {
      const confirmed = await confirmDestructive(ctx.io, `Revoke lease ${leaseId}, and forget it if its user cannot be dropped?`, options.yes);
      if (!confirmed) throw cancelled('No lease was revoked.');
    }
    let details;
    if (options.force) {
      const lease = await revokeLease(await ctx.leaseDeps(), leaseId, { force: true });
      details = leaseDetails(lease, Date.now());
    } else {
      const service = await ctx.leases();
      await service.revoke(leaseId);
      details = await service.lookup(leaseId);
    }
    await ctx.print(leaseDetailsPrintable(details), options);
    return details;
  }

  const prefix = canonicalPrefix(options.prefix!);
  const deps = await ctx.leaseDeps();
  // The ledger's pathPrefix is a plain string prefix (SQLite's LIKE even ignores case): a
  // superset, narrowed here to whole segments as written.
  const matching = (await deps.store.leases.list({ pathPrefix: prefix, limit: 1_000_000 })).filter((lease) => isUnderPrefix(lease.path, prefix));
  if (matching.length === 0) {
    ctx.io.notice(`No lease to revoke under ${prefix}.`);
  } else {
    const count = `${matching.length} lease${matching.length === 1 ? '' : 's'}`;
    const forced = options.force ? ', forgetting those whose user cannot be dropped' : '';
    const listing = matching.map((lease) => `${lease.id}  ${lease.path}  ${lease.username}`);
    const confirmed = await confirmDestructive(ctx.io, `Revoke ${count} under ${prefix}${forced}?`, options.yes, listing);
    if (!confirmed) throw cancelled('No lease was revoked.');
  }
  const claimed: LeaseRecord[] = [];
  for (const lease of matching) {
    const mine = await deps.store.leases.claim(lease.id, deps.claimant, deps.now(), CLAIM_MS);
    if (mine) claimed.push(mine);
  }
  const outcomes = await revokeClaimed(deps, claimed, { force: options.force });
  const summaries = outcomes.map((o) => leaseSummary(o.lease));
  await ctx.print(leaseListPrintable(summaries, Date.now()), options);
  const failures = outcomes.filter((o) => !o.revoked && !options.force);
  if (failures.length > 0) {
    throw failed('revoke_failed', `${failures.length} of ${outcomes.length} leases could not be revoked: ${failures[0].error}`, 'They are kept and the sweep will retry; `--force` forgets them.');
  }
  return summaries;
}
