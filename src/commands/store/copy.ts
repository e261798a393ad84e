import type { Context, OutputFlags } from '../../cli/context.js';
import { usageError } from '../../errors.js';
import { keyValueTable } from '../../io/format.js';
import { withPassphraseTries } from '../../io/prompt.js';
import { leaseCounts } from './info.js';

export interface StoreCopyOptions extends OutputFlags {
  to?: string;
}

/**
 * `sy store copy --to URL|DIR`: copies the whole store into an empty one, keeping its key,
 * and says what it copied (as the destination counts it).
 */
export async function storeCopyCommand(ctx: Context, options: StoreCopyOptions) {
  if (!options.to) throw usageError('missing_destination', '--to is required: a postgresql:// URL or a directory.');
  const to = options.to;
  const [{ copyStore }, { defaultActor }] = await Promise.all([import('../../store/copy.js'), import('../../audit/actor.js')]);
  const report = await withPassphraseTries(ctx.io, (ask) =>
    copyStore(() => ctx.home(), to, ctx.env, { ask, actor: defaultActor(ctx.env), warn: (text) => ctx.io.warn(`sy: ${text}`) }));
  const summary = {
    from: report.from,
    to: report.to,
    kind: report.kind,
    secrets: report.secrets,
    secret_versions: report.secretVersions,
    leases: report.leases,
    audit_lines: report.auditLines,
    clients: report.clients,
  };
  const leases = Object.values(summary.leases).reduce((a, b) => a + b, 0);
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  ctx.io.notice(`Copied ${plural(summary.secrets, 'secret')} (${plural(summary.secret_versions, 'version')}), ${plural(leases, 'lease')}` +
    `${leases ? ` (${leaseCounts(summary.leases)})` : ''} ${summary.clients ? `, ${plural(summary.clients, 'client')}` : ''} and ${plural(summary.audit_lines, 'audit line')} to ${summary.to}.`);
  await ctx.print({ value: summary, table: () => keyValueTable({ ...summary, leases: leaseCounts(summary.leases) }) }, options);
  return summary;
}
