import { spawn } from 'node:child_process';
import type { Context } from '../cli/context.js';
import { failed, usageError } from '../errors.js';
import { engineEnv } from '../leases/connection.js';
import { issueLease } from '../leases/issue.js';
import { renewLease } from '../leases/renew.js';
import { revokeLease } from '../leases/revoke.js';
import { canonicalPath, isUuid } from '../secrets/path.js';
import { getSecret } from '../secrets/service.js';

export interface RunOptions {
  path?: string;
  recordUid?: string;
  ttl?: string;
}

const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGTERM: 15 };

/**
 * `sy run (--path P | --record-uid ID) [--ttl T] -- command [args...]`: issues a lease, runs
 * the command with the engine's variables and DATABASE_URL, renews the lease while it
 * runs, revokes it when the command exits, and exits with the command's status. If sy
 * itself dies, the lease still expires and the sweep revokes it on time.
 */
export async function runCommand(ctx: Context, argv: string[], options: RunOptions): Promise<void> {
  if ((options.recordUid === undefined) === (options.path === undefined)) {
    throw usageError('missing_secret', 'Name the dynamic secret with exactly one of --record-uid or --path.');
  }
  if (argv.length === 0) throw usageError('missing_command', 'Give the command to run after --, e.g. sy run --path P -- psql.');
  if (options.recordUid !== undefined && !isUuid(options.recordUid)) {
    throw usageError('invalid_record_uid', '--record-uid must be the id (a UUID) of a dynamic secret.');
  }
  const deps = await ctx.leaseDeps();
  const ref = options.recordUid !== undefined ? { id: options.recordUid.toLowerCase() } : { path: canonicalPath(options.path!) };
  const lease = await issueLease(deps, await getSecret(deps.store, ref), options.ttl);
  deps.progress = undefined;
  ctx.stopSpinner();

  let renewTimer: NodeJS.Timeout | undefined;
  let expiresAt = Date.parse(lease.expires_at);
  const scheduleRenewal = () => {
    const remaining = expiresAt - Date.now();
    // Renew at two thirds of the remaining time, so a slow database still has a third left.
    renewTimer = setTimeout(async () => {
      try {
        const { lease: renewed, capped } = await renewLease(deps, lease.lease_id, String(lease.lease_duration));
        expiresAt = renewed.expiresAt;
        if (capped) {
          ctx.io.notice(`sy: lease ${lease.lease_id} reached its max TTL; it ends at ${new Date(expiresAt).toISOString()}.`);
          return;
        }
        scheduleRenewal();
      } catch (error) {
        ctx.io.warn(`sy: could not renew lease ${lease.lease_id}: ${(error as Error).message}`);
      }
    }, Math.max(1000, Math.floor((remaining * 2) / 3)));
    renewTimer.unref();
  };
  scheduleRenewal();

  const [command, ...args] = argv;
  const child = spawn(command, args, { stdio: 'inherit', env: { ...process.env, ...engineEnv(lease) } });
  const forward = (signal: NodeJS.Signals) => () => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const).map((signal) => [signal, forward(signal)] as const);
  for (const [signal, handler] of handlers) process.on(signal, handler);

  const status = await new Promise<number>((resolve) => {
    child.on('error', (error) => {
      ctx.io.warn(`sy: could not run ${command}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'command not found' : error.message}.`);
      resolve(127);
    });
    child.on('exit', (code, signal) => resolve(code ?? 128 + (SIGNAL_NUMBERS[signal ?? ''] ?? 1)));
  });
  clearTimeout(renewTimer);
  try {
    await revokeLease(deps, lease.lease_id);
  } catch (error) {
    for (const [signal, handler] of handlers) process.off(signal, handler);
    throw failed('run_revoke_failed', `${command} exited ${status}, but its lease could not be revoked: ${(error as Error).message}`, 'The sweep will retry.');
  }
  for (const [signal, handler] of handlers) process.off(signal, handler);
  ctx.exitCode = status;
}
