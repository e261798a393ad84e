import type BetterSqlite3 from 'better-sqlite3';
import { notFound, usageError } from '../errors.js';
import type { ClientRecord } from '../model/client.js';
import { Census, type RecordMac, shown, tampered } from './records.js';
import { CLIENT_CENSUS, CLIENT_CENSUS_WHAT, CLIENT_COLUMNS, type ClientColumns, clientMac, clientRecord, clientRow } from './rows.js';
import { type AuthenticatedMeta, runSnapshot, statementCache } from './sqlite-db.js';
import type { ClientRegistry } from './store.js';

type Database = BetterSqlite3.Database;
type ClientRow = ClientColumns & { mac: Buffer | null };

/** The table of clients (store schema 4); its census lives in meta as CLIENT_CENSUS. */
export const CLIENTS_SCHEMA = `
CREATE TABLE IF NOT EXISTS clients (
  name        TEXT PRIMARY KEY,
  public_key  TEXT NOT NULL,
  allow       TEXT NOT NULL,
  max_ttl     INTEGER,
  max_leases  INTEGER NOT NULL,
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  mac         BLOB NOT NULL
) WITHOUT ROWID;
`;

export const clientExists = (name: string) =>
  usageError('client_exists', `A client named ${name} already exists.`, 'Use `sy client update` to change it, or pick another name.');

export const clientNotFound = (name: string) => notFound('client_not_found', `No client named ${name}.`);

/**
 * The clients of the lease API. Every read checks every row against its MAC and the whole
 * table against its census (a handful of rows: cheaper than a wrong answer), so a client
 * deleted, brought back after its deletion, or set back to an older row of itself (an old
 * key, wider patterns) is refused, not served. Writes re-MAC the row and update the census
 * in the same transaction.
 */
export class SqliteClientRegistry implements ClientRegistry {
  private readonly sql: (text: string) => BetterSqlite3.Statement;

  constructor(
    private readonly db: Database,
    private readonly macs: RecordMac,
    private readonly meta: AuthenticatedMeta,
  ) {
    this.sql = statementCache(db);
  }

  async create(record: ClientRecord): Promise<void> {
    const row = clientRow(record);
    const mac = clientMac(this.macs, row);
    this.withCensus((census) => {
      if (this.sql('SELECT 1 FROM clients WHERE name = ?').get(row.name)) throw clientExists(row.name);
      this.insert({ ...row, mac });
      census.add(mac);
    });
  }

  async get(name: string): Promise<ClientRecord | undefined> {
    const row = runSnapshot(this.db, () => this.checkedRows().find((r) => r.name === name));
    return row && clientRecord(row);
  }

  async list(): Promise<ClientRecord[]> {
    return runSnapshot(this.db, () => this.checkedRows()).map(clientRecord);
  }

  async update(record: ClientRecord): Promise<void> {
    this.withCensus((census) => {
      const found = this.sql('SELECT * FROM clients WHERE name = ?').get(record.name) as ClientRow | undefined;
      if (!found) throw clientNotFound(record.name);
      const row = this.verified(found);
      // Made once: an update cannot move when the client was made.
      const next = { ...clientRow(record), created_at: row.created_at };
      const mac = clientMac(this.macs, next);
      this.sql('UPDATE clients SET public_key = ?, allow = ?, max_ttl = ?, max_leases = ?, updated_at = ?, mac = ? WHERE name = ?')
        .run(next.public_key, next.allow, next.max_ttl, next.max_leases, next.updated_at, mac, next.name);
      census.remove(row.mac!);
      census.add(mac);
    });
  }

  async delete(name: string): Promise<boolean> {
    return this.withCensus((census) => {
      const found = this.sql('SELECT * FROM clients WHERE name = ?').get(name) as ClientRow | undefined;
      if (!found) return false;
      const row = this.verified(found);
      this.sql('DELETE FROM clients WHERE name = ?').run(name);
      census.remove(row.mac!);
      return true;
    });
  }

  /** Every client, checked, in name order, after the census agrees (within the caller's snapshot). */
  private checkedRows(): ClientRow[] {
    const rows = (this.sql('SELECT * FROM clients ORDER BY name').all() as ClientRow[]).map((row) => this.verified(row));
    const found = new Census();
    for (const row of rows) found.add(row.mac!);
    if (!found.equals(this.meta.readCensus(CLIENT_CENSUS))) throw tampered(CLIENT_CENSUS_WHAT);
    return rows;
  }

  private verified(row: ClientRow): ClientRow {
    if (!this.macs.check(row.mac, 'client', CLIENT_COLUMNS.map((c) => row[c]))) throw tampered(`client ${shown(row.name)}`);
    return row;
  }

  private insert(row: ClientRow): void {
    this.sql('INSERT INTO clients (name, public_key, allow, max_ttl, max_leases, created_at, updated_at, mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(row.name, row.public_key, row.allow, row.max_ttl, row.max_leases, row.created_at, row.updated_at, row.mac);
  }

  /** A write transaction with the census of clients loaded, updated by `fn` and saved. */
  private withCensus<T>(fn: (census: Census) => T): T {
    return this.meta.withCensus(CLIENT_CENSUS, fn);
  }
}
