import { closeSync, fstatSync, readSync } from 'node:fs';
import { type AuditEntry, type AuditMac, type AuditPosition, EMPTY_LOG, GENESIS_HASH, entryHash, logLeftBehind, openLog } from './log.js';

export interface VerifyResult {
  ok: boolean;
  lines: number;
  /** 1-based number of the first line that fails, and why. */
  firstBad?: { line: number; reason: string };
}

/** The whole log, read without following a link; empty when there is none. */
function readText(file: string): string {
  const fd = openLog(file, 'read');
  if (fd === undefined) return '';
  try {
    const buffer = Buffer.alloc(fstatSync(fd).size);
    let done = 0;
    while (done < buffer.length) {
      const n = readSync(fd, buffer, done, buffer.length - done, done);
      if (n === 0) break;
      done += n;
    }
    return buffer.subarray(0, done).toString('utf8');
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
 * Recomputes the chain (an edited line fails its own hash, a removed or moved one breaks the
 * link), then compares the file with the store's record of its end: lines cut from the end
 * leave a chain that is valid but short, however many lines were appended after them.
 */
export function verifyAuditLog(file: string, mac: AuditMac, recorded: AuditPosition, place: string): VerifyResult {
  const lines = readLines(file);
  // The store was copied here without its log: there is no log of this directory yet.
  const head = logLeftBehind(recorded, lines.length, place) ? EMPTY_LOG : recorded;
  const bad = (line: number, reason: string): VerifyResult => ({ ok: false, lines: lines.length, firstBad: { line, reason } });
  let prev = GENESIS_HASH;
  let bytes = 0;
  let bytesAtHead: number | undefined = head.lines === 0 ? 0 : undefined;
  for (let i = 0; i < lines.length; i++) {
    let entry: AuditEntry;
    try {
      entry = JSON.parse(lines[i]) as AuditEntry;
    } catch {
      return bad(i + 1, 'is not a valid JSON line');
    }
    const { hash, ...body } = entry;
    if (entryHash(body, mac) !== hash) return bad(i + 1, 'was edited: its hash does not match its content');
    if (entry.prev !== prev) return bad(i + 1, 'does not follow the line before it: a line was removed, inserted or reordered');
    prev = hash;
    bytes += Buffer.byteLength(lines[i]) + 1;
    if (i + 1 === head.lines) {
      if (hash !== head.hash) return bad(i + 1, 'is not the line the store recorded as the end of the log: the log was replaced');
      bytesAtHead = bytes;
    }
  }
  if (head.lines < 0 || head.lines > lines.length) {
    return bad(lines.length + 1, 'is missing: lines were removed from the end of the log');
  }
  if (bytesAtHead !== head.bytes) return bad(head.lines, 'does not end where the store recorded: bytes before it were changed');
  return { ok: true, lines: lines.length };
}

/**
 * The position of the line with this hash (a store of schema 1 kept only the newest hash);
 * undefined when the log holds no such line.
 */
export function locateAuditLine(file: string, hash: string): AuditPosition | undefined {
  let bytes = 0;
  const lines = readLines(file);
  for (let i = 0; i < lines.length; i++) {
    bytes += Buffer.byteLength(lines[i]) + 1;
    try {
      if ((JSON.parse(lines[i]) as AuditEntry).hash === hash) return { lines: i + 1, bytes, hash };
    } catch {
      // not this line
    }
  }
  return undefined;
}

export interface AuditFilter {
  since?: number;
  leaseId?: string;
  path?: string;
  limit?: number;
}

export function readAuditLog(file: string, filter: AuditFilter): AuditEntry[] {
  const entries: AuditEntry[] = [];
  for (const line of readLines(file)) {
    let entry: AuditEntry;
    try {
      entry = JSON.parse(line) as AuditEntry;
    } catch {
      continue;
    }
    if (filter.since !== undefined && Date.parse(entry.time) < filter.since) continue;
    if (filter.leaseId !== undefined && entry.lease_id !== filter.leaseId) continue;
    if (filter.path !== undefined && entry.path !== filter.path) continue;
    entries.push(entry);
  }
  return filter.limit === undefined ? entries : entries.slice(-filter.limit);
}
