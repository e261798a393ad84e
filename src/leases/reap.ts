import { kindOf, parseBaseConnection } from '../secrets/validate.js';
import type { Target } from '../targets/target.js';
import { targetLabel } from './connection.js';
import { CONNECT_TIMEOUT_MS, type LeaseDeps } from './deps.js';
import { errorText } from './issue.js';

export interface ReapReport {
  reaped: number;
  targets: number;
  errors: { target: string; error: string }[];
}

/**
 * The orphan reaper: on the server of every base secret, drops the users that carry sy's
 * name marker, are past the reap-after bound written in their name, and are not live in
 * this ledger. No user can legitimately outlive that bound (it is the max TTL), so this is
 * safe even for users another sy store created, and it cleans up after a lost ledger.
 */
export async function reapOrphans(deps: LeaseDeps, options: { connectTimeoutMs?: number } = {}): Promise<ReapReport> {
  const report: ReapReport = { reaped: 0, targets: 0, errors: [] };
  const secrets = await deps.store.secrets.search({ query: '', limit: 100_000 });
  const seen = new Set<string>();
  const live = await deps.store.leases.liveUsernames();
  for (const metadata of secrets) {
    if (kindOf(metadata.attributes) !== 'base') continue;
    const base = await deps.store.secrets.get({ id: metadata.id });
    if (!base) continue;
    let connection;
    try {
      connection = parseBaseConnection(base.attributes, base.data);
    } catch {
      continue;
    }
    const label = targetLabel(connection);
    if (seen.has(label)) continue;
    seen.add(label);
    report.targets++;
    let client: Target | undefined;
    try {
      deps.progress?.(`Looking for orphaned users on ${connection.host}:${connection.port}`);
      client = await deps.connect(connection, { connectTimeoutMs: options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS });
      const now = deps.now();
      const orphans = (await client.listManagedUsers()).filter((u) => u.reapAfter.getTime() <= now && !live.has(u.username));
      if (orphans.length === 0) continue;
      await client.revokeUsers(orphans.map((u) => u.username));
      report.reaped += orphans.length;
      for (const orphan of orphans) {
        deps.audit.append({ action: 'reaper.drop', db_user: orphan.username, target: label, outcome: 'success', detail: { reap_after: orphan.reapAfter.toISOString() } });
      }
    } catch (error) {
      report.errors.push({ target: label, error: errorText(error) });
      deps.audit.append({ action: 'reaper.drop', target: label, outcome: 'failure', error: errorText(error) });
    } finally {
      await client?.close().catch(() => undefined);
    }
  }
  return report;
}
