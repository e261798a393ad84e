import { closeSync, constants, fchmodSync, fstatSync, ftruncateSync, openSync, readSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { SyError, storeError } from '../errors.js';
import type { AuditTrail, AuditVerifyResult } from './trail.js';
import {
  type AuditEntry,
  type AuditEvent,
  type AuditFilter,
  type AuditMac,
  type AuditPosition,
  GENESIS_HASH,
  chainEntries,
  entryHash,
  parseEntry,
  selectEntries,
  verifyChain,
} from './chain.js';


/** How often a check without the lock reads the head again when writers moved it meanwhile. */
const END_TRIES = 20;
/**
 * The audit log of a store in SY_HOME: the chain's lines appended to a file next to sy.db.
 * Where the log ends (lines, bytes, last hash) is kept in the store under the same lock as
 * the write, so lines cut from the end are found too, however many writes come after:
 * every append first checks that the file still ends there.
 */
export const AUDIT_FILE = 'audit.log';

/** Where a file log ends, as the store records it. */
export interface FilePosition extends AuditPosition {
  bytes: number;
  /** The SY_HOME directory the log was written in (see homeIdentity). */
  place?: string;
}

export const EMPTY_LOG: FilePosition = { lines: 0, bytes: 0, hash: GENESIS_HASH };

/** The position of the log's end, kept outside the log (in the store). */
export interface AuditHead {
  /**
   * Throws when the record is missing or was changed without the key. `generation`: the
   * store's, read with it; the append that writes the head next moves it to `generation + 1`.
   */
  read(): FilePosition & { generation: number };
  write(position: FilePosition): void;
}

export function encodeAuditPosition(position: FilePosition): string {
  return JSON.stringify({ lines: position.lines, bytes: position.bytes, hash: position.hash, place: position.place });
}

export function decodeAuditPosition(text: string): FilePosition | undefined {
  try {
    const { lines, bytes, hash, place } = JSON.parse(text) as Partial<FilePosition>;
    const count = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= -1;
    if (count(lines) && count(bytes) && typeof hash === 'string' && /^[0-9a-f]{64}$/.test(hash) && (place === undefined || typeof place === 'string')) {
      return { lines, bytes, hash, place };
    }
  } catch {
    // fall through
  }
  return undefined;
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
function logLeftBehind(head: FilePosition, size: number, place: string): boolean {
  return size === 0 && head.bytes > 0 && head.place !== undefined && head.place !== place;
}

export interface FileAuditLogOptions {
  home: string;
  actor: string;
  /** Serialises appenders across processes (the store's write lock). */
  exclusive: <T>(fn: () => T) => T;
  mac: AuditMac;
  head: AuditHead;
  /** Where an I/O failure of the log is said (the CLI prints it on stderr). */
  warn: (text: string) => void;
}

export class FileAuditLog implements AuditTrail {
  readonly file: string;

  constructor(private readonly options: FileAuditLogOptions) {
    this.file = join(options.home, AUDIT_FILE);
  }

  /**
   * Read-only, without the lock; the append checks again under it.
   */
  async check(): Promise<void> {
    this.end('check');
  }

  /** check(), for a caller already in the store's transaction (the ledger's recount). */
  checkEnd(): void {
    this.end('check');
  }

  async head(): Promise<AuditPosition> {
    const { lines, bytes, hash } = this.end('read');
    return { lines, bytes, hash };
  }

  /** Where the log really ends, checked against the store's record. */
  private end(use: 'check' | 'read'): FilePosition {
    for (let attempt = 1; ; attempt++) {
      const head = this.options.head.read();
      const fd = openLog(this.file, use);
      try {
        return findEnd(fd, head, this.options.mac, false, this.place());
      } catch (error) {
        // Without the lock, other processes (a daemon) may have appended and committed between
        // the head's read and the file's: a head that has moved on since is that race, not a
        // change by someone without the key. A head that stays put is checked as it is.
        if (attempt < END_TRIES && isAheadOfHead(error) && this.options.head.read().generation !== head.generation) continue;
        throw error;
      } finally {
        if (fd !== undefined) closeSync(fd);
      }
    }
  }

  private place(): string {
    return homeIdentity(this.options.home);
  }

  /** Appends the lines with one lock and one write. */
  async append(events: AuditEvent[]): Promise<void> {
    if (events.length === 0) return;
    const { mac, actor } = this.options;
    try {
      this.options.exclusive(() => {
        const head = this.options.head.read();
        const place = this.place();
        const fd = openLog(this.file, 'append')!;
        try {
          const end = findEnd(fd, head, mac, true, place);
          // A new log in a new directory says which log came before it.
          const restart: AuditEvent[] = end === EMPTY_LOG && head.bytes > 0
            ? [{ action: 'audit.start', outcome: 'success', detail: { previous_lines: head.lines, previous_hash: head.hash } }]
            : [];
          const entries = chainEntries([...restart, ...events], { prev: end.hash, actor, mac, gen: head.generation + 1 });
          const bytes = Buffer.from(entries.map((entry) => `${JSON.stringify(entry)}\n`).join(''), 'utf8');
          writeSync(fd, bytes);
          this.options.head.write({ lines: end.lines + entries.length, bytes: end.bytes + bytes.length, hash: entries[entries.length - 1].hash, place });
        } finally {
          closeSync(fd);
        }
      });
    } catch (error) {
      if (error instanceof SyError) throw error;
      this.options.warn(`warning: could not write the audit log (${(error as NodeJS.ErrnoException).code ?? 'error'}).`);
    }
  }

  async read(filter: AuditFilter): Promise<AuditEntry[]> {
    return selectEntries(readLines(this.file), filter);
  }

  /** The head is read under the lock, then the file: an append writes the file before it moves the head. */
  async verify(): Promise<AuditVerifyResult> {
    const recorded = this.options.exclusive(() => this.options.head.read());
    const lines = readLines(this.file);
    // The store was copied here without its log: there is no log of this directory yet.
    const head = logLeftBehind(recorded, lines.length, this.place()) ? EMPTY_LOG : recorded;
    return { ...verifyChain(lines, this.options.mac, head, recorded.generation + 1), location: this.file };
  }
}

const logChanged = (how: string): SyError =>
  storeError('audit_log_tampered', `The audit log was changed by someone without the key: ${how}.`,
    'Run `sy audit verify`, and restore audit.log from a backup; nothing was done.');

/**
 * Refusals of lines past the head that belong to later generations. Read in a snapshot (the
 * store's read transaction) or between two reads without the lock, the head may be commits
 * behind a file that other processes kept appending to: the caller may look again with a
 * fresh head, and refuses only if the head stays behind.
 */
const aheadOfHead = new WeakSet<SyError>();
export const isAheadOfHead = (error: unknown): boolean => error instanceof SyError && aheadOfHead.has(error);

/**
 * Opens the log without following a link (O_NOFOLLOW): a link planted in SY_HOME must not
 * make sy append to, or read, another file. For appending (and for the check before it), a
 * file that another name also points to (a hard link) or that another user owns is refused
 * for the same reason, and one we own is made 0600. Undefined when there is no log and
 * `use` does not create one.
 */
function openLog(file: string, use: 'append' | 'check' | 'read'): number | undefined {
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
function findEnd(fd: number | undefined, head: FilePosition & { generation: number }, mac: AuditMac, repair: boolean, place: string): FilePosition {
  const size = fd === undefined ? 0 : fstatSync(fd).size;
  if (logLeftBehind(head, size, place)) return EMPTY_LOG;
  if (head.bytes < 0 || size < head.bytes) throw logChanged('lines were removed from its end');
  if (head.bytes > 0 && lineEndingAt(fd!, head.bytes)?.hash !== head.hash) throw logChanged('it no longer ends with the line the store recorded as its last');
  let end: FilePosition = head;
  if (size === head.bytes) return end;
  const extra = readAt(fd!, head.bytes, size - head.bytes).toString('utf8');
  const parts = extra.split('\n');
  const torn = parts.pop()!;
  for (const line of parts) {
    const entry = parseEntry(line);
    if (!entry) throw logChanged(`lines after the end the store recorded are not sy's`);
    const { hash, ...body } = entry;
    if (entry.prev !== end.hash || entryHash(body, mac) !== hash) throw logChanged(`lines after the end the store recorded are not sy's`);
    // An append that died before its head was saved wrote at most the next generation's lines.
    if ((entry.gen ?? 0) > head.generation + 1) {
      const error = logChanged('lines after the end the store recorded were written after it, so its record of that end was put back');
      aheadOfHead.add(error);
      throw error;
    }
    end = { lines: end.lines + 1, bytes: end.bytes + Buffer.byteLength(line) + 1, hash };
  }
  if (torn !== '' && repair) ftruncateSync(fd!, end.bytes);
  return end;
}

/** The line whose newline is the byte before `end`, read backwards in growing windows. */
function lineEndingAt(fd: number, end: number): AuditEntry | undefined {
  let window = 4096;
  for (;;) {
    const start = Math.max(0, end - window);
    const chunk = readAt(fd, start, end - start);
    if (chunk.length !== end - start || chunk[chunk.length - 1] !== 0x0a) return undefined;
    const previous = chunk.lastIndexOf(0x0a, chunk.length - 2);
    if (previous >= 0 || start === 0) return parseEntry(chunk.subarray(previous + 1, chunk.length - 1).toString('utf8'));
    window *= 4;
  }
}

/** The whole log, read without following a link; empty when there is none. */
function readText(file: string): string {
  const fd = openLog(file, 'read');
  if (fd === undefined) return '';
  try {
    return readAt(fd, 0, fstatSync(fd).size).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

function readLines(file: string): string[] {
  const lines = readText(file).split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/**
 * The position of the line with this hash (a store of schema 1 kept only the newest hash);
 * undefined when the log holds no such line.
 */
export function locateAuditLine(file: string, hash: string): FilePosition | undefined {
  let bytes = 0;
  const lines = readLines(file);
  for (let i = 0; i < lines.length; i++) {
    bytes += Buffer.byteLength(lines[i]) + 1;
    if (parseEntry(lines[i])?.hash === hash) return { lines: i + 1, bytes, hash };
  }
  return undefined;
}
