import type { ClientRecord } from '../../model/client.js';
import { Census, type RecordMac, shown } from '../records.js';
import { CLIENT_CENSUS, CLIENT_CENSUS_WHAT, CLIENT_COLUMNS, type ClientColumns, clientMac, clientRecord, clientRow } from '../rows.js';
import { clientExists, clientNotFound } from '../sqlite-clients.js';
import type { ClientRegistry } from '../store.js';
import type { Sql, StoreConnection } from './connection.js';
import { type PgMeta, tampered } from './meta.js';

export type ClientRow = ClientColumns & { mac: Buffer };

/** The clients' table (migration 3), SQLite's columns. */
export const CLIENTS_TABLE = `CREATE TABLE sy.clients (
  name        text PRIMARY KEY,
  public_key  text NOT NULL,
  allow       text NOT NULL,
  max_ttl     bigint,
  max_leases  integer NOT NULL,
  created_at  bigint NOT NULL,
  updated_at  bigint NOT NULL,
  mac         bytea NOT NULL
)`;

/**
 * The clients of the lease API on PostgreSQL, checked as in SQLite (SqliteClientRegistry):
 * every read checks every row and compares them with the census in one snapshot. Writes lock
 * the row, then the census (the order every writer of the store keeps), and change the row
 * only if it is still the one checked (`mac = $old`): concurrent updates from any machine
 * queue, and the last one wins whole.
 */
export class PostgresClientRegistry implements ClientRegistry {
  constructor(
    private readonly db: StoreConnection,
    private readonly macs: RecordMac,
    private readonly meta: PgMeta,
  ) {}

  async create(record: ClientRecord): Promise<void> {
    const row = clientRow(record);
    const mac = clientMac(this.macs, row);
    await this.db.tx(async (sql) => {
      const inserted = await sql(
        `INSERT INTO sy.clients (name, public_key, allow, max_ttl, max_leases, created_at, updated_at, mac)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO NOTHING RETURNING name`,
        [row.name, row.public_key, row.allow, row.max_ttl, row.max_leases, row.created_at, row.updated_at, mac],
      );
      if (inserted.length === 0) throw clientExists(row.name);
      await this.meta.updateCensus(sql, CLIENT_CENSUS, CLIENT_CENSUS_WHAT, (census) => census.add(mac));
    });
  }

  async get(name: string): Promise<ClientRecord | undefined> {
    const row = (await this.checkedRows()).find((r) => r.name === name);
    return row && clientRecord(row);
  }

  async list(): Promise<ClientRecord[]> {
    return (await this.checkedRows()).map(clientRecord);
  }

  async update(record: ClientRecord): Promise<void> {
    await this.db.tx(async (sql) => {
      const row = await this.locked(sql, record.name);
      if (!row) throw clientNotFound(record.name);
      const next = { ...clientRow(record), created_at: row.created_at };
      const mac = clientMac(this.macs, next);
      await sql(
        `UPDATE sy.clients SET public_key = $2, allow = $3, max_ttl = $4, max_leases = $5, updated_at = $6, mac = $7
          WHERE name = $1 AND mac = $8`,
        [next.name, next.public_key, next.allow, next.max_ttl, next.max_leases, next.updated_at, mac, row.mac],
      );
      await this.meta.updateCensus(sql, CLIENT_CENSUS, CLIENT_CENSUS_WHAT, (census) => {
        census.remove(row.mac);
        census.add(mac);
      });
    });
  }

  async delete(name: string): Promise<boolean> {
    return this.db.tx(async (sql) => {
      const row = await this.locked(sql, name);
      if (!row) return false;
      await sql('DELETE FROM sy.clients WHERE name = $1 AND mac = $2', [name, row.mac]);
      await this.meta.updateCensus(sql, CLIENT_CENSUS, CLIENT_CENSUS_WHAT, (census) => census.remove(row.mac));
      return true;
    });
  }

  /** The row, locked for the rest of the caller's transaction and checked. */
  private async locked(sql: Sql, name: string): Promise<ClientRow | undefined> {
    const [row] = await sql<ClientRow>('SELECT * FROM sy.clients WHERE name = $1 FOR UPDATE', [name]);
    return row && this.verified(row);
  }

  /** Every client, checked, in name order, after the census read in the same snapshot agrees. */
  private checkedRows(): Promise<ClientRow[]> {
    return this.db.tx(async (sql) => {
      const rows = (await sql<ClientRow>('SELECT * FROM sy.clients ORDER BY name COLLATE "C"')).map((row) => this.verified(row));
      const found = new Census();
      for (const row of rows) found.add(row.mac);
      if (!found.equals(await this.meta.readCensus(sql, CLIENT_CENSUS, CLIENT_CENSUS_WHAT))) throw tampered(CLIENT_CENSUS_WHAT);
      return rows;
    }, 'snapshot');
  }

  private verified(row: ClientRow): ClientRow {
    if (!this.macs.check(row.mac, 'client', CLIENT_COLUMNS.map((c) => row[c]))) throw tampered(`client ${shown(row.name)}`);
    return row;
  }
}
