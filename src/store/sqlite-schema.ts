import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { auditMac } from '../audit/chain.js';
import { AUDIT_FILE, EMPTY_LOG, type FilePosition, encodeAuditPosition, homeIdentity, locateAuditLine } from '../audit/file-log.js';
import { tryOpen } from '../keys/crypto.js';
import { LIVE_LEASE_STATES } from '../model/lease.js';
import { Census, RecordMac, recordKey, shown, tampered } from './records.js';
import { AuthenticatedMeta, type Database, readMeta, runWrite } from './sqlite-db.js';
import { LEASE_CENSUS } from './sqlite-leases.js';
import { CLIENT_CENSUS, leaseMac } from './rows.js';
import { CLIENTS_SCHEMA } from './sqlite-clients.js';
import { DAEMONS_SCHEMA } from './sqlite-pools.js';
import { SECRET_CENSUS, secretMac, versionMac } from './sqlite-secrets.js';

/** The SQLite store's tables, and the migrations of stores that older versions of sy made. */

/**
 * 1: sealed payloads, plain index columns. 2: every row carries a MAC of its values
 * (`mac`), the census of live leases and of secrets and the audit log's head are kept in
 * meta, authenticated too. 3: the pool registry's `daemons` table (plain rows, see
 * pools.ts). 4: the clients of the lease API (`clients`, their census in meta) and the
 * client of each lease (`leases.client`, in its MAC when set). Stores of older versions are
 * migrated when opened with the key.
 */
export const SCHEMA_VERSION = 4;
/** The schema whose records (MACs, censuses, key slot) the current one keeps: 3 added a table only. */
export const RECORDS_SCHEMA = 2;

const LEASES_CLIENT_INDEX = 'CREATE INDEX IF NOT EXISTS leases_client ON leases (client, state) WHERE client IS NOT NULL;';

const SCHEMA = `${DAEMONS_SCHEMA}${CLIENTS_SCHEMA}
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
  last_modified   TEXT NOT NULL,
  mac             BLOB
);
CREATE INDEX IF NOT EXISTS secrets_linked_path ON secrets (linked_path) WHERE linked_path IS NOT NULL;
CREATE TABLE IF NOT EXISTS secret_versions (
  secret_id TEXT NOT NULL REFERENCES secrets (id) ON DELETE CASCADE,
  version   INTEGER NOT NULL,
  created   TEXT NOT NULL,
  sealed    BLOB NOT NULL,
  mac       BLOB,
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
  sealed         BLOB NOT NULL,
  client         TEXT,
  mac            BLOB
);
CREATE INDEX IF NOT EXISTS leases_due ON leases (state, expires_at);
CREATE INDEX IF NOT EXISTS leases_retry ON leases (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS leases_secret ON leases (secret_id, state);
CREATE INDEX IF NOT EXISTS leases_base ON leases (base_id, state);
CREATE INDEX IF NOT EXISTS leases_path ON leases (path);
${LEASES_CLIENT_INDEX}
`;

export function createSchema(db: Database): void {
  runWrite(db, () => {
    db.exec(SCHEMA);
    db.prepare('INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)').run('schema_version', String(SCHEMA_VERSION));
  });
}


/**
 * Schema 2 to 3: the pool registry's table. It holds nothing authenticated, so the records
 * stay as they are; a schema set back to 2 by someone without the key only has the table
 * made again (if missing) and the version put back.
 */
export function migrateToPools(db: Database): void {
  runWrite(db, () => {
    if (Number(readMeta(db, 'schema_version')) >= 3) return; // another process got there first
    db.exec(DAEMONS_SCHEMA);
    db.prepare("UPDATE meta SET value = ? WHERE key = 'schema_version'").run('3');
  });
}

/**
 * Schema 3 to 4, by the first process that opens the store with its key: the clients' table
 * and its (empty) census, and the leases' client column. No row changes: a lease without a
 * client keeps its MAC (rows.ts, leaseMacValues). A census already there is kept, so a schema
 * set back to 3 by someone without the key cannot have the clients counted afresh; what such
 * a set-back can still do is drop every client, and with it every client's access.
 */
export function migrateToClients(db: Database, macs: RecordMac): void {
  runWrite(db, () => {
    if (Number(readMeta(db, 'schema_version')) >= 4) return; // another process got there first
    addClients(db, new AuthenticatedMeta(db, macs));
    db.prepare("UPDATE meta SET value = ? WHERE key = 'schema_version'").run(String(SCHEMA_VERSION));
  });
}

/** What schema 4 adds, within the caller's write transaction. */
function addClients(db: Database, meta: AuthenticatedMeta): void {
  const columns = db.prepare('PRAGMA table_info(leases)').all() as { name: string }[];
  if (!columns.some((c) => c.name === 'client')) db.exec('ALTER TABLE leases ADD COLUMN client TEXT');
  db.exec(CLIENTS_SCHEMA);
  db.exec(LEASES_CLIENT_INDEX);
  if (readMeta(db, CLIENT_CENSUS) === undefined) meta.writeCensus(CLIENT_CENSUS, new Census());
}

/** The meta row that records where the audit log ends (a FilePosition, authenticated). */
export const AUDIT_HEAD = 'audit_head';

/**
 * Schema 1 to 2, once, by the first process that opens the store with its key: every row
 * gets its MAC, the censuses are counted, the audit log's head (a bare hash in schema 1)
 * becomes a position, and the key slot is re-sealed for schema 2 (`slot`), so that a schema-2
 * store cannot be passed off as a schema-1 one to have its rows MACed afresh. Rows are taken
 * as they are, having had nothing to be checked against; the few contradictions schema 1
 * can show (a current version that is not the newest, a ledger user name that differs from
 * the sealed one) are refused. One transaction: a crash leaves the store at schema 1.
 */
export function migrateToRecordMacs(db: Database, options: { dataKey: Buffer; storeId: string; home: string; slot: string }): void {
  runWrite(db, () => {
    if (Number(readMeta(db, 'schema_version')) >= 2) return; // another process got there first
    const macs = new RecordMac(recordKey(options.dataKey), options.storeId);
    const meta = new AuthenticatedMeta(db, macs);
    for (const table of ['secrets', 'secret_versions', 'leases']) {
      const columns = db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[];
      if (!columns.some((c) => c.name === 'mac')) db.exec(`ALTER TABLE ${table} ADD COLUMN mac BLOB`);
    }

    const secrets = new Census();
    const setSecret = db.prepare('UPDATE secrets SET mac = ? WHERE id = ?');
    for (const row of db.prepare('SELECT * FROM secrets').all() as Parameters<typeof secretMac>[1][]) {
      const newest = (db.prepare('SELECT max(version) AS v FROM secret_versions WHERE secret_id = ?').get(row.id) as { v: number | null }).v;
      if (newest !== row.current_version) throw tampered(`secret ${shown(row.path)}`);
      const mac = secretMac(macs, row);
      setSecret.run(mac, row.id);
      secrets.add(mac);
    }
    const setVersion = db.prepare('UPDATE secret_versions SET mac = ? WHERE secret_id = ? AND version = ?');
    for (const row of db.prepare('SELECT * FROM secret_versions').all() as Parameters<typeof versionMac>[1][]) {
      setVersion.run(versionMac(macs, row), row.secret_id, row.version);
    }

    const live = new Census();
    const setLease = db.prepare('UPDATE leases SET mac = ? WHERE id = ?');
    for (const row of db.prepare('SELECT * FROM leases').all() as Parameters<typeof leaseMac>[1][]) {
      const sealed = tryOpen(options.dataKey, row.sealed, `sy/lease/v1/${row.id}`);
      const username = sealed && (JSON.parse(sealed.toString('utf8')) as { username?: string }).username;
      if (!sealed || (username !== undefined && username !== row.username)) throw tampered(`lease ${shown(row.id)}`);
      const mac = leaseMac(macs, row);
      setLease.run(mac, row.id);
      if ((LIVE_LEASE_STATES as readonly string[]).includes(row.state)) live.add(mac);
    }

    db.exec(DAEMONS_SCHEMA);
    addClients(db, meta);
    meta.writeCensus(SECRET_CENSUS, secrets);
    meta.writeCensus(LEASE_CENSUS, live);
    meta.write(AUDIT_HEAD, encodeAuditPosition(legacyAuditHead(db, options.dataKey, options.home)));
    db.prepare("UPDATE meta SET value = ? WHERE key = 'keyslot'").run(options.slot);
    db.prepare("UPDATE meta SET value = ? WHERE key = 'schema_version'").run(String(SCHEMA_VERSION));
  });
}

/**
 * Schema 1 kept the newest line's hash, MACed (`hash:mac`). Found in the log, it becomes
 * the position of that line; not found, the log was cut before the upgrade, and a position
 * no log can reach keeps saying so. No head, or no log here (a store copied without it):
 * there is nothing to compare, and the log of this directory starts now.
 */
function legacyAuditHead(db: Database, dataKey: Buffer, home: string): FilePosition {
  const value = readMeta(db, AUDIT_HEAD);
  const file = join(home, AUDIT_FILE);
  if (value === undefined || !existsSync(file)) return EMPTY_LOG;
  const [hash, mac] = value.split(':');
  const expected = auditMac(dataKey)(`head:${hash}`);
  if (mac !== expected || !/^[0-9a-f]{64}$/.test(hash)) throw tampered("the audit log's end");
  return { ...(locateAuditLine(file, hash) ?? { lines: -1, bytes: -1, hash }), place: homeIdentity(home) };
}
