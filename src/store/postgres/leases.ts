import { type LeaseColumns, intentRow, leaseMac, leaseMacHolds, leaseRecord, nextLeaseRow } from '../rows.js';
import { hostname } from 'node:os';
import {
  ENDED_LEASE_STATES,
  IN_USE_LEASE_STATES,
  LIVE_LEASE_STATES,
  type LeaseChanges,
  type LeaseRecord,
  type LeaseState,
  type NewLease,
} from '../../model/lease.js';
import { storeError } from '../../errors.js';
import { Census, type RecordMac, type Roots, shown } from '../records.js';
import type { DueQuery, LeaseLedger, LeaseQuery } from '../store.js';
import type { Sql, StoreConnection } from './connection.js';
import { LEASE_CENSUS, type PgMeta, tampered } from './meta.js';
import { NOTIFY_SQL } from './pools.js';

export type LeaseRow = LeaseColumns & { mac: Buffer };

const CENSUS_WHAT = 'its live leases';
/** As in SQLite: how often a long-lived handle recounts the live leases. */
const CENSUS_EVERY_MS = 60_000;
const LIVE = [...LIVE_LEASE_STATES] as string[];
const isLive = (state: string): boolean => LIVE.includes(state);
/** A compare-and-set that keeps losing to other writers this often gives up (exit 4: the store is busy). */
const MAX_CAS_TRIES = 20;

/** When each kind of due lease is due: the daemon's next wake-up, and the claim order. */
const DUE_AT = `CASE state WHEN 'active' THEN expires_at WHEN 'revoking' THEN claimed_until WHEN 'intent' THEN created_at ELSE next_attempt_at END`;

/**
 * The lease ledger on PostgreSQL, checked as SQLite's is (see SqliteLeaseLedger): each row
 * against its MAC when read, the census of live leases on every write and by each scan of
 * the live set. Concurrency is the database's:
 * - a state change is one compare-and-set UPDATE of the row as read and checked
 *   (`WHERE id = $1 AND state = ANY($2) AND mac = $3`), so two processes racing on a lease
 *   cannot both win, and a row edited behind sy's back is never written over;
 * - claims lock the due rows FOR UPDATE SKIP LOCKED: claimants on any number of machines take
 *   disjoint batches, and a claim lasts until claimed_until, after which another takes it over;
 * - the census row is taken FOR UPDATE after the rows a write changes, so writers queue on it
 *   and never wait on each other in a circle.
 */
export class PostgresLeaseLedger implements LeaseLedger {
  private readonly openedAt = Date.now();
  private lastCensus: number | undefined;

  constructor(
    private readonly db: StoreConnection,
    private readonly dataKey: Buffer,
    private readonly macs: RecordMac,
    private readonly meta: PgMeta,
    /** Throws when the audit log does not end where its head says (a head put back with the censuses). */
    private readonly checkAuditEnd: (sql: Sql) => Promise<void>,
  ) {}

  async recordIntent(lease: NewLease): Promise<void> {
    const row = intentRow(lease, this.dataKey);
    const mac = leaseMac(this.macs, row);
    // Committed when this returns: the intent exists on the store before any user exists on a target.
    await this.db.tx(async (sql) => {
      await sql(
        `INSERT INTO sy.leases (id, secret_id, base_id, path, pool, engine, target, username, state, created_at, expires_at,
           max_expires_at, attempts, owner_pid, owner_host, client, sealed, mac)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'intent', $9, $10, $11, 0, $12, $13, $14, $15, $16)`,
        [row.id, row.secret_id, row.base_id, row.path, row.pool, row.engine, row.target, row.username,
          row.created_at, row.expires_at, row.max_expires_at, row.owner_pid, row.owner_host, row.client ?? null, row.sealed, mac],
      );
      await this.meta.updateCensus(sql, LEASE_CENSUS, (census) => census.add(mac));
      await sql(NOTIFY_SQL, [row.pool]);
    });
  }

  async get(id: string): Promise<LeaseRecord | undefined> {
    const [row] = await this.db.use((sql) => sql<LeaseRow>('SELECT * FROM sy.leases WHERE id = $1', [id]));
    return row && this.toRecord(this.verified(row));
  }

  async list(query: LeaseQuery): Promise<LeaseRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const param = (value: unknown): string => `$${params.push(value)}`;
    if (!query.all) where.push(`state = ANY(${param(LIVE)})`);
    if (query.secretId !== undefined) where.push(`secret_id = ${param(query.secretId)}`);
    if (query.path !== undefined) where.push(`path = ${param(query.path)}`);
    if (query.pathPrefix !== undefined) where.push(`path LIKE ${param(`${query.pathPrefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`)} ESCAPE '\\'`);
    if (query.pool !== undefined) where.push(`pool = ${param(query.pool)}`);
    if (query.client !== undefined) where.push(`client = ${param(query.client)}`);
    const text = `SELECT * FROM sy.leases ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
                   ORDER BY created_at, id COLLATE "C" LIMIT ${param(query.limit)} OFFSET ${param(query.offset ?? 0)}`;
    // Unfiltered and on one page, the listing holds every live lease: the census is checked for free.
    const whole = (query.offset ?? 0) === 0 && where.length <= (query.all ? 0 : 1);
    return this.db.tx(async (sql) => {
      const rows = (await sql<LeaseRow>(text, params)).map((row) => this.verified(row));
      if (whole && rows.length < query.limit) await this.compareCensus(sql, rows.filter((row) => isLive(row.state)));
      return rows.map((row) => this.toRecord(row));
    }, 'snapshot');
  }

  async transition(id: string, from: readonly LeaseState[], to: LeaseState, changes: LeaseChanges = {}): Promise<LeaseRecord | undefined> {
    return this.db.tx(async (sql) => {
      for (let tries = 0; tries < MAX_CAS_TRIES; tries++) {
        const row = await this.select(sql, id);
        if (!row || !from.includes(row.state)) return undefined;
        const next = this.next(row, to, changes, { claimant: null, claimedUntil: null });
        if (await this.write(sql, [{ row, next }], from)) {
          await this.updateCensus(sql, [{ row, next }]);
          // Activated or renewed: daemons asleep until a later expiry wake up (pools.ts).
          if (to === 'active') await sql(NOTIFY_SQL, [row.pool]);
          return this.toRecord(next);
        }
      }
      throw busy();
    });
  }

  async claimDue(query: DueQuery, claimant: string): Promise<LeaseRecord[]> {
    return this.db.tx(async (sql) => {
      // The queries below trust plain columns to say what is due; the recount finds a row moved
      // out of their reach. It holds the census first, so no writer commits between the two.
      let held: { roots: Roots; census: Census } | undefined;
      if (this.censusStale()) {
        const roots = await this.meta.readRoots(sql, true);
        held = { roots, census: this.meta.census(roots, LEASE_CENSUS) };
        await this.recount(sql, held.census);
      }
      const pool = query.pool === undefined ? '' : ' AND pool = $4';
      const params: unknown[] = [query.now, query.staleIntentBefore, query.limit, ...(query.pool === undefined ? [] : [query.pool])];
      const due = await sql<LeaseRow>(
        `SELECT * FROM sy.leases
          WHERE ((state = 'active' AND expires_at <= $1)
              OR (state IN ('failed', 'irrevocable') AND next_attempt_at <= $1)
              OR (state = 'revoking' AND claimed_until <= $1)
              OR (state = 'intent' AND created_at <= $2))${pool}
          ORDER BY ${DUE_AT} LIMIT $3 FOR UPDATE SKIP LOCKED`,
        params,
      );
      const rows = due.map((row) => this.verified(row));
      if (rows.length < query.limit) rows.push(...(await this.abandonedIntents(sql, query, query.limit - rows.length)));
      const now = query.now;
      const changes = rows.map((row) => ({ row, next: this.next(row, 'revoking', {}, { claimant, claimedUntil: now + query.claimMs }) }));
      // Locked above: no one else can have changed them.
      if (changes.length > 0 && !(await this.write(sql, changes))) throw busy();
      if (held) {
        for (const { row, next } of changes) {
          held.census.remove(row.mac);
          held.census.add(next.mac);
        }
        if (changes.length > 0) await this.meta.writeRoots(sql, held.roots, { [LEASE_CENSUS]: held.census.encode() });
      } else {
        await this.updateCensus(sql, changes);
      }
      return changes.map(({ next }) => this.toRecord(next));
    });
  }

  /** Intents whose creating process on this host is gone, before they are stale: they will never complete. */
  private async abandonedIntents(sql: Sql, query: DueQuery, limit: number): Promise<LeaseRow[]> {
    const pool = query.pool === undefined ? '' : ' AND pool = $3';
    const mine = await sql<{ id: string; owner_pid: number | null }>(
      `SELECT id, owner_pid FROM sy.leases WHERE state = 'intent' AND owner_host = $1 AND created_at > $2${pool} LIMIT 1000`,
      [hostname(), query.staleIntentBefore, ...(query.pool === undefined ? [] : [query.pool])],
    );
    const gone = mine.filter((row) => row.owner_pid !== null && !processRuns(row.owner_pid)).map((row) => row.id).slice(0, limit);
    if (gone.length === 0) return [];
    const rows = await sql<LeaseRow>(`SELECT * FROM sy.leases WHERE id = ANY($1) AND state = 'intent' ORDER BY id FOR UPDATE SKIP LOCKED`, [gone]);
    return rows.map((row) => this.verified(row));
  }

  async claim(id: string, claimant: string, now: number, claimMs: number): Promise<LeaseRecord | undefined> {
    // A lease set back to an older row of itself (revoked to active) passes its MAC; only the
    // recount finds it, as before a sweep's first claim. Counted in a snapshot of its own, so
    // that the census is not held (and taken before the row) by this claim's transaction.
    if (this.censusStale()) {
      await this.db.tx(async (sql) => this.recount(sql, await this.meta.readCensus(sql, LEASE_CENSUS)), 'snapshot');
    }
    return this.db.tx(async (sql) => {
      for (let tries = 0; tries < MAX_CAS_TRIES; tries++) {
        const row = await this.select(sql, id);
        if (!row || ENDED_LEASE_STATES.includes(row.state)) return undefined;
        if (row.state === 'revoking' && (row.claimed_until ?? 0) > now) return undefined;
        const next = this.next(row, 'revoking', {}, { claimant, claimedUntil: now + claimMs });
        if (await this.write(sql, [{ row, next }], [row.state])) {
          await this.updateCensus(sql, [{ row, next }]);
          return this.toRecord(next);
        }
      }
      throw busy();
    });
  }

  async settleAll(claimant: string, items: { id: string; to: LeaseState; changes?: LeaseChanges }[]): Promise<(LeaseRecord | undefined)[]> {
    if (items.length === 0) return [];
    return this.db.tx(async (sql) => {
      // Locked in id order: two settlements never wait on each other in a circle.
      const locked = await sql<LeaseRow>('SELECT * FROM sy.leases WHERE id = ANY($1) ORDER BY id FOR UPDATE', [items.map((i) => i.id)]);
      const byId = new Map(locked.map((row) => [row.id, row]));
      const changes: { row: LeaseRow; next: LeaseRow }[] = [];
      const results = items.map(({ id, to, changes: change }) => {
        const found = byId.get(id);
        const row = found && this.verified(found);
        if (!row || row.state !== 'revoking' || row.claimant !== claimant) return undefined;
        const next = this.next(row, to, change ?? {}, { claimant: null, claimedUntil: null });
        changes.push({ row, next });
        byId.set(id, next);
        return next;
      });
      if (changes.length > 0 && !(await this.write(sql, changes))) throw busy();
      await this.updateCensus(sql, changes);
      return results.map((row) => row && this.toRecord(row));
    });
  }

  /**
   * Counted from the index. The census covers each live lease's state, so once it has been
   * recounted on this handle these counts are of checked rows.
   */
  async countByState(pool?: string): Promise<Record<string, number>> {
    return this.db.tx(async (sql) => {
      if (this.censusStale()) await this.recount(sql, await this.meta.readCensus(sql, LEASE_CENSUS));
      const rows = pool === undefined
        ? await sql<{ state: string; n: number }>('SELECT state, count(*)::integer AS n FROM sy.leases GROUP BY state')
        : await sql<{ state: string; n: number }>('SELECT state, count(*)::integer AS n FROM sy.leases WHERE pool = $1 GROUP BY state', [pool]);
      return Object.fromEntries(rows.map((r) => [r.state, r.n]));
    }, 'snapshot');
  }

  async countLive(client: string): Promise<number> {
    const text = 'SELECT count(*)::integer AS n FROM sy.leases WHERE client = $1 AND state = ANY($2)';
    if (this.censusStale()) {
      return this.db.tx(async (sql) => {
        await this.recount(sql, await this.meta.readCensus(sql, LEASE_CENSUS));
        return (await sql<{ n: number }>(text, [client, LIVE]))[0].n;
      }, 'snapshot');
    }
    const [row] = await this.db.use((sql) => sql<{ n: number }>(text, [client, LIVE]));
    return row.n;
  }

  async nextDue(pool?: string): Promise<number | undefined> {
    const text = `SELECT min(${DUE_AT}) AS t FROM sy.leases WHERE state = ANY($1)${pool === undefined ? '' : ' AND pool = $2'}`;
    const params = [LIVE, ...(pool === undefined ? [] : [pool])];
    // A daemon may sleep on this answer for good: past its first minute, recount each minute.
    if (Date.now() - this.openedAt >= CENSUS_EVERY_MS && this.censusStale()) {
      return this.db.tx(async (sql) => {
        await this.recount(sql, await this.meta.readCensus(sql, LEASE_CENSUS));
        return (await sql<{ t: number | null }>(text, params))[0].t ?? undefined;
      }, 'snapshot');
    }
    const [row] = await this.db.use((sql) => sql<{ t: number | null }>(text, params));
    return row.t ?? undefined;
  }

  /** Reads every live lease (the reaper must not drop one), so the census is checked on the way. */
  async liveUsernames(): Promise<Set<string>> {
    return this.db.tx(async (sql) => {
      const rows = (await sql<LeaseRow>('SELECT * FROM sy.leases WHERE state = ANY($1)', [LIVE])).map((row) => this.verified(row));
      await this.compareCensus(sql, rows);
      return new Set(rows.filter((row) => (IN_USE_LEASE_STATES as readonly string[]).includes(row.state)).map((row) => row.username));
    }, 'snapshot');
  }

  /** Live leases of a secret (as dynamic secret or as base), each checked: deleting it must not miss one. */
  async liveLeasesOf(sql: Sql, secretId: string): Promise<number> {
    const rows = await sql<LeaseRow>('SELECT * FROM sy.leases WHERE (secret_id = $1 OR base_id = $1) AND state = ANY($2)', [secretId, LIVE]);
    return rows.map((row) => this.verified(row)).length;
  }

  private censusStale(): boolean {
    return this.lastCensus === undefined || Date.now() - this.lastCensus >= CENSUS_EVERY_MS;
  }

  private async select(sql: Sql, id: string): Promise<LeaseRow | undefined> {
    const [row] = await sql<LeaseRow>('SELECT * FROM sy.leases WHERE id = $1', [id]);
    return row && this.verified(row);
  }

  private verified(row: LeaseRow): LeaseRow {
    if (!leaseMacHolds(this.macs, row)) throw tampered(`lease ${shown(row.id)}`);
    return row;
  }

  /**
   * Writes new versions of rows as read: each UPDATE matches only the row whose MAC was checked
   * (and, for a compare-and-set, whose state is still one of `from`). True when every row was written.
   */
  private async write(sql: Sql, changes: { row: LeaseRow; next: LeaseRow }[], from?: readonly LeaseState[]): Promise<boolean> {
    const column = <K extends keyof LeaseRow>(key: K) => changes.map(({ next }) => next[key]);
    const updated = await sql(
      `UPDATE sy.leases AS l
          SET state = v.state, expires_at = v.expires_at, attempts = v.attempts, next_attempt_at = v.next_attempt_at,
              last_error = v.last_error, ended_at = v.ended_at, claimant = v.claimant, claimed_until = v.claimed_until, mac = v.mac
         FROM unnest($1::text[], $2::bytea[], $3::text[], $4::bigint[], $5::integer[], $6::bigint[], $7::text[], $8::bigint[], $9::text[], $10::bigint[], $11::bytea[])
              AS v(id, old_mac, state, expires_at, attempts, next_attempt_at, last_error, ended_at, claimant, claimed_until, mac)
        WHERE l.id = v.id AND l.mac = v.old_mac AND ($12::text[] IS NULL OR l.state = ANY($12))
        RETURNING l.id`,
      [column('id'), changes.map(({ row }) => row.mac), column('state'), column('expires_at'), column('attempts'), column('next_attempt_at'),
        column('last_error'), column('ended_at'), column('claimant'), column('claimed_until'), column('mac'), from ? [...from] : null],
    );
    return updated.length === changes.length;
  }

  /** The census of live leases after `changes`, in the caller's transaction (taken after the rows). */
  private async updateCensus(sql: Sql, changes: { row: LeaseRow; next: LeaseRow }[]): Promise<void> {
    const moves = changes.filter(({ row, next }) => isLive(row.state) || isLive(next.state));
    if (moves.length === 0) return;
    await this.meta.updateCensus(sql, LEASE_CENSUS, (census) => {
      for (const { row, next } of moves) {
        if (isLive(row.state)) census.remove(row.mac);
        if (isLive(next.state)) census.add(next.mac);
      }
    });
  }

  /** Reads every live lease and compares them with `census`, read in the same snapshot or held. */
  private async recount(sql: Sql, census: Census): Promise<void> {
    const rows = await sql<LeaseRow>('SELECT * FROM sy.leases WHERE state = ANY($1)', [LIVE]);
    const found = new Census();
    for (const row of rows) found.add(this.verified(row).mac);
    if (!found.equals(census)) await this.censusFailed(sql);
    await this.checkAuditEnd(sql);
    this.lastCensus = Date.now();
  }

  /** `rows` are all the live leases, already checked. */
  private async compareCensus(sql: Sql, rows: LeaseRow[]): Promise<void> {
    const found = new Census();
    for (const row of rows) found.add(row.mac);
    if (!found.equals(await this.meta.readCensus(sql, LEASE_CENSUS))) await this.censusFailed(sql);
    await this.checkAuditEnd(sql);
    this.lastCensus = Date.now();
  }

  /**
   * The live set is not what the census says. A row whose MAC fails (a live lease edited to
   * look ended, say) is named by a scan of the whole ledger; when every row is intact, a
   * live lease was removed or replaced by an older copy of itself.
   */
  private async censusFailed(sql: Sql): Promise<never> {
    for (const row of await sql<LeaseRow>('SELECT * FROM sy.leases')) this.verified(row);
    throw tampered(CENSUS_WHAT);
  }

  private next(row: LeaseRow, to: LeaseState, changes: LeaseChanges, claim: { claimant: string | null; claimedUntil: number | null }): LeaseRow {
    return nextLeaseRow(this.macs, row, to, changes, claim);
  }

  private toRecord(row: LeaseRow): LeaseRecord {
    return leaseRecord(row, this.dataKey);
  }
}

const busy = () => storeError('store_busy', 'The store kept changing under this command (many writers at once).', 'Try again in a moment.');

/** Whether a process of this host runs (an intent's creator); one we may not signal runs. */
function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}
