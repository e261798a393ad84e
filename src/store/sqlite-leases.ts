import { type LeaseColumns, intentRow, leaseMac, leaseMacHolds, leaseRecord, nextLeaseRow } from './rows.js';
import type BetterSqlite3 from 'better-sqlite3';
import { hostname } from 'node:os';
import { Census, type RecordMac, shown, tampered } from './records.js';
import { type AuthenticatedMeta, runRead, runSnapshot, statementCache } from './sqlite-db.js';
import {
  ENDED_LEASE_STATES,
  IN_USE_LEASE_STATES,
  LIVE_LEASE_STATES,
  type LeaseChanges,
  type LeaseRecord,
  type LeaseState,
  type NewLease,
} from '../model/lease.js';
import type { DueQuery, LeaseLedger, LeaseQuery } from './store.js';

type Database = BetterSqlite3.Database;

type LeaseRow = LeaseColumns & { mac: Buffer | null };


export const LEASE_CENSUS = 'lease_census';
const CENSUS_WHAT = 'its live leases';

/**
 * How often a long-lived handle (the daemon) recounts the live leases, and how long after
 * the last recount a claim recounts again. A short command never reaches the first.
 */
const CENSUS_EVERY_MS = 60_000;

const LIVE_SQL = LIVE_LEASE_STATES.map((s) => `'${s}'`).join(', ');
const isLive = (state: string): boolean => (LIVE_LEASE_STATES as readonly string[]).includes(state);


/**
 * The lease ledger. Every row read is checked against its MAC before anything is done with
 * it; every write re-MACs the row and updates the census of live leases in the same
 * transaction. Queries that filter on plain columns cannot be trusted to return every row
 * that should match (an attacker can move a live lease out of `state = 'active'`), so the
 * census of live leases is recounted before the first claim of each handle, at least every
 * minute in a long-lived one, and by every scan that reads the whole live set anyway
 * (listing all leases, the reaper's list of live users): a live lease hidden, removed,
 * added or replaced by an older copy of itself is found there.
 */
export class SqliteLeaseLedger implements LeaseLedger {
  private readonly openedAt = Date.now();
  private lastCensus: number | undefined;

  constructor(
    private readonly db: Database,
    private readonly dataKey: Buffer,
    private readonly macs: RecordMac,
    private readonly meta: AuthenticatedMeta,
    /** Throws when the audit log does not end where its head says (a head put back with the censuses). */
    private readonly checkAuditEnd: () => void,
  ) {
    this.sql = statementCache(db);
  }

  private readonly sql: (text: string) => BetterSqlite3.Statement;

  async recordIntent(lease: NewLease): Promise<void> {
    const row = intentRow(lease, this.dataKey);
    const mac = leaseMac(this.macs, row);
    this.withCensus((census) => {
      this.sql(
          `INSERT INTO leases (id, secret_id, base_id, path, pool, engine, target, username, state, created_at, expires_at,
             max_expires_at, attempts, owner_pid, owner_host, client, sealed, mac)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'intent', ?, ?, ?, 0, ?, ?, ?, ?, ?)`,
        )
        .run(row.id, row.secret_id, row.base_id, row.path, row.pool, row.engine, row.target, row.username,
          row.created_at, row.expires_at, row.max_expires_at, row.owner_pid, row.owner_host, row.client ?? null, row.sealed, mac);
      census.add(mac);
    });
  }

  async get(id: string): Promise<LeaseRecord | undefined> {
    const row = runRead(() => this.sql('SELECT * FROM leases WHERE id = ?').get(id) as LeaseRow | undefined);
    return row && this.toRecord(this.verified(row));
  }

  async list(query: LeaseQuery): Promise<LeaseRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (!query.all) where.push(`state IN (${LIVE_SQL})`);
    if (query.secretId !== undefined) {
      where.push('secret_id = ?');
      params.push(query.secretId);
    }
    if (query.path !== undefined) {
      where.push('path = ?');
      params.push(query.path);
    }
    if (query.pathPrefix !== undefined) {
      where.push("path LIKE ? ESCAPE '\\'");
      params.push(`${query.pathPrefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
    }
    if (query.pool !== undefined) {
      where.push('pool = ?');
      params.push(query.pool);
    }
    if (query.client !== undefined) {
      where.push('client = ?');
      params.push(query.client);
    }
    const sql = `SELECT * FROM leases ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at, id LIMIT ? OFFSET ?`;
    // Unfiltered and on one page, the listing holds every live lease: the census is checked for free.
    const whole = (query.offset ?? 0) === 0 && where.length <= (query.all ? 0 : 1);
    return runSnapshot(this.db, () => {
      const rows = (this.sql(sql).all(...params, query.limit, query.offset ?? 0) as LeaseRow[]).map((row) => this.verified(row));
      if (whole && rows.length < query.limit) this.compareCensus(rows.filter((row) => isLive(row.state)));
      return rows.map((row) => this.toRecord(row));
    });
  }

  async transition(id: string, from: readonly LeaseState[], to: LeaseState, changes: LeaseChanges = {}): Promise<LeaseRecord | undefined> {
    return this.withCensus((census) => {
      const row = this.select(id);
      if (!row || !from.includes(row.state)) return undefined;
      return this.apply(census, row, to, changes, { claimant: null, claimedUntil: null });
    });
  }

  async claimDue(query: DueQuery, claimant: string): Promise<LeaseRecord[]> {
    const poolSql = query.pool === undefined ? '' : ' AND pool = ?';
    const poolParams = query.pool === undefined ? [] : [query.pool];
    return this.withCensus((census) => {
      // The queries below trust plain columns to say what is due; the recount finds a row moved out of their reach.
      if (this.censusStale()) this.recount(census);
      const candidates = [
        ...(this.sql(`SELECT * FROM leases WHERE state = 'active' AND expires_at <= ?${poolSql} ORDER BY expires_at LIMIT ?`)
          .all(query.now, ...poolParams, query.limit) as LeaseRow[]),
        ...(this.sql(`SELECT * FROM leases WHERE state IN ('failed', 'irrevocable') AND next_attempt_at <= ?${poolSql} ORDER BY next_attempt_at LIMIT ?`)
          .all(query.now, ...poolParams, query.limit) as LeaseRow[]),
        ...(this.sql(`SELECT * FROM leases WHERE state = 'revoking' AND claimed_until <= ?${poolSql} LIMIT ?`)
          .all(query.now, ...poolParams, query.limit) as LeaseRow[]),
        ...(this.sql(`SELECT * FROM leases WHERE state = 'intent'${poolSql} LIMIT ?`).all(...poolParams, query.limit * 4) as LeaseRow[])
          .filter((row) => row.created_at <= query.staleIntentBefore || ownerIsGone(row)),
      ]
        .slice(0, query.limit)
        .map((row) => this.verified(row));
      return candidates.map((row) => this.apply(census, row, 'revoking', {}, { claimant, claimedUntil: query.now + query.claimMs }));
    });
  }

  async claim(id: string, claimant: string, now: number, claimMs: number): Promise<LeaseRecord | undefined> {
    return this.withCensus((census) => {
      // A lease set back to an older row of itself (revoked to active) passes its MAC; only
      // the recount finds it, as before a sweep's first claim (`lease revoke <id>`).
      if (this.censusStale()) this.recount(census);
      const row = this.select(id);
      if (!row || ENDED_LEASE_STATES.includes(row.state)) return undefined;
      if (row.state === 'revoking' && (row.claimed_until ?? 0) > now) return undefined;
      return this.apply(census, row, 'revoking', {}, { claimant, claimedUntil: now + claimMs });
    });
  }

  async settleAll(claimant: string, items: { id: string; to: LeaseState; changes?: LeaseChanges }[]): Promise<(LeaseRecord | undefined)[]> {
    return this.withCensus((census) =>
      items.map(({ id, to, changes }) => {
        const row = this.select(id);
        if (!row || row.state !== 'revoking' || row.claimant !== claimant) return undefined;
        return this.apply(census, row, to, changes ?? {}, { claimant: null, claimedUntil: null });
      }),
    );
  }

  /**
   * Counted from the index. The census covers each live lease's state, so once it has been
   * recounted on this handle (a sweep has just done so) these counts are of checked rows.
   */
  async countByState(pool?: string): Promise<Record<string, number>> {
    return runSnapshot(this.db, () => {
      if (this.censusStale()) this.recount(this.meta.readCensus(LEASE_CENSUS));
      const rows = (pool === undefined
        ? this.sql('SELECT state, count(*) AS n FROM leases GROUP BY state').all()
        : this.sql('SELECT state, count(*) AS n FROM leases WHERE pool = ? GROUP BY state').all(pool)) as { state: string; n: number }[];
      return Object.fromEntries(rows.map((r) => [r.state, r.n]));
    });
  }

  async countLive(client: string): Promise<number> {
    return runSnapshot(this.db, () => {
      if (this.censusStale()) this.recount(this.meta.readCensus(LEASE_CENSUS));
      return (this.sql(`SELECT count(*) AS n FROM leases WHERE client = ? AND state IN (${LIVE_SQL})`).get(client) as { n: number }).n;
    });
  }

  async nextDue(pool?: string): Promise<number | undefined> {
    const poolSql = pool === undefined ? '' : ' AND pool = ?';
    const params = pool === undefined ? [] : [pool];
    return runSnapshot(this.db, () => {
      // A daemon may sleep on this answer for good: past its first minute, recount each minute.
      if (Date.now() - this.openedAt >= CENSUS_EVERY_MS && this.censusStale()) {
        this.recount(this.meta.readCensus(LEASE_CENSUS));
      }
      const times = [
        this.sql(`SELECT min(expires_at) AS t FROM leases WHERE state = 'active'${poolSql}`).get(...params),
        this.sql(`SELECT min(next_attempt_at) AS t FROM leases WHERE state IN ('failed', 'irrevocable')${poolSql}`).get(...params),
        this.sql(`SELECT min(claimed_until) AS t FROM leases WHERE state = 'revoking'${poolSql}`).get(...params),
        this.sql(`SELECT min(created_at) AS t FROM leases WHERE state = 'intent'${poolSql}`).get(...params),
      ]
        .map((r) => (r as { t: number | null }).t)
        .filter((t): t is number => t !== null);
      return times.length ? Math.min(...times) : undefined;
    });
  }

  /** Reads every live lease (the reaper must not drop one), so the census is checked on the way. */
  async liveUsernames(): Promise<Set<string>> {
    return runSnapshot(this.db, () => {
      const rows = (this.sql(`SELECT * FROM leases WHERE state IN (${LIVE_SQL})`).all() as LeaseRow[]).map((row) => this.verified(row));
      this.compareCensus(rows);
      return new Set(rows.filter((row) => (IN_USE_LEASE_STATES as readonly string[]).includes(row.state)).map((row) => row.username));
    });
  }

  /** Live leases of a secret (as dynamic secret or as base), each checked: deleting it must not miss one. */
  liveLeasesOf(secretId: string): number {
    const rows = this.sql(`SELECT * FROM leases WHERE (secret_id = ? OR base_id = ?) AND state IN (${LIVE_SQL})`).all(secretId, secretId) as LeaseRow[];
    return rows.map((row) => this.verified(row)).length;
  }

  private censusStale(): boolean {
    return this.lastCensus === undefined || Date.now() - this.lastCensus >= CENSUS_EVERY_MS;
  }

  private select(id: string): LeaseRow | undefined {
    const row = this.sql('SELECT * FROM leases WHERE id = ?').get(id) as LeaseRow | undefined;
    return row && this.verified(row);
  }

  private verified(row: LeaseRow): LeaseRow {
    if (!leaseMacHolds(this.macs, row)) throw tampered(`lease ${shown(row.id)}`);
    return row;
  }

  /** A write transaction with the census of live leases loaded, updated by `fn` and saved. */
  private withCensus<T>(fn: (census: Census) => T): T {
    return this.meta.withCensus(LEASE_CENSUS, fn);
  }

  /** Reads every live lease and compares them with the census. */
  private recount(census: Census): void {
    const found = new Census();
    for (const row of this.sql(`SELECT * FROM leases WHERE state IN (${LIVE_SQL})`).iterate() as IterableIterator<LeaseRow>) {
      found.add(this.verified(row).mac!);
    }
    if (!found.equals(census)) this.censusFailed();
    this.checkAuditEnd();
    this.lastCensus = Date.now();
  }

  /** `rows` are all the live leases, already checked. */
  private compareCensus(rows: LeaseRow[]): void {
    const found = new Census();
    for (const row of rows) found.add(row.mac!);
    if (!found.equals(this.meta.readCensus(LEASE_CENSUS))) this.censusFailed();
    this.checkAuditEnd();
    this.lastCensus = Date.now();
  }

  /**
   * The live set is not what the census says. A row whose MAC fails (a live lease edited to
   * look ended, say) is named by a scan of the whole ledger; when every row is intact, a
   * live lease was removed or replaced by an older copy of itself.
   */
  private censusFailed(): never {
    for (const row of this.sql('SELECT * FROM leases').iterate() as IterableIterator<LeaseRow>) this.verified(row);
    throw tampered(CENSUS_WHAT);
  }

  private apply(
    census: Census,
    row: LeaseRow,
    to: LeaseState,
    changes: LeaseChanges,
    claim: { claimant: string | null; claimedUntil: number | null },
  ): LeaseRecord {
    const next = nextLeaseRow(this.macs, row, to, changes, claim);
    this.sql(
        `UPDATE leases SET state = ?, expires_at = ?, attempts = ?, next_attempt_at = ?, last_error = ?, ended_at = ?,
           claimant = ?, claimed_until = ?, mac = ? WHERE id = ?`,
      )
      .run(next.state, next.expires_at, next.attempts, next.next_attempt_at, next.last_error, next.ended_at, next.claimant, next.claimed_until, next.mac, row.id);
    if (isLive(row.state)) census.remove(row.mac!);
    if (isLive(next.state)) census.add(next.mac);
    return this.toRecord(next);
  }

  private toRecord(row: LeaseRow): LeaseRecord {
    return leaseRecord(row, this.dataKey);
  }
}

/** An intent whose creating process on this host no longer runs will never be completed. */
function ownerIsGone(row: LeaseRow): boolean {
  if (row.owner_host !== hostname() || !row.owner_pid) return false;
  try {
    process.kill(row.owner_pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}
