import { closeSync, constants, fchmodSync, fstatSync, ftruncateSync, openSync, readSync, statSync, writeSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { join } from 'node:path';
import { SyError, storeError } from '../errors.js';

/**
 * The audit log: append-only JSON lines in SY_HOME, each chained to the one before by an
 * HMAC, so an edited, removed or reordered line is found by `sy audit verify`. Where the log
 * ends (lines, bytes, last hash) is kept in the store under the same lock as the write, so
 * lines cut from the end are found too, however many writes come after: every append first
 * checks that the file still ends there. Lines hold who, what, where and the outcome —
 * never a password or key.
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

/** Where the log ends: its number of lines, its length in bytes and the hash of its last line. */
export interface AuditPosition {
  lines: number;
  bytes: number;
  hash: string;
  /** The SY_HOME directory the log was written in (see homeIdentity). */
  place?: string;
}

/**
 * The identity (device and inode) of the SY_HOME directory. A store copied into another
 * directory without its log (an init container copies only sy.db) starts a new log there;
 * a log missing from the directory it was written in was deleted. Telling the two apart
 * by the directory itself, not its path: every pod's SY_HOME has the same path.
 */
export function homeIdentity(home: string): string {
  const stats = statSync(home, { bigint: true });
  return `${stats.dev}:${stats.ino}`;
}

/** A head that belongs to a log written in another directory, which is not here. */
export function logLeftBehind(head: AuditPosition, size: number, place: string): boolean {
  return size === 0 && head.bytes > 0 && head.place !== undefined && head.place !== place;
}

export const EMPTY_LOG: AuditPosition = { lines: 0, bytes: 0, hash: GENESIS_HASH };

/** The position of the log's end, kept outside the log (in the store). */
export interface AuditHead {
  /** Throws when the record is missing or was changed without the key. */
  read(): AuditPosition;
  write(position: AuditPosition): void;
}

export function entryHash(entry: Omit<AuditEntry, 'hash'>, mac: AuditMac): string {
  return mac(JSON.stringify(entry));
}

export class AuditLog {
  readonly file: string;

  constructor(
    private readonly home: string,
    private readonly actor: string,
    /** Serialises appenders across processes (the store's write lock). */
    private readonly exclusive: <T>(fn: () => T) => T,
    private readonly mac: AuditMac,
    private readonly head: AuditHead,
  ) {
    this.file = join(home, AUDIT_FILE);
  }

  /**
   * Refuses, before an operation, a log that the next append would refuse: a command must
   * not change anything it could not then record. Read-only, without the lock; the append
   * checks again under it.
   */
  check(): void {
    const head = this.head.read();
    const fd = openLog(this.file, 'check');
    try {
      findEnd(fd, head, this.mac, false, this.place());
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }

  private place(): string {
    return homeIdentity(this.home);
  }

  /** Appends one line. A full disk must not undo the operation it records, so I/O failures only warn. */
  append(event: AuditEvent): void {
    this.appendAll([event]);
  }

  /** Appends several lines with one lock and one write. A log that was tampered with is refused (exit 4). */
  appendAll(events: AuditEvent[]): void {
    if (events.length === 0) return;
    try {
      this.exclusive(() => {
        const head = this.head.read();
        const place = this.place();
        const fd = openLog(this.file, 'append')!;
        try {
          const end = findEnd(fd, head, this.mac, true, place);
          let prev = end.hash;
          let text = '';
          // A new log in a new directory says which log came before it.
          const restart: AuditEvent[] = end === EMPTY_LOG && head.bytes > 0
            ? [{ action: 'audit.start', outcome: 'success', detail: { previous_lines: head.lines, previous_hash: head.hash } }]
            : [];
          for (const event of [...restart, ...events]) {
            const body: Omit<AuditEntry, 'hash'> = { time: new Date().toISOString(), actor: this.actor, ...withoutUndefined(event), prev };
            const entry: AuditEntry = { ...body, hash: entryHash(body, this.mac) };
            text += `${JSON.stringify(entry)}\n`;
            prev = entry.hash;
          }
          const bytes = Buffer.from(text, 'utf8');
          writeSync(fd, bytes);
          this.head.write({ lines: end.lines + restart.length + events.length, bytes: end.bytes + bytes.length, hash: prev, place });
        } finally {
          closeSync(fd);
        }
      });
    } catch (error) {
      if (error instanceof SyError) throw error;
      process.stderr.write(`sy: warning: could not write the audit log (${(error as NodeJS.ErrnoException).code ?? 'error'}).\n`);
    }
  }
}

function withoutUndefined(event: AuditEvent): AuditEvent {
  return Object.fromEntries(Object.entries(event).filter(([, v]) => v !== undefined)) as unknown as AuditEvent;
}

const logChanged = (how: string): SyError =>
  storeError('audit_log_tampered', `The audit log was changed by someone without the key: ${how}.`,
    'Run `sy audit verify`, and restore audit.log from a backup; nothing was done.');

/**
 * Opens the log without following a link (O_NOFOLLOW): a link planted in SY_HOME must not
 * make sy append to, or read, another file. For appending (and for the check before it), a
 * file that another name also points to (a hard link) or that another user owns is refused
 * for the same reason, and one we own is made 0600. Undefined when there is no log and
 * `use` does not create one.
 */
export function openLog(file: string, use: 'append' | 'check' | 'read'): number | undefined {
  const flags = use === 'append' ? constants.O_RDWR | constants.O_APPEND | constants.O_CREAT : constants.O_RDONLY;
  let fd: number;
  try {
    fd = openSync(file, flags | constants.O_NOFOLLOW, 0o600);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && use !== 'append') return undefined;
    if (code === 'ELOOP') throw storeError('audit_log_link', `${file} is a symbolic link, which sy does not follow.`, 'Replace it with the real log, or restore it from a backup.');
    throw error;
  }
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile()) throw storeError('audit_log_link', `${file} is not a regular file.`, 'Restore audit.log from a backup.');
    if (use !== 'read') {
      if (stats.nlink > 1) throw storeError('audit_log_link', `${file} has other names (hard links), so sy will not write to it.`, 'Remove the other links.');
      if (process.getuid !== undefined && stats.uid !== process.getuid()) {
        throw storeError('audit_log_owner', `${file} belongs to another user (uid ${stats.uid}).`, 'Restore audit.log from a backup of your own.');
      }
    }
    if (use === 'append' && (stats.mode & 0o777) !== 0o600) fchmodSync(fd, 0o600);
    return fd;
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}

function readAt(fd: number, start: number, length: number): Buffer {
  const buffer = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buffer, done, length - done, start + done);
    if (n === 0) break;
    done += n;
  }
  return buffer.subarray(0, done);
}

/**
 * Where the log really ends, given where the store says it ends: the bytes up to the head
 * must be there and end with the head's line. Lines past the head are accepted only if
 * they continue the chain with valid MACs (a writer killed between writing the file and
 * committing the head leaves them); a torn last line (a crash or a full disk mid-write) is
 * cut off when `repair` is set. Anything else was written by someone without the key. A
 * store copied into another directory without its log starts a new one (EMPTY_LOG).
 */
function findEnd(fd: number | undefined, head: AuditPosition, mac: AuditMac, repair: boolean, place: string): AuditPosition {
  const size = fd === undefined ? 0 : fstatSync(fd).size;
  if (logLeftBehind(head, size, place)) return EMPTY_LOG;
  if (head.bytes < 0 || size < head.bytes) throw logChanged('lines were removed from its end');
  if (head.bytes > 0 && lineEndingAt(fd!, head.bytes)?.hash !== head.hash) throw logChanged('it no longer ends with the line the store recorded as its last');
  let end = head;
  if (size === head.bytes) return end;
  const extra = readAt(fd!, head.bytes, size - head.bytes).toString('utf8');
  const parts = extra.split('\n');
  const torn = parts.pop()!;
  for (const line of parts) {
    const entry = parseLine(line);
    if (!entry) throw logChanged(`lines after the end the store recorded are not sy's`);
    const { hash, ...body } = entry;
    if (entry.prev !== end.hash || entryHash(body, mac) !== hash) throw logChanged(`lines after the end the store recorded are not sy's`);
    end = { lines: end.lines + 1, bytes: end.bytes + Buffer.byteLength(line) + 1, hash };
  }
  if (torn !== '' && repair) ftruncateSync(fd!, end.bytes);
  return end;
}

function parseLine(line: string): AuditEntry | undefined {
  try {
    const entry = JSON.parse(line) as AuditEntry;
    return typeof entry === 'object' && entry !== null && typeof entry.hash === 'string' ? entry : undefined;
  } catch {
    return undefined;
  }
}

/** The line whose newline is the byte before `end`, read backwards in growing windows. */
function lineEndingAt(fd: number, end: number): AuditEntry | undefined {
  let window = 4096;
  for (;;) {
    const start = Math.max(0, end - window);
    const chunk = readAt(fd, start, end - start);
    if (chunk.length !== end - start || chunk[chunk.length - 1] !== 0x0a) return undefined;
    const previous = chunk.lastIndexOf(0x0a, chunk.length - 2);
    if (previous >= 0 || start === 0) return parseLine(chunk.subarray(previous + 1, chunk.length - 1).toString('utf8'));
    window *= 4;
  }
}
