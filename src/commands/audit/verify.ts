import type { Context, OutputFlags } from '../../cli/context.js';
import { failed } from '../../errors.js';
import { keyValueTable } from '../../io/format.js';

/** `sy audit verify`: checks the hash chain; names the first bad line and exits 1 when it is broken. */
export async function auditVerifyCommand(ctx: Context, options: OutputFlags) {
  const store = await ctx.store();
  const result = await store.audit.verify();
  const summary = { file: result.location, ok: result.ok, lines: result.lines, first_bad_line: result.firstBad?.line ?? null, reason: result.firstBad?.reason ?? null };
  await ctx.print({ value: summary, table: () => keyValueTable(summary) }, options);
  if (result.firstBad) {
    throw failed('audit_tampered', `The audit log is not intact: line ${result.firstBad.line} ${result.firstBad.reason}.`);
  }
  return summary;
}
