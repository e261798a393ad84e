/**
 * The pool registry and the watch of the PostgreSQL store. Member rows are plain, as in
 * SQLite (see ../pools.ts for why that is safe): the database's operator sees which hosts
 * run daemons, and could forge members, which changes `sy pool list` and the warning of
 * `lease create`, nothing else.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { FORGET_MEMBERS_AFTER_MS, type NewPoolMember, type PoolMember, type PoolRegistry, type StoreWatch, type StoreWatcher } from '../pools.js';
import type { StoreConnection } from './connection.js';

/** Migration 2 of the PostgreSQL store (schema.ts). */
export const DAEMONS_TABLE = `CREATE TABLE sy.daemons (
   id         text PRIMARY KEY,
   pool       text,
   host       text NOT NULL,
   pid        integer NOT NULL,
   version    text NOT NULL,
   started_at bigint NOT NULL,
   last_seen  bigint NOT NULL
 )`;

/**
 * The channel the ledger notifies on when a lease is recorded, activated or renewed, with
 * the lease's pool as payload: `NOTIFY` is delivered only when the transaction commits, to
 * every session of the database that listens, on any machine.
 */
export const LEASES_CHANNEL = 'sy_leases';
export const NOTIFY_SQL = `SELECT pg_notify('${LEASES_CHANNEL}', $1)`;

interface DaemonRow {
  id: string;
  pool: string | null;
  host: string;
  pid: number;
  version: string;
  started_at: number;
  last_seen: number;
}

export class PostgresPoolRegistry implements PoolRegistry {
  constructor(private readonly db: StoreConnection) {}

  async join(member: NewPoolMember, now = Date.now()): Promise<string> {
    const id = randomUUID();
    await this.db.tx(async (sql) => {
      await sql('DELETE FROM sy.daemons WHERE last_seen < $1', [now - FORGET_MEMBERS_AFTER_MS]);
      await sql('INSERT INTO sy.daemons (id, pool, host, pid, version, started_at, last_seen) VALUES ($1, $2, $3, $4, $5, $6, $6)', [
        id, member.pool ?? null, member.host, member.pid, member.version, now,
      ]);
    });
    return id;
  }

  async heartbeat(id: string, now = Date.now()): Promise<boolean> {
    const rows = await this.db.use((sql) => sql('UPDATE sy.daemons SET last_seen = $1 WHERE id = $2 RETURNING id', [now, id]));
    return rows.length === 1;
  }

  async leave(id: string): Promise<void> {
    await this.db.use((sql) => sql('DELETE FROM sy.daemons WHERE id = $1', [id]));
  }

  async list(): Promise<PoolMember[]> {
    const rows = await this.db.use((sql) => sql<DaemonRow>('SELECT * FROM sy.daemons ORDER BY started_at, id'));
    return rows.map((row) => ({
      id: row.id,
      ...(row.pool === null ? {} : { pool: row.pool }),
      host: row.host,
      pid: row.pid,
      version: row.version,
      startedAt: Number(row.started_at),
      lastSeen: Number(row.last_seen),
    }));
  }
}

/**
 * LISTEN on a connection of its own, which the watch holds for as long as it runs (the
 * store's shared connection is let go when idle). When that connection is lost (a restart
 * of the database, a network cut) the watch ends and says so through `watcher.error`, once;
 * the daemon watches again once the store answers.
 */
export async function listenForChanges(connect: () => Promise<pg.Client>, watcher: StoreWatcher): Promise<StoreWatch> {
  const client = await connect();
  let ended = false;
  const end = () => {
    ended = true;
    client.removeAllListeners('notification');
    client.end().catch(() => undefined);
  };
  const lost = (error: unknown) => {
    if (ended) return;
    end();
    watcher.error(error);
  };
  client.on('notification', (message) => {
    if (message.channel === LEASES_CHANNEL) watcher.change(message.payload || undefined);
  });
  client.on('error', lost);
  client.on('end', () => lost(new Error('the connection to the store ended')));
  try {
    await client.query(`LISTEN ${LEASES_CHANNEL}`);
  } catch (error) {
    end();
    throw error;
  }
  return {
    async close() {
      if (!ended) end();
    },
  };
}
