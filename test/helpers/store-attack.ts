/**
 * What the attacks on the PostgreSQL store (test/e2e/attacks.store.test.ts) share: a client
 * of a store through the built bin/sy, and the store database's operator, who saves, edits,
 * moves and puts back rows of schema `sy` without the key.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { type SyResult, freshKey, runSy } from './cli.js';

export interface StoreClient {
  env: Record<string, string>;
  home: string;
  run(args: string[], extra?: Record<string, string | undefined> & { input?: string }): Promise<SyResult>;
  ok<R = any>(args: string[], extra?: Record<string, string | undefined> & { input?: string }): Promise<R>;
}

const dirs: string[] = [];

/** A temp directory removed by removeClientDirs(). */
export function tempDir(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `sy-atks-${label}-`));
  dirs.push(dir);
  return dir;
}

export function removeClientDirs(): void {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** A machine with the key: SY_STORE `store` (undefined: the SQLite store in its own SY_HOME), no sweep before commands. */
export function storeClient(store: string | undefined, key = freshKey(), extra: Record<string, string> = {}): StoreClient {
  const dir = tempDir('client');
  const env: Record<string, string> = { SY_MASTER_KEY: key, SY_HOME: join(dir, 'home'), HOME: dir, SY_NO_SWEEP: '1', ...(store === undefined ? {} : { SY_STORE: store }), ...extra };
  const self: StoreClient = {
    env,
    home: env.SY_HOME,
    run: (args, { input, ...more } = {}) => runSy(args, { ...env, ...more }, { input }),
    async ok(args, more = {}) {
      const result = await self.run(args, more);
      if (result.exitCode !== 0) throw new Error(`sy ${args.join(' ')} exited ${result.exitCode}: ${result.stderr}`);
      return JSON.parse(result.stdout);
    },
  };
  return self;
}

export const TAMPERED = /was changed by someone without the key/;

/** Refused as the store's: exit 4, nothing on stdout, one sentence (and a hint) on stderr, no stack. */
export function expectRefused(result: SyResult, message: RegExp = TAMPERED): void {
  expect({ exitCode: result.exitCode, stdout: result.stdout }).toEqual({ exitCode: 4, stdout: '' });
  expect(result.stderr).toMatch(message);
  expect(result.stderr).not.toMatch(/unexpected error|^\s+at /m);
}

/** One statement in a database, as whoever `connect` logs in as. */
export type Query = <R extends pg.QueryResultRow = any>(sql: string, params?: unknown[]) => Promise<R[]>;

/**
 * The operator's hands on schema `sy`: a copy of a table kept beside it (in schema public) to
 * put back later, and rows moved from one store's database to another's as they are.
 */
export function operator(query: Query) {
  const saved = (table: string) => pg.escapeIdentifier(`saved_${table}`);
  return {
    query,
    async save(...tables: string[]): Promise<void> {
      for (const table of tables) {
        await query(`DROP TABLE IF EXISTS public.${saved(table)}`);
        await query(`CREATE TABLE public.${saved(table)} AS SELECT * FROM sy.${table}`);
      }
    },
    /** The tables as saved; secrets before secret_versions, which reference them. */
    async restore(...tables: string[]): Promise<void> {
      for (const table of [...tables].reverse()) await query(`DELETE FROM sy.${table}`);
      for (const table of tables) await query(`INSERT INTO sy.${table} SELECT * FROM public.${saved(table)}`);
    },
    async rows(table: string, where = 'true', params: unknown[] = []): Promise<Record<string, unknown>[]> {
      return query(`SELECT * FROM sy.${table} WHERE ${where}`, params);
    },
    /** Inserts rows as read elsewhere, every column as it was (upsert on `key` when given). */
    async insert(table: string, rows: Record<string, unknown>[], conflict?: string): Promise<void> {
      for (const row of rows) {
        const names = Object.keys(row);
        const update = conflict ? ` ON CONFLICT (${conflict}) DO UPDATE SET ${names.map((n) => `${n} = EXCLUDED.${n}`).join(', ')}` : '';
        await query(`INSERT INTO sy.${table} (${names.join(', ')}) VALUES (${names.map((_, i) => `$${i + 1}`).join(', ')})${update}`, names.map((n) => row[n]));
      }
    },
  };
}

/** How many audit lines of `action` name the lease, counted in the store's own table. */
export async function auditCount(query: Query, action: string, leaseId: string): Promise<number> {
  const rows = await query<{ n: number }>("SELECT count(*)::int AS n FROM sy.audit_lines WHERE line::jsonb ->> 'action' = $1 AND line::jsonb ->> 'lease_id' = $2", [action, leaseId]);
  return rows[0].n;
}
