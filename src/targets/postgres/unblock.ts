/**
 * What a lease holds cannot hold up its revocation. A lease's open transaction may have
 * changed its own role row or locked its role or its tables; a prepared transaction holds
 * the same with no session at all, and outlives the role that prepared it. So revocation
 * ends the lease's sessions and rolls back its prepared transactions before it takes a
 * lock, and while one of its statements waits, a watcher session ends whoever blocks it
 * (when the admin may) until it goes on.
 */
import { failed, SyError } from '../../errors.js';
import { parseManagedName } from '../names.js';
import { describeUsers, driverReason } from '../shared.js';
import { ident, literal, PgSession } from './session.js';

/** How long pg_terminate_backend waits for a session to end (PostgreSQL 14+). */
export const TERMINATE_WAIT_MS = 5000;
/** How long a revocation statement may wait before the watcher looks at who blocks it. */
const WATCH_AFTER_MS = 150;
const WATCH_EVERY_MS = 150;

/** A lease role as revocation knows it. */
export interface LeaseRole {
  rolname: string;
  oid: number;
}

/**
 * Ends the sessions of `roles` in the whole cluster, waiting (14+) for each to be gone, so its
 * locks are released. The admin may end them: it holds their privileges (see disable).
 */
export function terminateStatement(roles: LeaseRole[], version: number): string {
  const terminate = version >= 140000 ? `pg_catalog.pg_terminate_backend(pid, ${TERMINATE_WAIT_MS})` : 'pg_catalog.pg_terminate_backend(pid)';
  return `SELECT ${terminate} FROM pg_catalog.pg_stat_activity WHERE usesysid OPERATOR(pg_catalog.=) ANY (ARRAY[${oidList(roles)}]::pg_catalog.oid[]) AND pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()`;
}

/** The prepared transactions of `roles`, in every database: `gid`, `database`, `owner`. */
export function preparedStatement(roles: LeaseRole[]): string {
  return `SELECT p.gid, d.datname::pg_catalog.text AS database, r.rolname::pg_catalog.text AS owner
         FROM pg_catalog.pg_prepared_xact() AS p(transaction, gid, prepared, ownerid, dbid)
         JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) p.dbid JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) p.ownerid
        WHERE p.ownerid OPERATOR(pg_catalog.=) ANY (ARRAY[${oidList(roles)}]::pg_catalog.oid[])`;
}

export interface Prepared {
  gid: string;
  database: string;
  owner: string;
}

/**
 * Rolls back prepared transactions of lease roles. `ROLLBACK PREPARED` must run outside a
 * transaction block, in the transaction's own database, as its owner or a superuser: a
 * session of its own on that database does `SET ROLE` to the lease role (the admin holds
 * its membership, see disable) and is closed afterwards, so nothing else ever runs as the
 * lease. Throws a SyError naming the database where it could not.
 */
export async function rollbackPrepared(session: PgSession, prepared: Prepared[]): Promise<void> {
  const byDatabase = new Map<string, Prepared[]>();
  for (const p of prepared) byDatabase.set(p.database, [...(byDatabase.get(p.database) ?? []), p]);
  for (const [database, list] of byDatabase) {
    let other: PgSession | undefined;
    try {
      other = await PgSession.open(session.conn, session.options, database);
      for (const p of list) {
        await other.client.query(`SET ROLE ${ident(p.owner)}`);
        try {
          await other.client.query(`ROLLBACK PREPARED ${literal(p.gid)}`);
        } catch (error) {
          // Committed or rolled back meanwhile by someone else: gone either way.
          if ((error as { code?: string }).code !== '42704') throw error;
        }
        await other.client.query('RESET ROLE');
      }
    } catch (error) {
      const reason = error instanceof SyError ? error.message.replace(/\.$/, '') : driverReason(error, [session.conn.password]);
      throw failed(
        'revoke_failed',
        `Could not revoke ${describeUsers(list.map((p) => p.owner))} on PostgreSQL at ${session.address}: a prepared transaction in database "${database}" could not be rolled back (${reason}).`,
      );
    } finally {
      await other?.close();
    }
  }
}

/**
 * Runs `body` on `session`; if it is still running after a moment (it waits on a lock), a
 * watcher session on the same database ends, until `body` is done, the sessions of `roles`,
 * their prepared transactions, and every session that blocks `body` and that the admin may
 * end (pg_blocking_pids, see endBlockers). What the admin may not end (a superuser's
 * session, another application's) still makes `body` fail on its lock timeout, naming it.
 */
export async function unblocked<T>(session: PgSession, roles: LeaseRole[], body: () => Promise<T>): Promise<T> {
  const pid = (session.client as unknown as { processID?: number }).processID;
  if (pid === undefined || roles.length === 0) return body();
  let done = false;
  let finished: () => void = () => undefined;
  const settled = new Promise<void>((resolve) => (finished = resolve));
  const running = body().finally(() => {
    done = true;
    finished();
  });
  /** Waits `ms`, or less when `body` is done: a statement that did not wait costs nothing. */
  const pause = (ms: number): Promise<void> => {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([new Promise<void>((resolve) => (timer = setTimeout(resolve, ms))), settled]).finally(() => clearTimeout(timer));
  };
  const watching = (async () => {
    await pause(WATCH_AFTER_MS);
    if (done) return;
    let watcher: PgSession | undefined;
    try {
      watcher = await PgSession.open(session.conn, session.options, session.database);
      const version = Number((await watcher.client.query<{ v: string }>("SELECT pg_catalog.current_setting('server_version_num') AS v")).rows[0].v);
      while (!done) {
        await watcher.client.query(terminateStatement(roles, version)).catch(() => undefined);
        await endBlockers(watcher, pid).catch(() => undefined);
        const { rows } = await watcher.client.query<Prepared>(preparedStatement(roles)).catch(() => ({ rows: [] as Prepared[] }));
        if (rows.length > 0) await rollbackPrepared(watcher, rows).catch(() => undefined);
        await endPreparedBlockers(watcher, pid).catch(() => undefined);
        await pause(WATCH_EVERY_MS);
      }
    } catch {
      // The watcher only helps: the statement it watches reports its own failure.
    } finally {
      await watcher?.close();
    }
  })();
  try {
    return await running;
  } finally {
    await watching;
  }
}

/**
 * Ends the sessions that block `pid` and that the admin may end: those of a role whose
 * privileges it holds, never its own (another sy at work) nor a superuser's unless it is
 * one. The session of another sy lease (a user name sy made) counts too: the admin first
 * takes that role's privileges, as it does to revoke it, so two leases of one holder cannot
 * shield each other. The lease goes on; only that session ends.
 */
async function endBlockers(watcher: PgSession, pid: number): Promise<void> {
  const { rows } = await watcher.client.query<{ pid: number; rolname: string; usable: boolean }>(
    `SELECT a.pid, r.rolname::pg_catalog.text AS rolname, pg_catalog.pg_has_role(a.usesysid, 'USAGE') OR pg_catalog.pg_has_role('pg_signal_backend', 'USAGE') AS usable
       FROM pg_catalog.pg_stat_activity a JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.usesysid
      WHERE a.pid OPERATOR(pg_catalog.=) ANY (pg_catalog.pg_blocking_pids(${Number(pid)})) AND r.rolname OPERATOR(pg_catalog.<>) CURRENT_USER
        AND (NOT r.rolsuper OR (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) CURRENT_USER))`,
  );
  for (const blocker of rows) {
    if (!blocker.usable && parseManagedName(blocker.rolname) !== undefined) {
      await watcher.client.query(`GRANT ${ident(blocker.rolname)} TO CURRENT_USER`).catch(() => undefined);
    }
    await watcher.client.query('SELECT pg_catalog.pg_terminate_backend($1::pg_catalog.int4)', [blocker.pid]).catch(() => undefined);
  }
}

/**
 * A prepared transaction holds its locks with no session (pg_blocking_pids names it 0), so
 * endBlockers cannot end it: the prepared transactions of other sy leases that hold a lock
 * `pid` waits for are rolled back (as their owner, whose privileges the admin takes first,
 * as endBlockers does), so a lease cannot shield another with a prepared transaction.
 * Another application's prepared transaction is left alone: the statement fails on its
 * lock timeout, naming the lock.
 */
async function endPreparedBlockers(watcher: PgSession, pid: number): Promise<void> {
  const eq = 'OPERATOR(pg_catalog.=)';
  const same = ['locktype', 'database', 'relation', 'page', 'tuple', 'virtualxid', 'transactionid', 'classid', 'objid', 'objsubid']
    .map((c) => `h.${c} IS NOT DISTINCT FROM w.${c}`).join(' AND ');
  const { rows } = await watcher.client.query<Prepared & { usable: boolean }>(
    `SELECT DISTINCT p.gid, d.datname::pg_catalog.text AS database, r.rolname::pg_catalog.text AS owner,
            pg_catalog.pg_has_role(p.ownerid, 'USAGE') AS usable
       FROM pg_catalog.pg_prepared_xact() AS p(transaction, gid, prepared, ownerid, dbid)
       JOIN pg_catalog.pg_database d ON d.oid ${eq} p.dbid JOIN pg_catalog.pg_roles r ON r.oid ${eq} p.ownerid
       JOIN pg_catalog.pg_locks x ON x.locktype ${eq} 'transactionid' AND x.transactionid ${eq} p.transaction AND x.pid IS NULL
       JOIN pg_catalog.pg_locks h ON h.virtualtransaction ${eq} x.virtualtransaction AND h.pid IS NULL AND h.granted
       JOIN pg_catalog.pg_locks w ON w.pid ${eq} $1::pg_catalog.int4 AND NOT w.granted AND ${same}
      WHERE 0 OPERATOR(pg_catalog.=) ANY (pg_catalog.pg_blocking_pids($1::pg_catalog.int4))`,
    [pid],
  );
  const leases = rows.filter((row) => parseManagedName(row.owner) !== undefined);
  for (const row of leases) {
    if (!row.usable) await watcher.client.query(`GRANT ${ident(row.owner)} TO CURRENT_USER`).catch(() => undefined);
  }
  if (leases.length > 0) await rollbackPrepared(watcher, leases.map(({ gid, database, owner }) => ({ gid, database, owner })));
}

const oidList = (roles: LeaseRole[]): string => roles.map((r) => String(Number(r.oid))).join(', ') || 'NULL';
