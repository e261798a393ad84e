/**
 * Machines of a fleet on one shared store, for the pool and fleet end-to-end tests: each
 * "machine" is its own temp HOME and SY_HOME (which a PostgreSQL store leaves alone) with
 * the store's URL and key; an init container is `env -i` with only PATH, SY_STORE and
 * SY_MASTER_KEY (no HOME, no terminal), as the seed's CronJob runs it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type { AuditEntry } from '../../src/audit/chain.js';
import { SY_BIN, type SyHome, type SyResult, runSy } from './cli.js';

const dirs: string[] = [];

/** A machine with its own HOME and SY_HOME; SY_CLIENT_ID names it in the audit log. */
export function machine(store: string, key: string, name: string, extra: Record<string, string> = {}): SyHome {
  const dir = mkdtempSync(join(tmpdir(), `sy-fleet-${name}-`));
  dirs.push(dir);
  const env: Record<string, string> = { SY_STORE: store, SY_MASTER_KEY: key, SY_HOME: join(dir, 'home'), HOME: dir, SY_CLIENT_ID: name, ...extra };
  const sy: SyHome = {
    home: dir,
    env,
    run: (args, options = {}) => runSy(args, { ...env, ...options.env }, { input: options.input, ...(options.timeout ? { timeout: options.timeout } : {}) }),
    async json(args, options = {}) {
      const result = await sy.run(args, options);
      if (result.exitCode !== 0) throw new Error(`sy ${args.join(' ')} exited ${result.exitCode}: ${result.stderr}`);
      return JSON.parse(result.stdout);
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
  return sy;
}

/** Removes every machine's temp directory. */
export function cleanupMachines(): void {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** `env -i PATH=... SY_STORE=... SY_MASTER_KEY=... sy <args>`, stdin closed, in `cwd`. */
export async function initContainer(args: string[], store: string, key: string, cwd = tmpdir()): Promise<SyResult> {
  const result = await execa('env', ['-i', `PATH=${process.env.PATH}`, `SY_STORE=${store}`, `SY_MASTER_KEY=${key}`, SY_BIN, ...args], {
    reject: false,
    stdin: 'ignore',
    cwd,
    extendEnv: false,
    env: {},
    timeout: 60_000,
  });
  return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? '') };
}

/** The whole audit log of the store, oldest first, through `sy audit list`. */
export async function auditLog(sy: SyHome): Promise<AuditEntry[]> {
  return (await sy.json<{ data: AuditEntry[] }>(['audit', 'list', '--format', 'json'], { env: { SY_NO_SWEEP: '1' } })).data ?? [];
}

/** Successful revocations per lease id (a sweep's, a daemon's or `lease revoke`'s). */
export function revocationsByLease(entries: AuditEntry[]): Map<string, AuditEntry[]> {
  const byLease = new Map<string, AuditEntry[]>();
  for (const entry of entries) {
    if (entry.outcome !== 'success' || !/(^|\.)revoke$/.test(entry.action) || !entry.lease_id) continue;
    byLease.set(entry.lease_id, [...(byLease.get(entry.lease_id) ?? []), entry]);
  }
  return byLease;
}
