import { resolveHome } from '../config/home.js';
import { writeFileAtomic } from '../io/output.js';
import { type Printable, render } from '../io/format.js';
import { withPassphraseTries } from '../io/prompt.js';
import type { IOStreams } from '../io/streams.js';
import type { Store } from '../store/store.js';
import type { LeaseDeps } from '../leases/deps.js';
import type { LeaseService } from '../client/lease-service.js';
import { createSpinner, type Spinner } from '../io/spinner.js';
import { randomUUID } from 'node:crypto';
import { statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { SyError, usageError } from '../errors.js';

/** Output flags shared by every command that prints data. */
export interface OutputFlags {
  format?: string;
  filter?: string;
  output?: string;
}

/**
 * What a command needs from the outside world, each part built on first use (gh's
 * Factory): a command that never touches the store never opens it.
 */
export interface Context {
  readonly io: IOStreams;
  readonly env: NodeJS.ProcessEnv;
  /** Run the revocation sweep when the store is first opened (off with --no-sweep or SY_NO_SWEEP=1). */
  autoSweep: boolean;
  /** Set by `sy daemon` before the store opens: StoreOptions.groupCommit. */
  groupCommit: boolean;
  home(): string;
  store(): Promise<Store>;
  /** The store, target connector and spinner that lease operations use. */
  leaseDeps(): Promise<LeaseDeps>;
  /**
   * Leases and secret reads, chosen once here: through the lease API when SY_SERVER is set
   * (the client's own key; the HTTP client loads only then), else on the store.
   */
  leases(): Promise<LeaseService>;
  print(printable: Printable, flags: OutputFlags): Promise<void>;
  /** Stops the spinner before a child process takes over the terminal. */
  stopSpinner(): void;
  /** The status to exit with when a command succeeds but wants another code (`sy run`). */
  exitCode?: number;
  close(): Promise<void>;
}

/** The sweep before each command: at most this long, with short connect timeouts. */
export const PRE_SWEEP_BUDGET_MS = 1500;
export const PRE_SWEEP_CONNECT_TIMEOUT_MS = 1000;
/** A lease whose revocation failed this often (about half a minute of retries) is named with `revoke --force`. */
export const STUCK_ATTEMPTS = 3;
/** Small batches before a command, so one batch fits its budget; full sweeps take up to 1,000 at once. */
const PRE_SWEEP_BATCH = 200;

export function createContext(io: IOStreams, env: NodeJS.ProcessEnv): Context {
  let store: Promise<Store> | undefined;
  let opened: Store | undefined;
  let spinner: Spinner | undefined;
  let deps: Promise<LeaseDeps> | undefined;

  const buildDeps = async (s: Store): Promise<LeaseDeps> => {
    const { connectTarget } = await import('../targets/connect.js');
    // The audit log is refused (exit 4) before anything is done if the next append would be refused.
    await s.audit.check();
    spinner ??= createSpinner(io);
    const progress = spinner;
    return {
      store: s,
      connect: connectTarget,
      now: Date.now,
      progress: (text: string) => progress.update(text),
      warn: (text: string) => io.warn(`warning: ${text}`),
      claimant: `${process.pid}:${randomUUID()}`,
    };
  };

  /**
   * Revokes what is due before the command runs, within a small budget. Nothing due costs
   * one indexed query and no database connection; an unreachable target costs a one-line
   * notice, never the user's command.
   */
  const preSweep = async (s: Store): Promise<void> => {
    const due = await s.leases.nextDue();
    if (due === undefined || due > Date.now()) return;
    const { sweep } = await import('../leases/sweep.js');
    deps ??= buildDeps(s);
    let ready: LeaseDeps;
    try {
      ready = await deps;
    } catch (error) {
      // A tampered audit log stops the sweep (it could not record what it revoked), not a
      // command that only reads, such as `sy audit verify`, which reports the damage.
      deps = undefined;
      if (!(error instanceof SyError) || !error.code.startsWith('audit_log')) throw error;
      io.warn(`sy: expired leases were not revoked: ${error.message}`);
      return;
    }
    const report = await sweep(ready, { budgetMs: PRE_SWEEP_BUDGET_MS, connectTimeoutMs: PRE_SWEEP_CONNECT_TIMEOUT_MS, batchSize: PRE_SWEEP_BATCH });
    spinner?.stop();
    if (report.failed > 0) {
      const first = report.errors[0];
      io.warn(`sy: ${report.failed} expired lease${report.failed === 1 ? '' : 's'} could not be revoked yet (${first.target}: ${first.error}); retrying later.`);
      const stuck = await s.leases.get(first.lease_id).catch(() => undefined);
      if (stuck && stuck.attempts >= STUCK_ATTEMPTS) {
        io.warn(
          `Lease ${stuck.id} has failed ${stuck.attempts} times: if ${stuck.target} is gone for good, \`sy dynamic lease revoke ${stuck.id} --force\` forgets it (its user may remain there).`,
        );
      }
    }
  };

  const ctx: Context = {
    io,
    env,
    autoSweep: env.SY_NO_SWEEP !== '1',
    groupCommit: false,
    home: () => {
      if (env.SY_SERVER) throw needsStore();
      return checkedHome(resolveHome(env), env.SY_HOME ? 'SY_HOME' : 'The store directory');
    },
    store() {
      if (env.SY_SERVER) return Promise.reject(needsStore());
      if (store) return store;
      const opening = Promise.all([import('../store/open.js'), import('../audit/actor.js')])
        .then(([{ openStore }, { defaultActor }]) =>
          withPassphraseTries(io, (ask) => openStore(() => ctx.home(), env, { ask, actor: defaultActor(env), warn: (text) => io.warn(`sy: ${text}`), groupCommit: ctx.groupCommit })))
        .then(async (s) => {
          opened = s;
          if (ctx.autoSweep) await preSweep(s);
          return s;
        });
      store = opening;
      // A store that could not be opened may be tried again (the daemon waits for its database).
      opening.catch(() => {
        if (store === opening) store = undefined;
      });
      return opening;
    },
    async leaseDeps() {
      const s = await ctx.store();
      deps ??= buildDeps(s);
      return deps;
    },
    async leases() {
      if (env.SY_SERVER) {
        const [{ httpLeaseService }, { clientCredentials }] = await Promise.all([import('../client/http.js'), import('../client/credentials.js')]);
        return httpLeaseService(clientCredentials(env));
      }
      const { localLeaseService } = await import('../client/local.js');
      return localLeaseService(ctx);
    },
    async print(printable, flags) {
      spinner?.stop();
      const toTerminal = flags.output === undefined && io.stdoutIsTTY;
      // Preferences matter only to people at a terminal; scripts never pay for reading them.
      const settings = toTerminal ? await import('../config/settings.js').then((m) => m.readSettings()) : {};
      const text = await render(printable, {
        format: flags.format ?? settings.format,
        filter: flags.filter,
        toTerminal,
        color: toTerminal && io.colorEnabled && settings.color !== 'never',
      });
      if (flags.output !== undefined) {
        writeFileAtomic(flags.output, text);
        io.notice(`Wrote ${flags.output}`);
      } else {
        io.stdout.write(text);
      }
    },
    stopSpinner() {
      spinner?.stop();
    },
    async close() {
      spinner?.stop();
      await opened?.close();
    },
  };
  return ctx;
}

/** With SY_SERVER set, sy is a client of a pool's daemons and never opens a store. */
function needsStore(): SyError {
  return usageError(
    'needs_store',
    'This command needs the store, and SY_SERVER is set: as a client of the lease API, sy runs only `dynamic lease create|list|lookup|renew|revoke`, `secret read`, `agent` and `auth token`.',
    'Unset SY_SERVER to work on a store of your own.',
  );
}

/**
 * SY_HOME must be a directory or a path one can be made at. Checked here, before anything
 * opens or creates it, so a file in the way is one plain sentence rather than a raw
 * EEXIST or ENOTDIR from deep inside the store.
 */
function checkedHome(home: string, label: string): string {
  const wanted = resolve(home);
  for (let current = wanted; ; current = dirname(current)) {
    let isDirectory: boolean;
    try {
      isDirectory = statSync(current).isDirectory();
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // Missing (made later), or below a file (ENOTDIR): look at the parent.
      if ((code === 'ENOENT' || code === 'ENOTDIR') && dirname(current) !== current) continue;
      return home;
    }
    if (isDirectory) return home;
    if (current === wanted) throw usageError('home_not_directory', `${label} (${home}) is a file, not a directory.`);
    throw usageError('home_not_directory', `${label} (${home}) is inside a file (${current}), so it cannot be a directory.`);
  }
}
