import { closeSync, fdatasync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import type BetterSqlite3 from 'better-sqlite3';
import { isAheadOfHead } from '../audit/file-log.js';
import { SyError, failed, storeError } from '../errors.js';
import { Census, ROOTS, ROOT_KEYS, type RecordMac, RootRecords, type Roots, tampered } from './records.js';

export type Database = BetterSqlite3.Database;

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

export function readMeta(db: Database, key: string): string | undefined {
  return runRead(() => (db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined)?.value);
}

/** Runs a read, reporting SQLite's errors in sy's words (a busy or corrupt store is exit 4). */
export function runRead<T>(fn: () => T): T {
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

/**
 * Runs `fn` in a read transaction: every query in it sees the same committed state, so a
 * census compared with the rows it counts cannot be fooled by a writer in between.
 */
export function runSnapshot<T>(db: Database, fn: () => T): T {
  if (db.inTransaction) return runRead(fn);
  for (let attempt = 1; ; attempt++) {
    try {
      return db.transaction(fn).deferred();
    } catch (error) {
      // The snapshot's audit head was commits behind the log that other processes appended
      // to meanwhile: a new snapshot has their head. One that stays behind is refused.
      if (attempt < SNAPSHOT_TRIES && isAheadOfHead(error)) continue;
      throw translateSqliteError(error);
    }
  }
}

/** How often a read transaction is taken again when the audit log ran ahead of its snapshot. */
const SNAPSHOT_TRIES = 20;

/** Runs `fn` in a write transaction taken at once (BEGIN IMMEDIATE), so writers queue. */
export function runWrite<T>(db: Database, fn: () => T): T {
  try {
    const result = db.transaction(fn).immediate();
    walSyncs.get(db)?.committed();
    return result;
  } catch (error) {
    throw translateSqliteError(error);
  }
}

const walSyncs = new WeakMap<Database, WalSync>();

/**
 * Group commit, for a process that serves many requests at once (`sy daemon`). With
 * `synchronous = FULL` every commit waits for the disk (an fsync of the WAL) on the event loop,
 * and nothing else in the process moves meanwhile. Here the connection commits with
 * `synchronous = NORMAL`, which writes the WAL without syncing it, and `durable()` waits for
 * an fdatasync of the WAL on libuv's thread pool instead. One sync makes every commit before it
 * durable, so concurrent writers share it. A store write resolves only after it (see
 * durableMethods): what a caller is told is written is on disk, as with FULL.
 */
export class WalSync {
  private commits = 0;
  private synced = 0;
  private running: Promise<void> | undefined;

  constructor(
    private readonly sync: () => Promise<void>,
    /** Called by close(). */
    private readonly release: () => void = () => undefined,
  ) {}

  /** Switches `db` (a file in WAL mode) to group commit; close() before the database. */
  static enable(db: Database): WalSync {
    const wal = walFile(`${db.name}-wal`);
    const walSync = new WalSync(wal.datasync, wal.close);
    db.pragma('synchronous = NORMAL');
    walSyncs.set(db, walSync);
    return walSync;
  }

  /** Waits for a sync in flight (its descriptor must not be closed under it), then closes. */
  async close(): Promise<void> {
    await this.running?.catch(() => undefined);
    this.release();
  }

  /** A transaction committed (runWrite). */
  committed(): void {
    this.commits++;
  }

  /** Commits so far. */
  get count(): number {
    return this.commits;
  }

  /** Resolves once every commit made so far is on disk. */
  async durable(): Promise<void> {
    const wanted = this.commits;
    while (this.synced < wanted) {
      this.running ??= this.syncNow().finally(() => (this.running = undefined));
      await this.running;
    }
  }

  private async syncNow(): Promise<void> {
    // Commits made before this line are in the WAL file already (each one wrote it before returning).
    const upTo = this.commits;
    try {
      await this.sync();
    } catch (error) {
      throw failed('store_io', 'The store could not be written: the disk is full or failing.', undefined, error);
    }
    this.synced = Math.max(this.synced, upTo);
  }
}

/**
 * fdatasync of the WAL file on the thread pool, through a descriptor opened at the first sync
 * and kept: SQLite removes the WAL only when the last connection to the database closes, and
 * this process holds one for as long as it syncs.
 */
function walFile(file: string): { datasync: () => Promise<void>; close: () => void } {
  let fd: number | undefined;
  return {
    datasync: () =>
      new Promise<void>((resolve, reject) => {
        try {
          fd ??= openSync(file, 'r');
        } catch (error) {
          reject(error);
          return;
        }
        fdatasync(fd, (error) => (error ? reject(error) : resolve()));
      }),
    close() {
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
    },
  };
}

/**
 * `repository` with each of its asynchronous methods that committed resolving only once the
 * commit is durable (WalSync). A method that only read does not wait for the syncs of
 * others' commits: what it read is the same either way.
 */
export function durableMethods<T extends object>(repository: T, walSync: WalSync): T {
  return new Proxy(repository, {
    get(target, key) {
      const value = Reflect.get(target, key, target) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        const mark = walSync.count;
        const result = (value as (...a: unknown[]) => unknown).apply(target, args);
        if (!(result instanceof Promise)) return result;
        return result.then(async (resolved: unknown) => {
          // Someone else's commit in between makes a read wait too: it is never told done early.
          if (walSync.count !== mark) await walSync.durable();
          return resolved;
        });
      };
    },
  });
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
export function statementCache(db: Database): (sql: string) => BetterSqlite3.Statement {
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

/**
 * The store's roots in meta (records.ts): the censuses and the audit log's head, each
 * stamped with its generation, and the generation that vouches for them all. Every read
 * checks them together in one statement; every write of one is in the caller's write
 * transaction (BEGIN IMMEDIATE: the store's one writer at a time), with the generation.
 */
export class AuthenticatedMeta {
  readonly roots: RootRecords;
  private readonly sql: (text: string) => BetterSqlite3.Statement;
  /** writeRoots calls so far: withCensus reads the roots again only when its change wrote some. */
  private rootWrites = 0;

  constructor(
    private readonly db: Database,
    macs: RecordMac,
  ) {
    this.roots = new RootRecords(macs);
    this.sql = statementCache(db);
  }

  /** Every root, checked against the generation; a root missing or put back throws (exit 4). */
  readRoots(absent: readonly string[] = []): Roots {
    const rows = this.sql(`SELECT key, value FROM meta WHERE key IN (${ROOT_KEYS.map(() => '?').join(', ')})`).all(...ROOT_KEYS) as { key: string; value: string }[];
    return this.roots.check(new Map(rows.map((row) => [row.key, row.value])), absent);
  }

  /** Within the caller's write transaction: `changes` (root key to value) written at the next generation. */
  writeRoots(changes: Record<string, string>, roots = this.readRoots()): void {
    const upsert = this.sql('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
    for (const [key, stored] of this.roots.next(roots, changes)) upsert.run(key, stored);
    this.rootWrites++;
  }

  /**
   * A write transaction with the census `key` loaded, changed by `fn` and saved at the next
   * generation. The roots are read once for both, unless `fn` wrote roots itself.
   */
  withCensus<T>(key: string, fn: (census: Census) => T): T {
    return runWrite(this.db, () => {
      const roots = this.readRoots();
      const census = Census.decode(roots.values.get(key) ?? '');
      if (!census) throw tampered(ROOTS[key]);
      const writes = this.rootWrites;
      const result = fn(census);
      this.writeRoots({ [key]: census.encode() }, this.rootWrites === writes ? roots : this.readRoots());
      return result;
    });
  }

  readCensus(key: string): Census {
    const census = Census.decode(this.readRoots().values.get(key) ?? '');
    if (!census) throw tampered(ROOTS[key]);
    return census;
  }

  /** Every root of a store as it begins (a new store, a copy, a migration), in the caller's transaction. */
  writeInitial(values: Record<string, string>, generation = 1): void {
    const upsert = this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
    for (const [key, stored] of this.roots.initial(values, generation)) upsert.run(key, stored);
  }
}
