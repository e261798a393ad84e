import { createHmac, hkdfSync, randomUUID } from 'node:crypto';
import type BetterSqlite3 from 'better-sqlite3';
import { SyError, failed, storeError, usageError } from '../errors.js';
import { open, seal } from '../keys/crypto.js';
import type { SecretRef } from '../secrets/path.js';
import type { SecretKind } from '../secrets/validate.js';
import { nowIso } from '../util/time.js';
import type { AuditHead } from '../audit/log.js';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import {
  ENDED_LEASE_STATES,
  type DueQuery,
  type LeaseChanges,
  type LeaseLedger,
  type LeaseQuery,
  type LeaseRecord,
  type LeaseRevocation,
  type LeaseState,
  type NewLease,
  type DeleteOptions,
  type NewSecret,
  type Secret,
  type SecretContent,
  type SecretMetadata,
  type SecretRepository,
  type SecretSearch,
  type Store,
} from './store.js';

type Database = BetterSqlite3.Database;

export const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS secrets (
  id              TEXT PRIMARY KEY,
  path            TEXT NOT NULL UNIQUE,
  kind            TEXT NOT NULL,
  linked_path     TEXT,
  current_version INTEGER NOT NULL,
  created         TEXT NOT NULL,
  last_modified   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS secrets_linked_path ON secrets (linked_path) WHERE linked_path IS NOT NULL;
CREATE TABLE IF NOT EXISTS secret_versions (
  secret_id TEXT NOT NULL REFERENCES secrets (id) ON DELETE CASCADE,
  version   INTEGER NOT NULL,
  created   TEXT NOT NULL,
  sealed    BLOB NOT NULL,
  PRIMARY KEY (secret_id, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
  id             TEXT PRIMARY KEY,
  secret_id      TEXT NOT NULL,
  base_id        TEXT NOT NULL,
  path           TEXT NOT NULL,
  pool           TEXT NOT NULL,
  engine         TEXT NOT NULL,
  target         TEXT NOT NULL,
  username       TEXT NOT NULL,
  state          TEXT NOT NULL,
  created_at     INTEGER NOT NULL,
  expires_at     INTEGER NOT NULL,
  max_expires_at INTEGER NOT NULL,
  attempts       INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER,
  last_error     TEXT,
  ended_at       INTEGER,
  owner_pid      INTEGER,
  owner_host     TEXT,
  claimant       TEXT,
  claimed_until  INTEGER,
  sealed         BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_due ON leases (state, expires_at);
CREATE INDEX IF NOT EXISTS leases_retry ON leases (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS leases_secret ON leases (secret_id, state);
CREATE INDEX IF NOT EXISTS leases_base ON leases (base_id, state);
CREATE INDEX IF NOT EXISTS leases_path ON leases (path);
`;

/** The live states of a lease: a user may exist on the target. */
export const LIVE_LEASE_STATES = ['intent', 'active', 'revoking', 'failed', 'irrevocable'] as const;

/**
 * Opens the SQLite file with the settings that make it safe for several processes:
 * WAL so readers never block the writer, FULL sync so a committed intent survives a crash,
 * and a busy timeout so concurrent writers queue instead of failing.
 */
export async function openDatabase(file: string, options: { create: boolean }): Promise<Database> {
  const Sqlite = loadSqlite();
  try {
    const db = new Sqlite(file, { fileMustExist: !options.create, nativeBinding: nativeBinding() });
    db.pragma('busy_timeout = 15000');
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    return db;
  } catch (error) {
    throw translateSqliteError(error);
  }
}

/**
 * better-sqlite3 is CommonJS: require() loads it without the ESM wrapper, and naming its
 * compiled addon directly skips the `bindings` package's search of the file system.
 */
const requireFromHere = createRequire(import.meta.url);

function loadSqlite(): typeof BetterSqlite3 {
  return requireFromHere('better-sqlite3') as typeof BetterSqlite3;
}

function nativeBinding(): string | undefined {
  try {
    return requireFromHere.resolve('better-sqlite3/build/Release/better_sqlite3.node');
  } catch {
    return undefined;
  }
}

export function createSchema(db: Database): void {
  runWrite(db, () => {
    db.exec(SCHEMA);
    db.prepare('INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)').run('schema_version', String(SCHEMA_VERSION));
  });
}

export function readMeta(db: Database, key: string): string | undefined {
  return runRead(() => (db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined)?.value);
}

/** Runs a read, reporting SQLite's errors in sy's words (a busy or corrupt store is exit 4). */
function runRead<T>(fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    throw translateSqliteError(error);
  }
}

/** Writes meta rows in one transaction; with `onlyIfAbsent` it refuses to replace `guardKey`. */
export function writeMeta(db: Database, entries: Record<string, string>, guardKey?: string): boolean {
  return runWrite(db, () => {
    if (guardKey !== undefined && readMeta(db, guardKey) !== undefined) return false;
    const upsert = db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
    for (const [key, value] of Object.entries(entries)) upsert.run(key, value);
    return true;
  });
}

/** Runs `fn` in a write transaction taken at once (BEGIN IMMEDIATE), so writers queue. */
export function runWrite<T>(db: Database, fn: () => T): T {
  try {
    return db.transaction(fn).immediate();
  } catch (error) {
    throw translateSqliteError(error);
  }
}

export function translateSqliteError(error: unknown): unknown {
  if (error instanceof SyError) return error;
  const code = (error as { code?: string }).code ?? '';
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return storeError('store_locked', 'The store is locked by another sy process and stayed locked for 15 seconds.', 'Try again in a moment.', error);
  }
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') {
    return storeError('store_tampered', 'The store file is damaged or is not a sy store.', 'Restore it from a backup; nothing was changed.', error);
  }
  if (code.startsWith('SQLITE_READONLY') || code.startsWith('SQLITE_CANTOPEN') || code.startsWith('SQLITE_PERM') || code.startsWith('SQLITE_AUTH')) {
    return storeError('store_unavailable', 'The store could not be opened for writing.', 'Check the permissions of SY_HOME.', error);
  }
  if (code === 'SQLITE_FULL' || code.startsWith('SQLITE_IOERR')) {
    return failed('store_io', 'The store could not be written: the disk is full or failing.', undefined, error);
  }
  return error;
}

/** Prepared statements, compiled once per store handle: preparing costs more than running. */
function statementCache(db: Database): (sql: string) => BetterSqlite3.Statement {
  const cache = new Map<string, BetterSqlite3.Statement>();
  return (sql) => {
    let statement = cache.get(sql);
    if (!statement) {
      statement = db.prepare(sql);
      cache.set(sql, statement);
    }
    return statement;
  };
}

interface SecretRow {
  id: string;
  path: string;
  kind: SecretKind;
  linked_path: string | null;
  current_version: number;
  created: string;
  last_modified: string;
}

interface SealedPayload extends SecretContent {
  path: string;
  kind: SecretKind;
  linkedPath?: string;
  created: string;
}

const secretAad = (id: string, version: number): string => `sy/secret/v1/${id}/${version}`;

class SqliteSecretRepository implements SecretRepository {
  constructor(
    private readonly db: Database,
    private readonly dataKey: Buffer,
  ) {
    this.sql = statementCache(db);
  }

  private readonly sql: (text: string) => BetterSqlite3.Statement;

  async get(ref: SecretRef, version?: number): Promise<Secret | undefined> {
    return runRead(() => {
      const row = this.findRow(ref);
      if (!row) return undefined;
      const wanted = version ?? row.current_version;
      const versionRow = this.sql('SELECT sealed FROM secret_versions WHERE secret_id = ? AND version = ?')
        .get(row.id, wanted) as { sealed: Buffer } | undefined;
      if (!versionRow) return undefined;
      return this.toSecret(row, wanted, this.unseal(row, wanted, versionRow.sealed));
    });
  }

  async create(secret: NewSecret): Promise<Secret> {
    const id = randomUUID();
    const now = nowIso();
    const payload: SealedPayload = { ...pickContent(secret), path: secret.path, kind: secret.kind, linkedPath: secret.linkedPath, created: now };
    const sealed = seal(this.dataKey, Buffer.from(JSON.stringify(payload)), secretAad(id, 1));
    runWrite(this.db, () => {
      if (this.sql('SELECT 1 FROM secrets WHERE path = ?').get(secret.path)) {
        throw usageError('secret_exists', `A secret already exists at ${secret.path}.`, 'Use `sy secret update` to change it.');
      }
      this.sql('INSERT INTO secrets (id, path, kind, linked_path, current_version, created, last_modified) VALUES (?, ?, ?, ?, 1, ?, ?)')
        .run(id, secret.path, secret.kind, secret.linkedPath ?? null, now, now);
      this.sql('INSERT INTO secret_versions (secret_id, version, created, sealed) VALUES (?, 1, ?, ?)').run(id, now, sealed);
    });
    return { id, path: secret.path, version: 1, ...pickContent(secret), created: now, lastModified: now };
  }

  async addVersion(id: string, expectedVersion: number, content: SecretContent & { linkedPath?: string }): Promise<Secret | undefined> {
    const now = nowIso();
    const version = expectedVersion + 1;
    return runWrite(this.db, () => {
      const row = this.sql('SELECT * FROM secrets WHERE id = ?').get(id) as SecretRow | undefined;
      if (!row || row.current_version !== expectedVersion) return undefined;
      const first = this.sql('SELECT sealed FROM secret_versions WHERE secret_id = ? AND version = ?').get(id, row.current_version) as { sealed: Buffer };
      const previous = this.unseal(row, row.current_version, first.sealed);
      const payload: SealedPayload = { ...pickContent(content), path: row.path, kind: row.kind, linkedPath: content.linkedPath, created: previous.created };
      const sealed = seal(this.dataKey, Buffer.from(JSON.stringify(payload)), secretAad(id, version));
      this.sql('INSERT INTO secret_versions (secret_id, version, created, sealed) VALUES (?, ?, ?, ?)').run(id, version, now, sealed);
      this.sql('UPDATE secrets SET current_version = ?, last_modified = ?, linked_path = ? WHERE id = ?')
        .run(version, now, content.linkedPath ?? null, id);
      return { id, path: row.path, version, ...pickContent(content), created: previous.created, lastModified: now };
    });
  }

  async delete(id: string, options: DeleteOptions): Promise<void> {
    runWrite(this.db, () => {
      const row = this.sql('SELECT path FROM secrets WHERE id = ?').get(id) as { path: string } | undefined;
      if (!row) return;
      if (!options.force) {
        const links = this.sql('SELECT path FROM secrets WHERE linked_path = ? ORDER BY path LIMIT 4').all(row.path) as { path: string }[];
        if (links.length > 0) {
          const named = links.slice(0, 3).map((l) => l.path).join(', ') + (links.length > 3 ? ', ...' : '');
          throw usageError('secret_in_use', `${row.path} is the base of dynamic secrets (${named}).`, 'Delete those first, or pass --force.');
        }
        const live = this.sql(`SELECT count(*) AS n FROM leases WHERE (secret_id = ? OR base_id = ?) AND state IN (${LIVE_LEASE_STATES.map(() => '?').join(', ')})`)
          .get(id, id, ...LIVE_LEASE_STATES) as { n: number };
        if (live.n > 0) {
          throw usageError('secret_in_use', `${row.path} has ${live.n} active lease${live.n === 1 ? '' : 's'}.`, 'Revoke them first, or pass --force.');
        }
      }
      this.sql('DELETE FROM secrets WHERE id = ?').run(id);
    });
  }

  async search(search: SecretSearch): Promise<SecretMetadata[]> {
    return runRead(() => {
      let rows: SecretRow[];
      if (search.linkedTo !== undefined) {
        rows = this.sql("SELECT * FROM secrets WHERE linked_path = ? AND kind = 'dynamic' ORDER BY path LIMIT ?")
          .all(search.linkedTo, search.limit) as SecretRow[];
      } else {
        const pattern = `%${(search.query ?? '').replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
        rows = this.sql("SELECT * FROM secrets WHERE path LIKE ? ESCAPE '\\' ORDER BY path LIMIT ?")
          .all(pattern, search.limit) as SecretRow[];
      }
      return rows.map((row) => {
        const sealed = this.sql('SELECT sealed FROM secret_versions WHERE secret_id = ? AND version = ?').get(row.id, row.current_version) as { sealed: Buffer };
        const { data: _data, ...metadata } = this.toSecret(row, row.current_version, this.unseal(row, row.current_version, sealed.sealed));
        return metadata;
      });
    });
  }

  private findRow(ref: SecretRef): SecretRow | undefined {
    return ('id' in ref
      ? this.sql('SELECT * FROM secrets WHERE id = ?').get(ref.id)
      : this.sql('SELECT * FROM secrets WHERE path = ?').get(ref.path)) as SecretRow | undefined;
  }

  /** Opens a version and checks that its sealed copy agrees with the index row. */
  private unseal(row: SecretRow, version: number, sealed: Buffer): SealedPayload {
    const payload = JSON.parse(open(this.dataKey, sealed, secretAad(row.id, version)).toString('utf8')) as SealedPayload;
    if (payload.path !== row.path || payload.kind !== row.kind) {
      throw storeError('store_tampered', 'The store is damaged or has been tampered with: a record failed its integrity check.',
        'Restore the store from a backup; nothing was changed.');
    }
    return payload;
  }

  private toSecret(row: SecretRow, version: number, payload: SealedPayload): Secret {
    return {
      id: row.id,
      path: row.path,
      version,
      ...pickContent(payload),
      created: payload.created,
      lastModified: row.last_modified,
    };
  }
}

function pickContent(content: SecretContent): SecretContent {
  return { description: content.description, attributes: content.attributes, data: content.data };
}

interface LeaseRow {
  id: string;
  secret_id: string;
  base_id: string;
  path: string;
  pool: string;
  engine: string;
  target: string;
  username: string;
  state: LeaseState;
  created_at: number;
  expires_at: number;
  max_expires_at: number;
  attempts: number;
  next_attempt_at: number | null;
  last_error: string | null;
  ended_at: number | null;
  owner_pid: number | null;
  owner_host: string | null;
  claimant: string | null;
  claimed_until: number | null;
  sealed: Buffer;
}

const leaseAad = (id: string): string => `sy/lease/v1/${id}`;
const LIVE_SQL = LIVE_LEASE_STATES.map((s) => `'${s}'`).join(', ');

class SqliteLeaseLedger implements LeaseLedger {
  constructor(
    private readonly db: Database,
    private readonly dataKey: Buffer,
  ) {
    this.sql = statementCache(db);
  }

  private readonly sql: (text: string) => BetterSqlite3.Statement;

  async recordIntent(lease: NewLease): Promise<void> {
    const sealed = seal(this.dataKey, Buffer.from(JSON.stringify(lease.revocation)), leaseAad(lease.id));
    runWrite(this.db, () => {
      this.sql(
          `INSERT INTO leases (id, secret_id, base_id, path, pool, engine, target, username, state, created_at, expires_at,
             max_expires_at, attempts, owner_pid, owner_host, sealed)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'intent', ?, ?, ?, 0, ?, ?, ?)`,
        )
        .run(lease.id, lease.secretId, lease.baseId, lease.path, lease.pool, lease.engine, lease.target, lease.username,
          lease.createdAt, lease.expiresAt, lease.maxExpiresAt, lease.ownerPid, lease.ownerHost, sealed);
    });
  }

  async get(id: string): Promise<LeaseRecord | undefined> {
    const row = runRead(() => this.sql('SELECT * FROM leases WHERE id = ?').get(id) as LeaseRow | undefined);
    return row && this.toRecord(row);
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
    const sql = `SELECT * FROM leases ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at, id LIMIT ? OFFSET ?`;
    const rows = runRead(() => this.sql(sql).all(...params, query.limit, query.offset ?? 0) as LeaseRow[]);
    return rows.map((row) => this.toRecord(row));
  }

  async transition(id: string, from: readonly LeaseState[], to: LeaseState, changes: LeaseChanges = {}): Promise<LeaseRecord | undefined> {
    return runWrite(this.db, () => {
      const row = this.sql('SELECT * FROM leases WHERE id = ?').get(id) as LeaseRow | undefined;
      if (!row || !from.includes(row.state)) return undefined;
      return this.apply(row, to, changes, { claimant: null, claimedUntil: null });
    });
  }

  async claimDue(query: DueQuery, claimant: string): Promise<LeaseRecord[]> {
    const poolSql = query.pool === undefined ? '' : ' AND pool = ?';
    const poolParams = query.pool === undefined ? [] : [query.pool];
    return runWrite(this.db, () => {
      const candidates = [
        ...(this.sql(`SELECT * FROM leases WHERE state = 'active' AND expires_at <= ?${poolSql} ORDER BY expires_at LIMIT ?`)
          .all(query.now, ...poolParams, query.limit) as LeaseRow[]),
        ...(this.sql(`SELECT * FROM leases WHERE state IN ('failed', 'irrevocable') AND next_attempt_at <= ?${poolSql} ORDER BY next_attempt_at LIMIT ?`)
          .all(query.now, ...poolParams, query.limit) as LeaseRow[]),
        ...(this.sql(`SELECT * FROM leases WHERE state = 'revoking' AND claimed_until <= ?${poolSql} LIMIT ?`)
          .all(query.now, ...poolParams, query.limit) as LeaseRow[]),
        ...(this.sql(`SELECT * FROM leases WHERE state = 'intent'${poolSql} LIMIT ?`).all(...poolParams, query.limit * 4) as LeaseRow[])
          .filter((row) => row.created_at <= query.staleIntentBefore || ownerIsGone(row)),
      ].slice(0, query.limit);
      return candidates.map((row) => this.apply(row, 'revoking', {}, { claimant, claimedUntil: query.now + query.claimMs }));
    });
  }

  async claim(id: string, claimant: string, now: number, claimMs: number): Promise<LeaseRecord | undefined> {
    return runWrite(this.db, () => {
      const row = this.sql('SELECT * FROM leases WHERE id = ?').get(id) as LeaseRow | undefined;
      if (!row || ENDED_LEASE_STATES.includes(row.state)) return undefined;
      if (row.state === 'revoking' && (row.claimed_until ?? 0) > now) return undefined;
      return this.apply(row, 'revoking', {}, { claimant, claimedUntil: now + claimMs });
    });
  }

  async settleAll(claimant: string, items: { id: string; to: LeaseState; changes?: LeaseChanges }[]): Promise<(LeaseRecord | undefined)[]> {
    return runWrite(this.db, () => {
      const select = this.sql('SELECT * FROM leases WHERE id = ?');
      return items.map(({ id, to, changes }) => {
        const row = select.get(id) as LeaseRow | undefined;
        if (!row || row.state !== 'revoking' || row.claimant !== claimant) return undefined;
        return this.apply(row, to, changes ?? {}, { claimant: null, claimedUntil: null });
      });
    });
  }

  async countByState(pool?: string): Promise<Record<string, number>> {
    const rows = runRead(() =>
      (pool === undefined
        ? this.sql('SELECT state, count(*) AS n FROM leases GROUP BY state').all()
        : this.sql('SELECT state, count(*) AS n FROM leases WHERE pool = ? GROUP BY state').all(pool)) as { state: string; n: number }[],
    );
    return Object.fromEntries(rows.map((r) => [r.state, r.n]));
  }

  async nextDue(pool?: string): Promise<number | undefined> {
    const poolSql = pool === undefined ? '' : ' AND pool = ?';
    const params = pool === undefined ? [] : [pool];
    return runRead(() => {
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

  async liveUsernames(): Promise<Set<string>> {
    const rows = runRead(() => this.sql("SELECT username FROM leases WHERE state IN ('intent', 'active', 'revoking')").all() as { username: string }[]);
    return new Set(rows.map((r) => r.username));
  }

  private apply(row: LeaseRow, to: LeaseState, changes: LeaseChanges, claim: { claimant: string | null; claimedUntil: number | null }): LeaseRecord {
    const next: LeaseRow = {
      ...row,
      state: to,
      expires_at: changes.expiresAt ?? row.expires_at,
      attempts: changes.attempts ?? row.attempts,
      next_attempt_at: changes.nextAttemptAt === undefined ? row.next_attempt_at : changes.nextAttemptAt,
      last_error: changes.lastError === undefined ? row.last_error : changes.lastError,
      ended_at: changes.endedAt === undefined ? row.ended_at : changes.endedAt,
      claimant: claim.claimant,
      claimed_until: claim.claimedUntil,
    };
    this.sql(
        `UPDATE leases SET state = ?, expires_at = ?, attempts = ?, next_attempt_at = ?, last_error = ?, ended_at = ?,
           claimant = ?, claimed_until = ? WHERE id = ?`,
      )
      .run(next.state, next.expires_at, next.attempts, next.next_attempt_at, next.last_error, next.ended_at, next.claimant, next.claimed_until, row.id);
    return this.toRecord(next);
  }

  private toRecord(row: LeaseRow): LeaseRecord {
    const revocation = JSON.parse(open(this.dataKey, row.sealed, leaseAad(row.id)).toString('utf8')) as LeaseRevocation;
    return {
      id: row.id,
      secretId: row.secret_id,
      baseId: row.base_id,
      path: row.path,
      pool: row.pool,
      engine: row.engine,
      target: row.target,
      username: row.username,
      state: row.state,
      createdAt: row.created_at,
      expiresAt: row.expires_at,
      maxExpiresAt: row.max_expires_at,
      attempts: row.attempts,
      nextAttemptAt: row.next_attempt_at ?? undefined,
      lastError: row.last_error ?? undefined,
      endedAt: row.ended_at ?? undefined,
      revocation,
    };
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

export class SqliteStore implements Store {
  readonly secrets: SecretRepository;
  readonly leases: LeaseLedger;

  private readonly auditKey: Buffer;

  constructor(
    readonly home: string,
    private readonly db: Database,
    dataKey: Buffer,
  ) {
    this.secrets = new SqliteSecretRepository(db, dataKey);
    this.leases = new SqliteLeaseLedger(db, dataKey);
    this.auditKey = Buffer.from(hkdfSync('sha256', dataKey, Buffer.alloc(0), 'sy/audit/v1', 32));
  }

  auditMac(text: string): string {
    return createHmac('sha256', this.auditKey).update(text).digest('hex');
  }

  /** Kept MACed in the meta table, so it cannot be set back without the key either. */
  readonly auditHead: AuditHead = {
    read: () => {
      const value = readMeta(this.db, 'audit_head');
      if (!value) return undefined;
      const [hash, mac] = value.split(':');
      return mac === this.auditMac(`head:${hash}`) ? hash : 'invalid';
    },
    write: (hash: string) => {
      this.db
        .prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value')
        .run('audit_head', `${hash}:${this.auditMac(`head:${hash}`)}`);
    },
  };

  exclusive<T>(fn: () => T): T {
    return runWrite(this.db, fn);
  }

  close(): void {
    this.db.close();
  }
}
