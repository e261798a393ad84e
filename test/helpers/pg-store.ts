/**
 * Throwaway databases for the PostgreSQL store on the machine's PostgreSQL 15 (trusts
 * 127.0.0.1): each test makes its own `sy_store_<random>` and drops it, pass or fail, with
 * whatever sessions are still in it. Tests edit its rows here as the database's operator would.
 */
import pg from 'pg';
import { LOCAL_PG, localPgQuery, pgConnect, tag } from './db.js';

export interface StoreDatabase {
  name: string;
  /** SY_STORE for it, as the superuser `postgres` (or `user`). */
  url: string;
  urlFor(user: string, password?: string, query?: string): string;
  /** One statement in the store's database, as the superuser. */
  query<R extends pg.QueryResultRow = any>(sql: string, params?: unknown[]): Promise<R[]>;
  drop(): Promise<void>;
}

export async function createStoreDatabase(options: { owner?: string; connectionLimit?: number } = {}): Promise<StoreDatabase> {
  const name = `sy_store_${tag(10)}`;
  const owner = options.owner === undefined ? '' : ` OWNER ${pg.escapeIdentifier(options.owner)}`;
  const limit = options.connectionLimit === undefined ? '' : ` CONNECTION LIMIT ${options.connectionLimit}`;
  await localPgQuery(`CREATE DATABASE ${pg.escapeIdentifier(name)}${owner}${limit}`);
  const urlFor = (user: string, password?: string, query = '') =>
    `postgresql://${encodeURIComponent(user)}${password === undefined ? '' : `:${encodeURIComponent(password)}`}@${LOCAL_PG.host}:${LOCAL_PG.port}/${name}${query}`;
  return {
    name,
    url: urlFor(LOCAL_PG.user, undefined, '?sslmode=disable'),
    urlFor,
    query: (sql, params = []) => localPgQuery(sql, params, name),
    drop: () => dropStoreDatabase(name),
  };
}

export async function dropStoreDatabase(name: string): Promise<void> {
  if (!/^sy_store_[a-z0-9]+$/.test(name)) throw new Error(`not a test store database: ${name}`);
  await localPgQuery(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
}

/** A connected superuser client in the store's database, for tests that watch it over time. */
export const storeClient = (name: string): Promise<pg.Client> => pgConnect({ ...LOCAL_PG, database: name });

/**
 * Makes the store in `database` what a sy of PostgreSQL schema `schema` (1 or 2, before
 * generations) left: the key slot sealed for records without generations, the censuses and
 * audit head unstamped, no generation row, the later migrations' rows gone (and, below 2, the
 * pool registry's table). `masterKey`: the store's SY_MASTER_KEY.
 */
export async function asOlderPgStore(database: StoreDatabase, masterKey: string, schema: 1 | 2): Promise<void> {
  const { openSlot, wrapDataKey } = await import('../../src/store/key-slot.js');
  const { ROOTS_BEFORE_CLIENTS, RecordMac, RootRecords, recordKey } = await import('../../src/store/records.js');
  const [{ value: slotText }] = await database.query("SELECT value FROM sy.meta WHERE key = 'keyslot'");
  const slot = JSON.parse(slotText);
  const kek = Buffer.from(masterKey, 'base64');
  const dataKey = openSlot(kek, slot)!;
  const roots = new RootRecords(new RecordMac(recordKey(dataKey), slot.storeId));
  // Migration 4's clients, which no older sy had.
  await database.query("DROP TABLE sy.clients; ALTER TABLE sy.leases DROP COLUMN client; DELETE FROM sy.meta WHERE key = 'client_census'");
  for (const key of ROOTS_BEFORE_CLIENTS) {
    const [{ value }] = await database.query('SELECT value FROM sy.meta WHERE key = $1', [key]);
    await database.query('UPDATE sy.meta SET value = $2 WHERE key = $1', [key, roots.encode(key, roots.decode(key, value)!.replace(/^\d+:/, ''))]);
  }
  await database.query("DELETE FROM sy.meta WHERE key = 'generation'");
  await database.query("UPDATE sy.meta SET value = $1 WHERE key = 'keyslot'", [JSON.stringify(wrapDataKey(kek, dataKey, slot.storeId, slot.wrap, 2))]);
  await database.query('DELETE FROM sy.schema_migrations WHERE version > $1', [schema]);
  if (schema < 2) await database.query('DROP TABLE sy.daemons');
}
