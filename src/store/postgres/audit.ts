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
} from '../../audit/chain.js';
import { SyError, storeError } from '../../errors.js';
import type { AuditTrail, AuditVerifyResult, StoreOptions } from '../store.js';
import type { Sql, StoreConnection } from './connection.js';
import type { Roots } from '../records.js';
import { AUDIT_HEAD, type PgMeta, tampered } from './meta.js';

const HEAD_WHAT = "the audit log's end";
/** Failures of the store's server, not of the log: the append only warns. */
const UNWRITTEN = new Set(['store_unreachable', 'store_timeout', 'store_io']);

export const EMPTY_CHAIN: AuditPosition = { lines: 0, hash: GENESIS_HASH };

export const encodeChainHead = (head: AuditPosition): string => JSON.stringify({ lines: head.lines, hash: head.hash });

function decodeChainHead(text: string): AuditPosition | undefined {
  try {
    const { lines, hash } = JSON.parse(text) as Partial<AuditPosition>;
    if (Number.isSafeInteger(lines) && (lines as number) >= 0 && typeof hash === 'string' && /^[0-9a-f]{64}$/.test(hash)) return { lines: lines as number, hash };
  } catch {
    // fall through
  }
  return undefined;
}

const logChanged = (how: string): SyError =>
  storeError('audit_log_tampered', `The audit log was changed by someone without the key: ${how}.`,
    'Run `sy audit verify`, and restore the store database from a backup; nothing was done.');

/**
 * The audit log of a PostgreSQL store: line n of the chain is row n of sy.audit_lines, the
 * exact text the chain's hash covers. Where it ends (lines, last hash) is the authenticated
 * meta row audit_head, locked FOR UPDATE by each append in the same transaction as its
 * lines: appenders on every machine take turns, so the log stays one chain, and a line cut,
 * added or moved without the key no longer matches it.
 */
export class PostgresAuditTrail implements AuditTrail {
  constructor(
    private readonly db: StoreConnection,
    private readonly meta: PgMeta,
    private readonly mac: AuditMac,
    private readonly options: StoreOptions,
    /** Where `verify` says it looked. */
    private readonly location: string,
  ) {}

  async check(): Promise<void> {
    await this.db.tx((sql) => this.checkEnd(sql), 'snapshot');
  }

  async head(): Promise<AuditPosition> {
    return this.db.tx(async (sql) => this.end(sql, await this.readHead(sql, false)), 'snapshot');
  }

  /** check(), in the caller's transaction (the ledger's recount). */
  async checkEnd(sql: Sql): Promise<void> {
    await this.end(sql, await this.readHead(sql, false));
  }

  /**
   * As with a file log's full disk, a store that cannot be reached (or answer) now must not
   * undo the operation being recorded: that only warns. A log that was tampered with, or a
   * head held by someone else past the lock timeout, still throws.
   */
  async append(events: AuditEvent[]): Promise<void> {
    if (events.length === 0) return;
    try {
      await this.db.tx(async (sql) => {
        const roots = await this.meta.readRoots(sql, true);
        const end = await this.end(sql, this.decodeHead(roots));
        const entries = chainEntries(events, { prev: end.hash, actor: this.options.actor, mac: this.mac, gen: roots.generation + 1 });
        const lines = entries.map((entry) => JSON.stringify(entry));
        await sql('INSERT INTO sy.audit_lines (seq, line) SELECT $1::bigint + n, line FROM unnest($2::text[]) WITH ORDINALITY AS t(line, n)', [end.lines, lines]);
        await this.meta.writeRoots(sql, roots, { [AUDIT_HEAD]: encodeChainHead({ lines: end.lines + entries.length, hash: entries[entries.length - 1].hash }) });
      });
    } catch (error) {
      if (!(error instanceof SyError) || !UNWRITTEN.has(error.code)) throw error;
      this.options.warn(`warning: could not write the audit log (${error.code === 'store_io' ? 'the store database is full' : 'the store database did not answer'}).`);
    }
  }

  async read(filter: AuditFilter): Promise<AuditEntry[]> {
    // The last N alone: read only those.
    if (filter.limit !== undefined && filter.since === undefined && filter.leaseId === undefined && filter.path === undefined) {
      const rows = await this.db.use((sql) => sql<{ line: string }>('SELECT line FROM sy.audit_lines ORDER BY seq DESC LIMIT $1', [filter.limit]));
      return selectEntries(rows.reverse().map((r) => r.line), {});
    }
    const rows = await this.db.use((sql) => sql<{ line: string }>('SELECT line FROM sy.audit_lines ORDER BY seq'));
    return selectEntries(rows.map((r) => r.line), filter);
  }

  async verify(): Promise<AuditVerifyResult> {
    const { lines, head } = await this.db.tx(async (sql) => ({
      head: await this.readHead(sql, false),
      lines: (await sql<{ seq: number; line: string }>('SELECT seq, line FROM sy.audit_lines ORDER BY seq')),
    }), 'snapshot');
    // Rows are numbered from 1 with no gap: a row renumbered into a gap is a line moved.
    const firstGap = lines.findIndex((row, i) => row.seq !== i + 1);
    const result = verifyChain(lines.map((r) => r.line), this.mac, head);
    if (firstGap >= 0 && (result.ok || result.firstBad!.line > firstGap + 1)) {
      return { ok: false, lines: lines.length, firstBad: { line: firstGap + 1, reason: 'is not numbered where it stands: a line was removed, inserted or reordered' }, location: this.location };
    }
    return { ...result, location: this.location };
  }

  /** The recorded head, checked; in the caller's transaction (`sy store copy` reads it with the lines). */
  async readHead(sql: Sql, lock: boolean): Promise<AuditPosition> {
    return this.decodeHead(await this.meta.readRoots(sql, lock));
  }

  private decodeHead(roots: Roots): AuditPosition {
    const head = decodeChainHead(roots.values.get(AUDIT_HEAD) ?? '');
    if (!head) throw tampered(HEAD_WHAT);
    return head;
  }

  /**
   * The recorded head, once the table is seen to end there: its last row is line `lines`
   * and carries the head's hash. Lines are written in the head's transaction, so there is
   * never a line past it that sy wrote.
   */
  private async end(sql: Sql, head: AuditPosition): Promise<AuditPosition> {
    const [last] = await sql<{ seq: number; line: string }>('SELECT seq, line FROM sy.audit_lines ORDER BY seq DESC LIMIT 1');
    if (!last) {
      if (head.lines > 0) throw logChanged('lines were removed from its end');
      return head;
    }
    if (last.seq < head.lines) throw logChanged('lines were removed from its end');
    if (last.seq > head.lines) throw logChanged(`lines after the end the store recorded are not sy's`);
    const entry = parseEntry(last.line);
    if (entry?.hash !== head.hash) throw logChanged('it no longer ends with the line the store recorded as its last');
    // The line the next one chains on must be the one sy wrote, not one edited around its hash.
    const { hash, ...body } = entry;
    if (entryHash(body, this.mac) !== hash) throw logChanged('its last line was edited');
    return head;
  }
}
