import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Context } from '../cli/context.js';
import { usageError } from '../errors.js';
import { type DaemonEvent, runDaemon } from './loop.js';
import { StoreHealth, openPatiently } from './membership.js';
import { seconds } from '../cli/flags.js';

export interface DaemonFlags {
  interval?: string;
  pool?: string;
  once?: boolean;
  logFormat?: string;
  reapInterval?: string;
  readyFile?: string;
}

/**
 * `sy daemon`: keeps revoking on time until SIGTERM or SIGINT, logging one JSON line per
 * event on stdout (`--log-format text` for people). It joins the store's pool registry
 * (`--pool`, or every pool) until it stops. Exits 0 after finishing the revocation in
 * flight; 4 when the store is tampered with or its key does not open it.
 */
export async function daemonCommand(ctx: Context, flags: DaemonFlags): Promise<void> {
  const intervalMs = (seconds(flags.interval, '--interval') ?? 60) * 1000;
  const reapEveryMs = (seconds(flags.reapInterval, '--reap-interval') ?? 600) * 1000;
  const format = flags.logFormat ?? 'json';
  if (format !== 'json' && format !== 'text') throw usageError('invalid_log_format', '--log-format must be json or text.');
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  const log = (event: DaemonEvent) =>
    ctx.io.stdout.write(`${format === 'json' ? JSON.stringify({ time: new Date().toISOString(), ...event }) : textLine(event)}\n`);
  const ready = flags.readyFile === undefined ? undefined : new ReadyFile(flags.readyFile, (text) => ctx.io.warn(`sy: ${text}`));
  try {
    const deps = flags.once ? await ctx.leaseDeps() : await openPatiently(() => ctx.leaseDeps(), controller.signal, new StoreHealth(Date.now, log));
    if (!deps) return;
    deps.progress = undefined;
    await runDaemon(
      deps,
      {
        intervalMs,
        reapEveryMs,
        pool: flags.pool,
        once: Boolean(flags.once),
        signal: controller.signal,
        member: { host: hostname(), pid: process.pid, version: syVersion() },
        onHealthy: ready && (() => ready.touch()),
      },
      log,
    );
  } finally {
    ready?.remove();
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
  }
}

/**
 * `--ready-file`: touched after each pass and heartbeat that succeeded, removed at exit, for
 * a Kubernetes exec probe that checks its age. A file that cannot be written is said once;
 * the daemon goes on revoking.
 */
class ReadyFile {
  private warned = false;

  constructor(
    private readonly path: string,
    private readonly warn: (text: string) => void,
  ) {}

  touch(): void {
    try {
      writeFileSync(this.path, `${new Date().toISOString()}\n`);
      this.warned = false;
    } catch (error) {
      if (!this.warned) this.warn(`could not write the ready file ${this.path} (${(error as NodeJS.ErrnoException).code ?? 'error'}).`);
      this.warned = true;
    }
  }

  remove(): void {
    rmSync(this.path, { force: true });
  }
}

/** Set by the bundler; read from package.json when running from tsc's output. */
declare const SY_VERSION: string | undefined;

function syVersion(): string {
  if (typeof SY_VERSION === 'string') return SY_VERSION;
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

function textLine(e: DaemonEvent): string {
  const time = new Date().toISOString();
  switch (e.event) {
    case 'start':
      return `${time} daemon started${e.pool ? ` (pool ${e.pool})` : ' (every pool)'}`;
    case 'store_unreachable':
      return `${time} the store cannot be reached (${e.error}); retrying with backoff`;
    case 'store_reconnected':
      return `${time} the store is back after ${Math.round((e.after_ms ?? 0) / 1000)} s`;
    case 'stop':
      return `${time} daemon stopped`;
    case 'revoked':
      return `${time} revoked lease ${e.lease_id} (${e.db_user} on ${e.target})`;
    case 'revoke_failed':
      return `${time} could not revoke lease ${e.lease_id} (${e.db_user} on ${e.target}): ${e.error}; now ${e.state}`;
    case 'reaped':
      return `${time} reaped ${e.count} orphaned user(s)`;
    case 'reap_failed':
      return e.unreachable
        ? `${time} orphan reaper could not reach ${e.target}: ${e.error}`
        : `${time} orphan reaper could not drop ${e.db_user ?? 'orphans'} on ${e.target}: ${e.error}`;
  }
}
