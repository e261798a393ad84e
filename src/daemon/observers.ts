import { rmSync, writeFileSync } from 'node:fs';
import type { DaemonEvent } from './loop.js';
import type { ApiRequestEvent } from './api/server.js';

/** Something that watches the daemon's events: the log, the ready file, readiness, metrics. */
export type Observer = (event: DaemonEvent) => void;

export const fanOut = (observers: (Observer | undefined)[]): Observer => (event) => {
  for (const observe of observers) observe?.(event);
};

/**
 * The daemon's log: one line per event on stdout, JSON (`--log-format json`, the default)
 * or text for people. A pass is not an event worth a line (the metrics count them); a
 * request is, when the API serves. No line holds a secret: events carry ids, paths, user
 * names and error sentences, which never contain a password.
 */
export function logObserver(format: 'json' | 'text', write: (line: string) => void): { event: Observer; request: (e: ApiRequestEvent) => void; line: (e: Record<string, unknown>) => void } {
  const line = (e: Record<string, unknown>) => write(`${JSON.stringify({ time: new Date().toISOString(), ...e })}\n`);
  return {
    event: (e) => {
      if (e.event === 'pass') return;
      write(`${format === 'json' ? JSON.stringify({ time: new Date().toISOString(), ...e }) : textLine(e)}\n`);
    },
    request: (e) => {
      if (format === 'json') line({ event: 'request', ...e });
      else write(`${new Date().toISOString()} ${e.method} ${e.route} ${e.status} ${e.duration_ms} ms${e.client ? ` client ${e.client}` : ''}${e.error ? ` (${e.error})` : ''}\n`);
    },
    line: (e) => (format === 'json' ? line(e) : write(`${new Date().toISOString()} ${Object.entries(e).map(([k, v]) => `${k}=${String(v)}`).join(' ')}\n`)),
  };
}

function textLine(e: DaemonEvent): string {
  const time = new Date().toISOString();
  switch (e.event) {
    case 'start':
      return `${time} daemon started${e.pool ? ` (pool ${e.pool})` : ' (every pool)'}`;
    case 'pass':
      return `${time} pass: ${e.revoked} revoked, ${e.failed} failed in ${e.duration_ms} ms`;
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

/**
 * `--ready-file`: touched after each pass and heartbeat that succeeded, removed at exit, for
 * a Kubernetes exec probe that checks its age. A file that cannot be written is said once;
 * the daemon goes on revoking.
 */
export class ReadyFile {
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

/**
 * `/readyz`: ready while the store answers and the last pass is recent. A pass is stale
 * after two intervals and ten seconds (the loop passes at least once an interval); until
 * the first pass the daemon is not ready.
 */
export class Readiness {
  private lastPass: number | undefined;
  private storeDown = false;

  constructor(
    private readonly staleAfterMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  readonly observe: Observer = (e) => {
    if (e.event === 'pass') {
      this.lastPass = this.now();
      this.storeDown = false;
    } else if (e.event === 'store_unreachable') this.storeDown = true;
    else if (e.event === 'store_reconnected') this.storeDown = false;
  };

  /** Undefined when ready; else why not (no secret, path or user in it). */
  problem(): string | undefined {
    if (this.storeDown) return 'the store cannot be reached';
    if (this.lastPass === undefined) return 'no revocation pass has completed yet';
    if (this.now() - this.lastPass > this.staleAfterMs) return 'the last revocation pass is stale';
    return undefined;
  }
}
