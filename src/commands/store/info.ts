import type { Context, OutputFlags } from '../../cli/context.js';
import { keyValueTable } from '../../io/format.js';

/** Leases per state as one cell: `2 active, 1 revoked`, or `none`. */
export function leaseCounts(counts: Record<string, number>): string {
  const parts = Object.entries(counts).map(([state, n]) => `${n} ${state}`);
  return parts.length ? parts.join(', ') : 'none';
}

/** `sy store info`: where the store lives (SQLite in SY_HOME, or SY_STORE's database), its schema and what it holds. */
export async function storeInfoCommand(ctx: Context, options: OutputFlags) {
  const store = await ctx.store();
  const info = await store.info();
  const summary = {
    kind: store.kind,
    location: store.location,
    schema_version: info.schemaVersion,
    secrets: info.secrets,
    secret_versions: info.secretVersions,
    leases: info.leases,
    audit_lines: info.auditLines,
    clients: info.clients,
  };
  await ctx.print({ value: summary, table: () => keyValueTable({ ...summary, leases: leaseCounts(summary.leases) }) }, options);
  return summary;
}
