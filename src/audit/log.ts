import { createHash } from 'node:crypto';
import { appendFileSync, closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { join } from 'node:path';

/**
 * The audit log: append-only JSON lines in SY_HOME, each chained to the one before by a
 * SHA-256 hash, so an edited, removed or reordered line is found by `sy audit verify`.
 * Lines hold who, what, where and the outcome — never a password or key.
 */
export const AUDIT_FILE = 'audit.log';
export const GENESIS_HASH = '0'.repeat(64);

export interface AuditEvent {
  action: string;
  path?: string;
  lease_id?: string;
  db_user?: string;
  target?: string;
  ttl?: number;
  outcome: 'success' | 'failure';
  error?: string;
  detail?: Record<string, unknown>;
}

export interface AuditEntry extends AuditEvent {
  time: string;
  actor: string;
  prev: string;
  hash: string;
}

export function defaultActor(env: NodeJS.ProcessEnv): string {
  if (env.SY_CLIENT_ID) return env.SY_CLIENT_ID;
  let user: string;
  try {
    user = userInfo().username;
  } catch {
    user = env.USER ?? String(process.getuid?.() ?? 'unknown');
  }
  return `${user}@${hostname()}`;
}

/**
 * The hash of a line covers everything but the hash itself, keyed by the store (an HMAC
 * under a key derived from the data key): rewriting the log consistently needs the key.
 */
export type AuditMac = (text: string) => string;

/** The hash of the last line appended, kept outside the log (in the store). */
export interface AuditHead {
  read(): string | undefined;
  write(hash: string): void;
}

export function entryHash(entry: Omit<AuditEntry, 'hash'>, mac: AuditMac): string {
  return mac(JSON.stringify(entry));
}

export class AuditLog {
  readonly file: string;

  constructor(
    home: string,
    private readonly actor: string,
    /** Serialises appenders across processes (the store's write lock). */
    private readonly exclusive: <T>(fn: () => T) => T,
    private readonly mac: AuditMac,
    /** Where the hash of the newest line is kept, so removing lines from the end is found. */
    private readonly head?: AuditHead,
  ) {
    this.file = join(home, AUDIT_FILE);
  }

  /** Appends one line. A full disk must not undo the operation it records, so failures only warn. */
  append(event: AuditEvent): void {
    this.appendAll([event]);
  }

  /** Appends several lines with one lock and one write. */
  appendAll(events: AuditEvent[]): void {
    if (events.length === 0) return;
    try {
      this.exclusive(() => {
        let prev = lastHash(this.file);
        let text = '';
        for (const event of events) {
          const body: Omit<AuditEntry, 'hash'> = { time: new Date().toISOString(), actor: this.actor, ...withoutUndefined(event), prev };
          const entry: AuditEntry = { ...body, hash: entryHash(body, this.mac) };
          text += `${JSON.stringify(entry)}\n`;
          prev = entry.hash;
        }
        appendFileSync(this.file, text, { mode: 0o600 });
        this.head?.write(prev);
      });
    } catch (error) {
      process.stderr.write(`sy: warning: could not write the audit log (${(error as NodeJS.ErrnoException).code ?? 'error'}).\n`);
    }
  }
}

function withoutUndefined(event: AuditEvent): AuditEvent {
  return Object.fromEntries(Object.entries(event).filter(([, v]) => v !== undefined)) as unknown as AuditEvent;
}

/** Reads only the tail of the file: appending stays cheap however long the log grows. */
function lastHash(file: string): string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return GENESIS_HASH;
  }
  try {
    const size = fstatSync(fd).size;
    let window = 4096;
    for (;;) {
      const start = Math.max(0, size - window);
      const buffer = Buffer.alloc(size - start);
      readSync(fd, buffer, 0, buffer.length, start);
      const lines = buffer.toString('utf8').split('\n').filter((l) => l.trim() !== '');
      const complete = start === 0 ? lines : lines.slice(1);
      const last = complete[complete.length - 1];
      if (last !== undefined) {
        try {
          return (JSON.parse(last) as AuditEntry).hash ?? GENESIS_HASH;
        } catch {
          // A torn or edited last line: chain to its digest so verify reports that line.
          return createHash('sha256').update(last).digest('hex');
        }
      }
      if (start === 0) return GENESIS_HASH;
      window *= 4;
    }
  } finally {
    closeSync(fd);
  }
}
