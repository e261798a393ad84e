import { createHmac, hkdfSync } from 'node:crypto';

/**
 * The audit chain, whatever keeps its lines (a file in SY_HOME, a table in PostgreSQL):
 * JSON lines, each chained to the one before by an HMAC, so an edited, removed or reordered
 * line is found by `sy audit verify`. Where the chain ends is recorded apart from the lines
 * (in the store, authenticated), so lines cut from the end are found too. Lines hold who,
 * what, where and the outcome — never a password or key.
 */
export const GENESIS_HASH = '0'.repeat(64);

export interface AuditEvent {
  action: string;
  /**
   * Who acted, when not the one the store was opened for: a daemon that works for an API
   * client names it (`client:<name>`, see clientActor). Written where the actor always is.
   */
  actor?: string;
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

/**
 * The hash of a line covers everything but the hash itself, keyed by the store (an HMAC
 * under a key derived from the data key): rewriting the log consistently needs the key.
 */
export type AuditMac = (text: string) => string;

/** The chain's key, derived from the store's data key: every store with that key computes the same chain. */
export const auditKey = (dataKey: Buffer): Buffer => Buffer.from(hkdfSync('sha256', dataKey, Buffer.alloc(0), 'sy/audit/v1', 32));

export function auditMac(dataKey: Buffer): AuditMac {
  const key = auditKey(dataKey);
  return (text) => createHmac('sha256', key).update(text).digest('hex');
}

/**
 * Where the log ends: its number of lines and the hash of its last line; a file log also
 * records its length in bytes, so that bytes changed before the last line are found.
 */
export interface AuditPosition {
  lines: number;
  hash: string;
  bytes?: number;
}

export interface AuditFilter {
  since?: number;
  leaseId?: string;
  path?: string;
  /** The last N entries. */
  limit?: number;
}

export interface VerifyResult {
  ok: boolean;
  lines: number;
  /** 1-based number of the first line that fails, and why. */
  firstBad?: { line: number; reason: string };
}

export function entryHash(entry: Omit<AuditEntry, 'hash'>, mac: AuditMac): string {
  return mac(JSON.stringify(entry));
}

/**
 * The entries for `events`, chained on from the line whose hash is `prev`, each stamped
 * with its time and the actor. A line is `JSON.stringify(entry)`: the hash covers exactly
 * that text without its `hash` field.
 */
export function chainEntries(events: AuditEvent[], options: { prev: string; actor: string; mac: AuditMac }): AuditEntry[] {
  let prev = options.prev;
  return events.map((event) => {
    const body: Omit<AuditEntry, 'hash'> = { time: new Date().toISOString(), actor: options.actor, ...withoutUndefined(event), prev };
    const entry: AuditEntry = { ...body, hash: entryHash(body, options.mac) };
    prev = entry.hash;
    return entry;
  });
}

function withoutUndefined(event: AuditEvent): AuditEvent {
  return Object.fromEntries(Object.entries(event).filter(([, v]) => v !== undefined)) as unknown as AuditEvent;
}

/** A line as an entry; undefined when it is not JSON or has no hash. */
export function parseEntry(line: string): AuditEntry | undefined {
  try {
    const entry = JSON.parse(line) as AuditEntry;
    return typeof entry === 'object' && entry !== null && typeof entry.hash === 'string' ? entry : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Recomputes the chain of `lines` (an edited line fails its own hash, a removed or moved one
 * breaks the link), then compares it with the store's record of its end: lines cut from the
 * end leave a chain that is valid but short, however many lines were appended after them.
 * Bytes are compared when the record has them (a file log).
 */
export function verifyChain(lines: string[], mac: AuditMac, head: AuditPosition): VerifyResult {
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
  if (head.bytes !== undefined && bytesAtHead !== head.bytes) return bad(head.lines, 'does not end where the store recorded: bytes before it were changed');
  return { ok: true, lines: lines.length };
}

/** The lines that parse, filtered; `limit` keeps the last N. */
export function selectEntries(lines: Iterable<string>, filter: AuditFilter): AuditEntry[] {
  const entries: AuditEntry[] = [];
  for (const line of lines) {
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
