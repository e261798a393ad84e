import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type Options } from 'execa';
import type { IssuedLease } from '../../src/io/lease-view.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const SY_BIN = join(ROOT, 'bin', 'sy');

export interface SyResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** A temporary SY_HOME with its own master key; `run` calls the built bin/sy in it. */
export interface SyHome {
  home: string;
  env: Record<string, string>;
  run(args: string[], options?: { input?: string; env?: Record<string, string | undefined>; timeout?: number }): Promise<SyResult>;
  json<T = any>(args: string[], options?: { input?: string; env?: Record<string, string | undefined> }): Promise<T>;
  cleanup(): void;
}

export function freshKey(): string {
  return Buffer.from(Array.from({ length: 32 }, () => Math.floor(Math.random() * 256))).toString('base64');
}

/**
 * Runs bin/sy without a terminal, with only the environment given (plus PATH). In a session
 * of its own (setsid): no controlling terminal either, even when jest runs in one, since sy
 * asks for a passphrase on /dev/tty.
 */
export async function runSy(args: string[], env: Record<string, string | undefined>, options: Options & { input?: string } = {}): Promise<SyResult> {
  const result = await execa(SY_BIN, args, {
    env: { PATH: process.env.PATH, ...env },
    extendEnv: false,
    reject: false,
    detached: true,
    stdin: options.input === undefined ? 'ignore' : undefined,
    timeout: 60_000,
    ...options,
  } as Options);
  return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? '') };
}

export async function makeHome(options: { init?: boolean; env?: Record<string, string> } = {}): Promise<SyHome> {
  const home = mkdtempSync(join(tmpdir(), 'sy-test-'));
  const env: Record<string, string> = { SY_HOME: join(home, 'store'), SY_MASTER_KEY: freshKey(), HOME: home, SY_NO_SWEEP: '1', ...options.env };
  const syHome: SyHome = {
    home,
    env,
    run: (args, runOptions = {}) =>
      runSy(args, { ...env, ...runOptions.env }, { input: runOptions.input, ...(runOptions.timeout ? { timeout: runOptions.timeout } : {}) }),
    async json(args, runOptions = {}) {
      const result = await syHome.run(args, runOptions);
      if (result.exitCode !== 0) throw new Error(`sy ${args.join(' ')} exited ${result.exitCode}: ${result.stderr}`);
      return JSON.parse(result.stdout);
    },
    cleanup: () => rmSync(home, { recursive: true, force: true }),
  };
  if (options.init !== false) {
    const init = await syHome.run(['init']);
    if (init.exitCode !== 0) throw new Error(`sy init failed: ${init.stderr}`);
  }
  return syHome;
}

type RunOptions = { input?: string; env?: Record<string, string> };

/**
 * `run` and `ok` (JSON of a command that must succeed) for a file's SY_HOME, keeping every
 * stderr so the file can check at the end that no secret ever reached one.
 */
export function recordingRunner(home: () => SyHome) {
  const stderrs: string[] = [];
  const run = async (args: string[], options: RunOptions = {}): Promise<SyResult> => {
    const result = await home().run(args, options);
    stderrs.push(result.stderr);
    return result;
  };
  const ok = async <T = any>(args: string[], options: RunOptions = {}): Promise<T> => {
    const result = await run(args, options);
    if (result.exitCode !== 0) throw new Error(`sy ${args.join(' ')} exited ${result.exitCode}: ${result.stderr}`);
    return JSON.parse(result.stdout) as T;
  };
  return { run, ok, stderrs };
}

/** A lease as `lease create` prints it; the lease tests always name a database. */
export type Lease = IssuedLease & { database: string };
export interface ListedLease {
  lease_id: string;
  username: string;
  state: string;
  path: string;
}

/**
 * recordingRunner plus the lease helpers of the lease test files: `create` issues a lease by
 * path and remembers it, so a file can drop every user it made and check that no password
 * it was given ever reached stderr or the audit log.
 */
export function leaseRunner(home: () => SyHome) {
  const runner = recordingRunner(home);
  const issued: Lease[] = [];
  const passwords: string[] = [];
  const remember = (lease: Lease): Lease => {
    issued.push(lease);
    passwords.push(lease.password);
    return lease;
  };
  const create = async (path: string, extra: string[] = []): Promise<Lease> =>
    remember(await runner.ok<Lease>(['dynamic', 'lease', 'create', '--path', path, ...extra]));
  const listed = async (args: string[] = []): Promise<ListedLease[]> =>
    (await runner.ok<{ data: ListedLease[] }>(['dynamic', 'lease', 'list', ...args])).data;
  return { ...runner, issued, passwords, remember, create, listed };
}

/** The keys of the lease JSON of PRODUCT.md, sorted. */
export const LEASE_KEYS = [
  'lease_id', 'record_uid', 'path', 'engine', 'host', 'port', 'database', 'username', 'password',
  'connection_string', 'created_at', 'expires_at', 'lease_duration', 'renewable',
].sort();
