/**
 * `sy store copy`: the whole store, from where it lives now (SY_STORE's database, or SY_HOME)
 * into an empty one (a postgresql:// URL, or a directory for SQLite). The destination gets
 * the source's key slot (the same data key and store id), so its sealed payloads open and its
 * audit chain verifies as they are, and the same key opens it. Only the copy is made: the
 * source is left as it was, with one more audit line that says where it was copied.
 */
import { resolve } from 'node:path';
import type { KeyEnvironment, PassphrasePrompt } from '../keys/sources.js';
import { postgresModules, sharedStoreUrl } from './open.js';
import { isStoreUrl, parseStoreUrl } from './postgres/url.js';
import type { Store, StoreOptions } from './store.js';
import type { CopyReport, StoreDump } from './transfer.js';

export async function copyStore(
  home: () => string,
  to: string,
  env: NodeJS.ProcessEnv & KeyEnvironment,
  options: StoreOptions & { ask?: PassphrasePrompt },
): Promise<CopyReport> {
  const target = isStoreUrl(to) ? parseStoreUrl(to, '--to') : resolve(to);
  const { store: source, dump } = await dumpSource(home, env, options);
  try {
    let destination: Store;
    if (typeof target === 'string') {
      const { loadSqlite } = await import('./sqlite-transfer.js');
      destination = await loadSqlite(target, dump, options);
    } else {
      await postgresModules();
      const { loadPostgres } = await import('./postgres/transfer.js');
      destination = await loadPostgres(target, dump, options);
    }
    try {
      const info = await destination.info();
      const report: CopyReport = {
        from: source.location,
        to: destination.location,
        kind: destination.kind,
        secrets: info.secrets,
        secretVersions: info.secretVersions,
        leases: info.leases,
        auditLines: info.auditLines,
        clients: info.clients,
      };
      await source.audit.append([{
        action: 'store.copy',
        target: destination.location,
        outcome: 'success',
        detail: { kind: destination.kind, secrets: info.secrets, secret_versions: info.secretVersions, leases: info.leases, audit_lines: info.auditLines, clients: info.clients },
      }]);
      return report;
    } finally {
      await destination.close();
    }
  } finally {
    await source.close();
  }
}

async function dumpSource(home: () => string, env: NodeJS.ProcessEnv & KeyEnvironment, options: StoreOptions & { ask?: PassphrasePrompt }): Promise<{ store: Store; dump: StoreDump }> {
  const url = sharedStoreUrl(env);
  if (!url) {
    const { dumpSqlite } = await import('./sqlite-transfer.js');
    return dumpSqlite(home(), env, options);
  }
  const store = await (await postgresModules()).openPostgresStore(url, env, options);
  try {
    const { dumpPostgres } = await import('./postgres/transfer.js');
    return { store, dump: await dumpPostgres(store) };
  } catch (error) {
    await store.close();
    throw error;
  }
}
