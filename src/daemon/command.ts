import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Context } from '../cli/context.js';
import { storeError, usageError } from '../errors.js';
import type { LeaseDeps } from '../leases/deps.js';
import { seconds } from '../cli/flags.js';
import { runDaemon } from './loop.js';
import { StoreHealth, openPatiently } from './membership.js';
import { type Observer, ReadyFile, Readiness, fanOut, logObserver } from './observers.js';
import { type Listen, parseListen } from './listen.js';
import { type WarmTargets, warmTargets } from './warm-targets.js';

export interface DaemonFlags {
  interval?: string;
  pool?: string;
  once?: boolean;
  logFormat?: string;
  reapInterval?: string;
  readyFile?: string;
  listen?: string;
  tlsCert?: string;
  tlsKey?: string;
}

/** How long `/readyz` waits for the store to answer. */
const STORE_PING_MS = 2_000;

/**
 * `sy daemon`: keeps revoking on time until SIGTERM or SIGINT, logging one JSON line per
 * event on stdout (`--log-format text` for people). It joins the store's pool registry
 * (`--pool`, or every pool) until it stops. With `--listen` it also serves the lease API,
 * a sibling of the revocation loop on the same store. Exits 0 after finishing the
 * revocation in flight; 4 when the store is tampered with or its key does not open it.
 */
export async function daemonCommand(ctx: Context, flags: DaemonFlags): Promise<void> {
  const intervalMs = (seconds(flags.interval, '--interval') ?? 60) * 1000;
  const reapEveryMs = (seconds(flags.reapInterval, '--reap-interval') ?? 600) * 1000;
  const format = flags.logFormat ?? 'json';
  if (format !== 'json' && format !== 'text') throw usageError('invalid_log_format', '--log-format must be json or text.');
  const listen = flags.listen === undefined ? undefined : parseListen(flags.listen, flags.tlsCert, flags.tlsKey);
  if (listen === undefined && (flags.tlsCert !== undefined || flags.tlsKey !== undefined)) {
    throw usageError('tls_without_listen', '--tls-cert and --tls-key go with --listen.');
  }
  if (listen && flags.once) throw usageError('listen_once', '--listen serves until stopped; it cannot go with --once.');
  const tls = listen?.tls && readTls(listen);
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  const log = logObserver(format, (text) => ctx.io.stdout.write(text));
  const ready = flags.readyFile === undefined ? undefined : new ReadyFile(flags.readyFile, (text) => ctx.io.warn(`sy: ${text}`));
  const readiness = new Readiness(2 * intervalMs + 10_000);
  const observers: Observer[] = [log.event, readiness.observe];
  const observe = fanOut(observers);
  let api: { close(): Promise<void> } | undefined;
  let opened: LeaseDeps | undefined;
  let warm: WarmTargets | undefined;
  // Many requests and revocations at once: the store's commits share their syncs to disk.
  ctx.groupCommit = true;
  try {
    if (listen) {
      // The API listens before the store is open, so that /livez answers while a store that
      // is away is waited for (/readyz and every request answer 503 meanwhile).
      const [{ startApi }, { createMetrics }] = await Promise.all([import('./api/server.js'), import('./metrics.js')]);
      const metrics = await createMetrics(() => opened?.store);
      observers.push(metrics.observe);
      const running = await startApi({
        host: listen.host,
        port: listen.port,
        tls,
        deps: () => opened ?? throwNotOpen(),
        readiness: async () => (opened ? readiness.problem() ?? (await storeAnswers(opened.store)) : 'the store is not open yet'),
        metrics: () => metrics.render(),
        observed: (e) => {
          metrics.request(e);
          log.request(e);
        },
        issued: (lease) => metrics.issued(lease),
      });
      api = running;
      log.line({ event: 'listening', url: running.url });
    }
    const deps = flags.once ? await ctx.leaseDeps() : await openPatiently(() => ctx.leaseDeps(), controller.signal, new StoreHealth(Date.now, observe));
    if (!deps) return;
    deps.progress = undefined;
    // Requests warn nobody: a warning for the client would go to the daemon's terminal. They
    // issue leases over warm admin connections (the revocation loop opens its own).
    if (listen) {
      warm = warmTargets(deps.connect);
      deps.connect = warm.plain;
    }
    opened = { ...deps, warn: undefined, connect: warm?.connect ?? deps.connect };
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
      observe,
    );
  } finally {
    await api?.close();
    await warm?.close();
    ready?.remove();
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
  }
}

function throwNotOpen(): never {
  throw storeError('store_unavailable', 'The store is not open yet.');
}

async function storeAnswers(store: { leases: { nextDue(): Promise<number | undefined> } }): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      store.leases.nextDue(),
      new Promise((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error('timeout')), STORE_PING_MS);
      }),
    ]);
    return undefined;
  } catch {
    return 'the store cannot be reached';
  } finally {
    clearTimeout(timer);
  }
}

function readTls(listen: Listen): { cert: Buffer; key: Buffer } {
  const read = (file: string, flag: string) => {
    try {
      return readFileSync(file);
    } catch (error) {
      throw usageError('tls_file', `${flag} ${file} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'}).`);
    }
  };
  return { cert: read(listen.tls!.cert, '--tls-cert'), key: read(listen.tls!.key, '--tls-key') };
}

/** Set by the bundler; read from package.json when running from tsc's output. */
declare const SY_VERSION: string | undefined;

function syVersion(): string {
  if (typeof SY_VERSION === 'string') return SY_VERSION;
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}
