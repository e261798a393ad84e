import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Context } from '../cli/context.js';
import { dynamicSecretRef, seconds } from '../cli/flags.js';
import { failed, usageError } from '../errors.js';
import { clientEnv, mysqlOptionFile } from '../io/client-env.js';
import { type IssuedLease, issuedLease } from '../io/lease-view.js';
import { issueLease } from '../leases/issue.js';
import { renewLease } from '../leases/renew.js';
import { revokeLease } from '../leases/revoke.js';

export interface RunOptions {
  path?: string;
  recordUid?: string;
  ttl?: string;
}

const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGTERM: 15 };

/**
 * What opens the store or says where it is, and a client's key for a pool's server. The
 * command runs with a lease, not with sy's powers: with these it could read every admin
 * password in the store, or issue leases of its own.
 */
export const STORE_VARIABLES = [
  'SY_HOME', 'SY_STORE',
  'SY_MASTER_KEY', 'SY_MASTER_KEY_FILE', 'SY_PASSPHRASE',
  'SY_NEW_MASTER_KEY', 'SY_NEW_MASTER_KEY_FILE', 'SY_NEW_PASSPHRASE',
  'SY_PRIVATE_KEY', 'SY_PRIVATE_KEY_FILE',
];

/** The private directory of a MySQL option file, removed once, however sy run ends. */
interface OptionDir {
  path: string;
  remove(): void;
}

function writeOptionDir(lease: IssuedLease): OptionDir {
  // mkdtemp makes the directory 0700; the file is 0600 from its first byte.
  const path = mkdtempSync(join(tmpdir(), 'sy-run-'));
  let removed = false;
  const remove = () => {
    if (removed) return;
    removed = true;
    rmSync(path, { recursive: true, force: true });
  };
  // An error thrown before the normal end still removes it (the exit event runs synchronously).
  process.once('exit', remove);
  try {
    writeFileSync(join(path, 'my.cnf'), mysqlOptionFile(lease), { mode: 0o600, flag: 'wx' });
  } catch (error) {
    remove();
    throw failed('run_option_file', `Could not write the MySQL option file in ${path}: ${(error as NodeJS.ErrnoException).code ?? 'an I/O error'}.`);
  }
  return { path, remove };
}

/**
 * The command's environment: the caller's, without what opens the store, with what its
 * client needs to log in as the lease. PGSERVICE goes too: libpq lets a service file win
 * over the PG* variables. MYSQL_HOME names the option file the MySQL clients read.
 */
function childEnvironment(env: NodeJS.ProcessEnv, lease: IssuedLease, optionDir: OptionDir | undefined): NodeJS.ProcessEnv {
  const child: NodeJS.ProcessEnv = { ...env };
  for (const name of STORE_VARIABLES) delete child[name];
  if (lease.engine === 'postgresql') delete child.PGSERVICE;
  Object.assign(child, clientEnv(lease));
  if (optionDir) child.MYSQL_HOME = optionDir.path;
  return child;
}

/** MySQL reads ~/.my.cnf after $MYSQL_HOME/my.cnf: a user or password set there would win. */
function myCnfOverrides(env: NodeJS.ProcessEnv): boolean {
  if (!env.HOME) return false;
  try {
    return /^\s*(user|password|host|port|socket|protocol)\s*=/m.test(readFileSync(join(env.HOME, '.my.cnf'), 'utf8'));
  } catch {
    return false;
  }
}

/**
 * `sy run (--path P | --record-uid ID) [--ttl T] -- command [args...]`: issues a lease, runs
 * the command with the engine's variables and DATABASE_URL (and for MySQL an option file
 * named by MYSQL_HOME), renews the lease while it runs, revokes it when the command exits,
 * and exits with the command's status. If sy itself dies, the lease still expires and the
 * sweep revokes it on time.
 */
export async function runCommand(ctx: Context, argv: string[], options: RunOptions): Promise<void> {
  const ref = dynamicSecretRef(options);
  if (argv.length === 0) throw usageError('missing_command', 'Give the command to run after --, e.g. sy run --path P -- psql.');
  const ttlSeconds = seconds(options.ttl, '--ttl');
  const deps = await ctx.leaseDeps();
  const lease = issuedLease(await issueLease(deps, ref, { ttlSeconds }));
  deps.progress = undefined;
  ctx.stopSpinner();
  let optionDir: OptionDir | undefined;
  try {
    if (lease.engine !== 'postgresql') optionDir = writeOptionDir(lease);
  } catch (error) {
    await revokeLease(deps, lease.lease_id).catch(() => undefined); // the sweep retries if this fails too
    throw error;
  }
  if (optionDir && myCnfOverrides(ctx.env)) {
    ctx.io.warn('warning: ~/.my.cnf sets connection options; MySQL clients read it after the lease\'s option file, so they win.');
  }

  let renewTimer: NodeJS.Timeout | undefined;
  let expiresAt = Date.parse(lease.expires_at);
  const scheduleRenewal = () => {
    const remaining = expiresAt - Date.now();
    // Renew at two thirds of the remaining time, so a slow database still has a third left.
    renewTimer = setTimeout(async () => {
      try {
        const { lease: renewed, capped, unchanged } = await renewLease(deps, lease.lease_id, lease.lease_duration);
        expiresAt = renewed.expiresAt;
        if (capped || unchanged) {
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
  const child = spawn(command, args, { stdio: 'inherit', env: childEnvironment(ctx.env, lease, optionDir) });
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
  optionDir?.remove();
  try {
    await revokeLease(deps, lease.lease_id);
  } catch (error) {
    throw failed('run_revoke_failed', `${command} exited ${status}, but its lease could not be revoked: ${(error as Error).message}`, 'The sweep will retry.');
  } finally {
    for (const [signal, handler] of handlers) process.off(signal, handler);
  }
  ctx.exitCode = status;
}
