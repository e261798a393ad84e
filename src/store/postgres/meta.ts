import type { SyError } from '../../errors.js';
import { Census, type RecordMac, tampered as recordTampered } from '../records.js';
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
 * Meta rows whose value is authenticated like a record: `<mac hex>:<value>`, the MAC bound to
 * the store and the row's key, as in SQLite's meta table. The censuses and the audit head are
 * read FOR UPDATE by every write that changes them, so writers on any machine take turns on
 * them and none is lost; a missing row is tampering, since init writes them all at once.
 */
export class PgMeta {
  constructor(private readonly macs: RecordMac) {}

  /** `what` names the record in the error when it fails; `lock`: FOR UPDATE, in a write transaction. */
  async read(sql: Sql, key: string, what: string, lock = false): Promise<string> {
    const rows = await sql<{ value: string }>(
      lock ? 'SELECT value FROM sy.meta WHERE key = $1 FOR UPDATE' : 'SELECT value FROM sy.meta WHERE key = $1',
      [key],
    );
    const value = rows[0] === undefined ? undefined : this.decode(key, rows[0].value);
    if (value === undefined) throw tampered(what);
    return value;
  }

  decode(key: string, stored: string): string | undefined {
    const value = stored.slice(65);
    return stored[64] === ':' && this.macs.check(Buffer.from(stored.slice(0, 64), 'hex'), 'meta', [key, value]) ? value : undefined;
  }

  async write(sql: Sql, key: string, value: string): Promise<void> {
    await sql('UPDATE sy.meta SET value = $2 WHERE key = $1', [key, this.encode(key, value)]);
  }

  encode(key: string, value: string): string {
    return `${this.macs.of('meta', [key, value]).toString('hex')}:${value}`;
  }

  async readCensus(sql: Sql, key: string, what: string, lock = false): Promise<Census> {
    const census = Census.decode(await this.read(sql, key, what, lock));
    if (!census) throw tampered(what);
    return census;
  }

  async writeCensus(sql: Sql, key: string, census: Census): Promise<void> {
    await this.write(sql, key, census.encode());
  }

  /**
   * Loads a census for update, lets `fn` change it, and saves it, in the caller's write
   * transaction. Taken after the rows it accounts for: every writer locks rows first and the
   * census last, so no two wait on each other in a circle.
   */
  async updateCensus(sql: Sql, key: string, what: string, fn: (census: Census) => void): Promise<void> {
    const census = await this.readCensus(sql, key, what, true);
    fn(census);
    await this.writeCensus(sql, key, census);
  }
}
