import type { SyError } from '../../errors.js';
import { Census, ROOTS, ROOT_KEYS, type RecordMac, RootRecords, type Roots, tampered as recordTampered } from '../records.js';
import type { Sql } from './connection.js';

/** A record of the PostgreSQL store changed without the key (exit 4): its database is what to restore. */
export const tampered = (record: string): SyError => recordTampered(record, 'the store database');

/** The meta rows every initialised store has; each but the key slot is authenticated. */
export const KEYSLOT = 'keyslot';
export const SECRET_CENSUS = 'secret_census';
export const LEASE_CENSUS = 'lease_census';
export const AUDIT_HEAD = 'audit_head';
export { CLIENT_CENSUS } from '../rows.js';

/**
 * The store's roots in sy.meta (records.ts): the censuses and the audit head, each stamped
 * with its generation, and the generation that vouches for them all, read together in one
 * statement. A write locks every one of them FOR UPDATE, in key order and in one statement,
 * after the rows it changes: writers on every machine take turns on the generation, none is
 * lost, and none waits on another in a circle. A missing row is tampering, since init writes
 * them all at once.
 */
export class PgMeta {
  readonly roots: RootRecords;

  constructor(macs: RecordMac) {
    this.roots = new RootRecords(macs, 'the store database');
  }

  /** Every root, checked against the generation; `lock`: FOR UPDATE, in a write transaction. */
  async readRoots(sql: Sql, lock = false): Promise<Roots> {
    const rows = await sql<{ key: string; value: string }>(
      `SELECT key, value FROM sy.meta WHERE key = ANY($1) ORDER BY key COLLATE "C"${lock ? ' FOR UPDATE' : ''}`,
      [ROOT_KEYS],
    );
    return this.roots.check(new Map(rows.map((row) => [row.key, row.value])));
  }

  /** `changes` (root key to value) at the next generation, over `roots` as locked by this transaction. */
  async writeRoots(sql: Sql, roots: Roots, changes: Record<string, string>): Promise<void> {
    const rows = this.roots.next(roots, changes);
    await sql('UPDATE sy.meta AS m SET value = v.value FROM unnest($1::text[], $2::text[]) AS v(key, value) WHERE m.key = v.key',
      [rows.map((r) => r[0]), rows.map((r) => r[1])]);
  }

  census(roots: Roots, key: string): Census {
    const census = Census.decode(roots.values.get(key) ?? '');
    if (!census) throw tampered(ROOTS[key]);
    return census;
  }

  async readCensus(sql: Sql, key: string, lock = false): Promise<Census> {
    return this.census(await this.readRoots(sql, lock), key);
  }

  /**
   * Loads a census for update, lets `fn` change it, and saves it, in the caller's write
   * transaction. Taken after the rows it accounts for: every writer locks rows first and the
   * roots last, so no two wait on each other in a circle.
   */
  async updateCensus(sql: Sql, key: string, fn: (census: Census) => void): Promise<void> {
    const roots = await this.readRoots(sql, true);
    const census = this.census(roots, key);
    fn(census);
    await this.writeRoots(sql, roots, { [key]: census.encode() });
  }
}
