import { readFileSync } from 'node:fs';
import { type AuditEntry, type AuditMac, GENESIS_HASH, entryHash } from './log.js';

export interface VerifyResult {
  ok: boolean;
  lines: number;
  /** 1-based number of the first line that fails, and why. */
  firstBad?: { line: number; reason: string };
}

function readLines(file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** Recomputes the chain: an edited line fails its own hash, a removed or moved one breaks the link. */
export function verifyAuditLog(file: string, mac: AuditMac, head?: string): VerifyResult {
  const lines = readLines(file);
  if (head === 'invalid') {
    return { ok: false, lines: lines.length, firstBad: { line: lines.length + 1, reason: 'cannot be checked: the record of the last line was tampered with' } };
  }
  let headSeen = head === undefined;
  let prev = GENESIS_HASH;
  for (let i = 0; i < lines.length; i++) {
    let entry: AuditEntry;
    try {
      entry = JSON.parse(lines[i]) as AuditEntry;
    } catch {
      return { ok: false, lines: lines.length, firstBad: { line: i + 1, reason: 'is not a valid JSON line' } };
    }
    const { hash, ...body } = entry;
    if (entryHash(body, mac) !== hash) {
      return { ok: false, lines: lines.length, firstBad: { line: i + 1, reason: 'was edited: its hash does not match its content' } };
    }
    if (entry.prev !== prev) {
      return { ok: false, lines: lines.length, firstBad: { line: i + 1, reason: 'does not follow the line before it: a line was removed, inserted or reordered' } };
    }
    prev = hash;
    if (hash === head) headSeen = true;
  }
  if (!headSeen) {
    return { ok: false, lines: lines.length, firstBad: { line: lines.length + 1, reason: 'is missing: lines were removed from the end of the log' } };
  }
  return { ok: true, lines: lines.length };
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
