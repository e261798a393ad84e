/**
 * `sy store copy` in and out of a SQLite store in a directory. Out: under the store's write
 * lock (no process changes a row or the log meanwhile; what sits in the WAL is read like the
 * rest), every row, the censuses and the audit log's lines verbatim. In: into a directory
 * that holds nothing, the log written first and the database after it, in one transaction
 * that ends with the log's head: a copy cut short leaves no store that opens.
 */
import { closeSync, constants, fstatSync, mkdirSync, openSync, readFileSync, readdirSync, writeSync } from 'node:fs';
import { resolve } from 'node:path';
import { GENESIS_HASH, parseEntry } from '../audit/chain.js';
import { AUDIT_FILE, encodeAuditPosition, homeIdentity } from '../audit/file-log.js';
import { join } from 'node:path';
import { storeError } from '../errors.js';
import type { KeyEnvironment, PassphrasePrompt } from '../keys/sources.js';
import { storePath, unlockSqlite } from './open.js';
import { secureHome } from './permissions.js';
import { RecordMac, recordKey } from './records.js';
import { AuthenticatedMeta, openDatabase } from './sqlite-db.js';
import { LEASE_CENSUS } from './sqlite-leases.js';
import { AUDIT_HEAD, createSchema } from './sqlite-schema.js';
import { SECRET_CENSUS } from './sqlite-secrets.js';
import { SqliteStore } from './sqlite.js';
import type { StoreOptions } from './store.js';
import { type StoreDump, checkedDump, sealedRows, storeNotEmpty } from './transfer.js';
import { CLIENT_CENSUS, type ClientColumns, type LeaseColumns, type SecretColumns, type VersionColumns } from './rows.js';

type WithMac<T> = T & { mac: Buffer | null };

export async function dumpSqlite(home: string, env: KeyEnvironment, options: StoreOptions & { ask?: PassphrasePrompt }): Promise<{ dump: StoreDump; store: SqliteStore }> {
  const { db, dataKey, slot } = await unlockSqlite(home, env, options.ask, options.warn);
  const store = new SqliteStore(home, db, dataKey, slot.storeId, options);
  try {
    const meta = new AuthenticatedMeta(db, new RecordMac(recordKey(dataKey), slot.storeId));
    db.exec('BEGIN IMMEDIATE');
    try {
      const verified = await store.audit.verify();
      if (!verified.ok) {
        throw storeError('audit_log_tampered', `The audit log of ${home} is not intact (line ${verified.firstBad!.line} ${verified.firstBad!.reason}), so the store was not copied.`,
          'Run `sy audit verify` there.');
      }
      const lines = readLog(join(home, AUDIT_FILE)).slice(0, verified.lines);
      const hash = lines.length === 0 ? GENESIS_HASH : parseEntry(lines[lines.length - 1])!.hash;
      const dump = checkedDump({
        slot,
        dataKey,
        secrets: db.prepare('SELECT * FROM secrets ORDER BY path').all() as WithMac<SecretColumns>[],
        versions: db.prepare('SELECT * FROM secret_versions ORDER BY secret_id, version').all() as WithMac<VersionColumns>[],
        leases: db.prepare('SELECT * FROM leases ORDER BY created_at, id').all() as WithMac<LeaseColumns>[],
        clients: db.prepare('SELECT * FROM clients ORDER BY name').all() as WithMac<ClientColumns>[],
        secretCensus: meta.readCensus(SECRET_CENSUS, 'its secrets'),
        leaseCensus: meta.readCensus(LEASE_CENSUS, 'its live leases'),
        clientCensus: meta.readCensus(CLIENT_CENSUS, 'its clients'),
        audit: { lines, head: { lines: lines.length, hash } },
      });
      return { dump, store };
    } finally {
      db.exec('ROLLBACK');
    }
  } catch (error) {
    await store.close();
    throw error;
  }
}

/** The log's lines as written (the chain covers their exact text), read without following a link. */
function readLog(file: string): string[] {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  try {
    if (!fstatSync(fd).isFile()) return [];
    return readFileSync(fd, 'utf8').split('\n').filter((line, i, all) => line !== '' || i < all.length - 1);
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes `dump` as a SQLite store in `dir`, which must hold nothing (it is made if missing,
 * 0700). Returns the new store, opened with the dump's data key.
 */
export async function loadSqlite(dir: string, dump: StoreDump, options: StoreOptions): Promise<SqliteStore> {
  const home = resolve(dir);
  let entries: string[] = [];
  try {
    entries = readdirSync(home);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR') throw storeNotEmpty(home, 'it is a file');
    if (code !== 'ENOENT') throw error;
  }
  if (entries.length > 0) throw storeNotEmpty(home, `it holds ${entries.slice(0, 3).join(', ')}${entries.length > 3 ? ', ...' : ''}`);
  mkdirSync(home, { recursive: true, mode: 0o700 });
  secureHome(home, options.warn);

  const log = openSync(join(home, AUDIT_FILE), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  const text = Buffer.from(dump.audit.lines.map((line) => `${line}\n`).join(''), 'utf8');
  try {
    writeSync(log, text);
  } finally {
    closeSync(log);
  }

  const db = await openDatabase(storePath(home), { create: true });
  try {
    createSchema(db);
    const macs = new RecordMac(recordKey(dump.dataKey), dump.slot.storeId);
    const meta = new AuthenticatedMeta(db, macs);
    const rows = sealedRows(dump);
    db.transaction(() => {
      insertAll(db, 'secrets', rows.secrets);
      insertAll(db, 'secret_versions', rows.versions);
      insertAll(db, 'leases', rows.leases);
      insertAll(db, 'clients', rows.clients);
      db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run('keyslot', JSON.stringify(dump.slot));
      meta.writeCensus(SECRET_CENSUS, rows.secretCensus);
      meta.writeCensus(LEASE_CENSUS, rows.leaseCensus);
      meta.writeCensus(CLIENT_CENSUS, rows.clientCensus);
      meta.write(AUDIT_HEAD, encodeAuditPosition({ lines: dump.audit.head.lines, bytes: text.length, hash: dump.audit.head.hash, place: homeIdentity(home) }));
    }).immediate();
  } catch (error) {
    db.close();
    throw error;
  }
  return new SqliteStore(home, db, dump.dataKey, dump.slot.storeId, options);
}

function insertAll(db: Awaited<ReturnType<typeof openDatabase>>, table: string, rows: object[]): void {
  if (rows.length === 0) return;
  const names = Object.keys(rows[0]);
  const insert = db.prepare(`INSERT INTO ${table} (${names.join(', ')}) VALUES (${names.map(() => '?').join(', ')})`);
  for (const row of rows) insert.run(...names.map((name) => (row as Record<string, unknown>)[name]));
}
