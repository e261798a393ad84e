import type { Context } from '../cli/context.js';
import { usageError } from '../errors.js';
import { type DaemonEvent, runDaemon } from '../leases/daemon.js';
import { seconds } from '../cli/flags.js';

export interface DaemonFlags {
  interval?: string;
  pool?: string;
  once?: boolean;
  logFormat?: string;
  reapInterval?: string;
}

/**
 * `sy daemon`: keeps revoking on time until SIGTERM or SIGINT, logging one JSON line per
 * event on stdout (`--log-format text` for people). Exits 0 after finishing the revocation
 * in flight.
 */
export async function daemonCommand(ctx: Context, flags: DaemonFlags): Promise<void> {
  const intervalMs = (seconds(flags.interval, '--interval') ?? 60) * 1000;
  const reapEveryMs = (seconds(flags.reapInterval, '--reap-interval') ?? 600) * 1000;
  const format = flags.logFormat ?? 'json';
  if (format !== 'json' && format !== 'text') throw usageError('invalid_log_format', '--log-format must be json or text.');
  const deps = await ctx.leaseDeps();
  deps.progress = undefined;
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  try {
    await runDaemon(
      deps,
      { intervalMs, reapEveryMs, pool: flags.pool, once: Boolean(flags.once), signal: controller.signal, watchDir: deps.store.kind === 'sqlite' ? ctx.home() : undefined },
      (event) => ctx.io.stdout.write(`${format === 'json' ? JSON.stringify({ time: new Date().toISOString(), ...event }) : textLine(event)}\n`),
    );
  } finally {
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
  }
}

function textLine(e: DaemonEvent): string {
  const time = new Date().toISOString();
  switch (e.event) {
    case 'start':
      return `${time} daemon started${e.pool ? ` (pool ${e.pool})` : ''}`;
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
