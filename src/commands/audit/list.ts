import type { Context, OutputFlags } from '../../cli/context.js';
import { usageError } from '../../errors.js';
import type { AuditEntry } from '../../audit/chain.js';
import { canonicalPath } from '../../secrets/path.js';
import { localTime } from '../../util/time.js';
import { seconds, wholeNumber } from '../../cli/flags.js';

export interface AuditListOptions extends OutputFlags {
  since?: string;
  lease?: string;
  path?: string;
  limit?: string;
}

/** `sy audit list`: the audit log, filtered; `--since` takes a time (ISO-8601) or a duration ago (`1h`). */
export async function auditListCommand(ctx: Context, options: AuditListOptions): Promise<AuditEntry[]> {
  const store = await ctx.store();
  const entries = await store.audit.read({
    since: options.since === undefined ? undefined : parseSince(options.since),
    leaseId: options.lease,
    path: options.path === undefined ? undefined : canonicalPath(options.path),
    limit: wholeNumber(options.limit, '--limit', { min: 1 }),
  });
  await ctx.print(
    {
      value: { data: entries },
      table: () => [
        ['TIME', 'ACTOR', 'ACTION', 'PATH', 'DB USER', 'TARGET', 'OUTCOME'],
        ...entries.map((e) => [localTime(e.time), e.actor, e.action, e.path ?? '', e.db_user ?? '', e.target ?? '', e.outcome + (e.error ? `: ${e.error}` : '')]),
      ],
    },
    options,
  );
  return entries;
}

function parseSince(value: string): number {
  if (/^\d{4}-\d{2}-\d{2}/.test(value)) {
    const time = Date.parse(value);
    if (!Number.isNaN(time)) return time;
    throw usageError('invalid_since', `--since "${value.slice(0, 40)}" is not a date: use ISO-8601 (2026-04-06T12:00:00Z) or a duration such as 1h.`);
  }
  return Date.now() - seconds(value, '--since')! * 1000;
}
