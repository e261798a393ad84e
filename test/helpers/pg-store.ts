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
