import type { Context, OutputFlags } from '../../cli/context.js';
import { failed } from '../../errors.js';
import { keyValueTable } from '../../io/format.js';
import { reapOrphans } from '../../leases/reap.js';
import { sweep } from '../../leases/sweep.js';

/** `sy dynamic sweep`: revoke everything that is due now, with no time budget, and report. */
export async function sweepCommand(ctx: Context, options: OutputFlags & { pool?: string; reap?: boolean }) {
  const deps = await ctx.leaseDeps();
  const report = await sweep(deps, { pool: options.pool });
  const reap = options.reap === false ? undefined : await reapOrphans(deps);
  const counts = await deps.store.leases.countByState(options.pool);
  const result = { ...report, irrevocable_total: counts.irrevocable ?? 0, reaped: reap?.reaped ?? 0, reap_errors: reap?.errors ?? [] };
  await ctx.print({ value: result, table: () => keyValueTable({ ...result, errors: report.errors.length, reap_errors: result.reap_errors.length }) }, options);
  const unreachable = [...new Set(reap?.errors.filter((e) => e.unreachable).map((e) => e.target) ?? [])];
  if (unreachable.length > 0) ctx.io.warn(`sy: the orphan reaper could not reach ${unreachable.join(', ')}.`);
  for (const e of reap?.errors.filter((e) => !e.unreachable) ?? []) {
    ctx.io.warn(`sy: the orphan reaper could not drop ${e.db_user ?? 'the orphans'} on ${e.target}: ${e.error}`);
  }
  if (report.failed > 0) {
    const first = report.errors[0];
    throw failed('sweep_incomplete', `${report.failed} revocation${report.failed === 1 ? '' : 's'} failed (first: ${first.target}: ${first.error}).`, 'They are kept and retried with backoff.');
  }
  if (reap && reap.errors.length > 0) {
    throw failed('reap_incomplete', `The orphan reaper left ${reap.errors.length} problem${reap.errors.length === 1 ? '' : 's'} unresolved (see above); the sweep itself completed.`);
  }
  return result;
}
