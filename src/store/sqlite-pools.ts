import { randomUUID } from 'node:crypto';
import { type FSWatcher, watch } from 'node:fs';
import type BetterSqlite3 from 'better-sqlite3';
import { runRead, runWrite, statementCache } from './sqlite-db.js';
import { FORGET_MEMBERS_AFTER_MS, type NewPoolMember, type PoolMember, type PoolRegistry, type StoreWatch, type StoreWatcher } from './pools.js';

type Database = BetterSqlite3.Database;

/**
 * The `daemons` table. Plain rows, no MAC (see pools.ts for why that is safe): nothing but
 * listings and warnings read them.
 */
export const DAEMONS_SCHEMA = `
CREATE TABLE IF NOT EXISTS daemons (
  id         TEXT PRIMARY KEY,
  pool       TEXT,
  host       TEXT NOT NULL,
  pid        INTEGER NOT NULL,
  version    TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  last_seen  INTEGER NOT NULL
);
`;

interface DaemonRow {
  id: string;
  pool: string | null;
  host: string;
  pid: number;
  version: string;
  started_at: number;
  last_seen: number;
}

/** The table comes with schema 3 (sqlite-schema.ts). */
export class SqlitePoolRegistry implements PoolRegistry {
  private readonly sql: (text: string) => BetterSqlite3.Statement;

  constructor(private readonly db: Database) {
    this.sql = statementCache(db);
  }

  async join(member: NewPoolMember, now = Date.now()): Promise<string> {
    const id = randomUUID();
    runWrite(this.db, () => {
      this.sql('DELETE FROM daemons WHERE last_seen < ?').run(now - FORGET_MEMBERS_AFTER_MS);
      this.sql('INSERT INTO daemons (id, pool, host, pid, version, started_at, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(id, member.pool ?? null, member.host, member.pid, member.version, now, now);
    });
    return id;
  }

  async heartbeat(id: string, now = Date.now()): Promise<boolean> {
    return runWrite(this.db, () => this.sql('UPDATE daemons SET last_seen = ? WHERE id = ?').run(now, id).changes === 1);
  }

  async leave(id: string): Promise<void> {
    runWrite(this.db, () => this.sql('DELETE FROM daemons WHERE id = ?').run(id));
  }

  async list(): Promise<PoolMember[]> {
    const rows = runRead(() => this.sql('SELECT * FROM daemons ORDER BY started_at, id').all() as DaemonRow[]);
    return rows.map((row) => ({
      id: row.id,
      ...(row.pool === null ? {} : { pool: row.pool }),
      host: row.host,
      pid: row.pid,
      version: row.version,
      startedAt: row.started_at,
      lastSeen: row.last_seen,
    }));
  }
}

/**
 * The SQLite store's watch: a write by another process shows as a change of sy.db or its
 * WAL in SY_HOME. It cannot tell what changed, so every write wakes the watcher, heartbeats
 * included; waking costs one indexed query.
 */
export async function watchHome(home: string, watcher: StoreWatcher): Promise<StoreWatch> {
  let handle: FSWatcher | undefined;
  try {
    handle = watch(home, (_type, file) => {
      if (file && String(file).startsWith('sy.db')) watcher.change();
    });
    handle.on('error', (error) => {
      handle?.close();
      watcher.error(error);
    });
  } catch (error) {
    watcher.error(error);
  }
  return {
    async close() {
      handle?.close();
    },
  };
}
