/**
 * A Context (gh's Factory) for unit tests: captured stdout and stderr, a fake terminal
 * with scripted answers, and a temporary SY_HOME with its own master key. Commands are
 * called as functions with it, or the whole CLI is run in this process (`runMain`), the
 * same `main()` that bin/sy runs, without spawning it.
 */
import { accessSync, constants, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createContext, type Context } from '../../src/cli/context.js';
import { main } from '../../src/index.js';
import { initStore } from '../../src/store/open.js';
import { freshKey } from './cli.js';
import { type TestStreams, type TestStreamsOptions, testStreams } from './streams.js';

export interface TestHome {
  /** The temporary directory; SY_HOME is `store` inside it. */
  dir: string;
  env: Record<string, string>;
  cleanup(): void;
}

/**
 * Where unit tests keep their stores: in memory (tmpfs) where the machine has it, so the
 * store's fsync at each commit costs nothing and the unit tier stays fast on a busy disk.
 */
const UNIT_TMP = (() => {
  try {
    accessSync('/dev/shm', constants.W_OK);
    return statSync('/dev/shm').isDirectory() ? '/dev/shm' : tmpdir();
  } catch {
    return tmpdir();
  }
})();

/** A temporary SY_HOME with a fresh SY_MASTER_KEY, and no sweep before commands. */
export function testHome(env: Record<string, string> = {}): TestHome {
  const dir = mkdtempSync(join(UNIT_TMP, 'sy-unit-'));
  return {
    dir,
    env: { SY_HOME: join(dir, 'store'), SY_MASTER_KEY: freshKey(), HOME: dir, SY_NO_SWEEP: '1', ...env },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Creates the store of `home` (what `sy init` does), and closes it. */
export async function initHome(home: TestHome): Promise<void> {
  const { store } = await initStore(home.env.SY_HOME, home.env, { actor: 'unit@test', warn: () => undefined });
  await store.close();
}

export interface TestContext extends TestStreams {
  ctx: Context;
  home: TestHome;
  /** Closes the context's store and removes the home (unless it was given). */
  cleanup(): Promise<void>;
}

export async function testContext(options: TestStreamsOptions & { home?: TestHome; init?: boolean; env?: Record<string, string> } = {}): Promise<TestContext> {
  const home = options.home ?? testHome(options.env);
  if (options.init !== false && !options.home) await initHome(home);
  const streams = testStreams(options);
  const ctx = createContext(streams.io, { ...home.env, ...options.env });
  return {
    ...streams,
    ctx,
    home,
    async cleanup() {
      await ctx.close();
      if (!options.home) home.cleanup();
    },
  };
}

export interface MainResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/**
 * `sy <args>` in this process: bin/sy's `main()` with captured streams and the given
 * environment only. It stands in for spawning the built CLI where a check needs no real
 * process, terminal or server (parsing, validation, messages and exit codes).
 */
export async function runMain(args: string[], env: Record<string, string | undefined>, options: TestStreamsOptions = {}): Promise<MainResult> {
  const streams = testStreams(options);
  // main() sets the umask for the files sy creates; the test process keeps its own.
  const umask = process.umask();
  try {
    const exitCode = await main(args, { ...env }, streams.io);
    return { exitCode, stdout: streams.stdout(), stderr: streams.stderr() };
  } finally {
    process.umask(umask);
  }
}
