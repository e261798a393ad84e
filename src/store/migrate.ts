import { createHmac } from 'node:crypto';
import { join } from 'node:path';
import { tryOpen } from '../keys/crypto.js';
import { existsSync } from 'node:fs';
import { AUDIT_FILE, type AuditPosition, EMPTY_LOG, homeIdentity } from '../audit/log.js';
import { locateAuditLine } from '../audit/read.js';
import { Census, RecordMac, recordKey, shown, tampered } from './records.js';
import { AuthenticatedMeta, type Database, SCHEMA_VERSION, readMeta, runWrite } from './sqlite-db.js';
import { LIVE_LEASE_STATES } from '../model/lease.js';
import { LEASE_CENSUS, leaseMac } from './sqlite-leases.js';
import { SECRET_CENSUS, secretMac, versionMac } from './sqlite-secrets.js';
import { AUDIT_HEAD, auditKey, encodeAuditPosition } from './sqlite.js';

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
function legacyAuditHead(db: Database, dataKey: Buffer, home: string): AuditPosition {
  const value = readMeta(db, AUDIT_HEAD);
  const file = join(home, AUDIT_FILE);
  if (value === undefined || !existsSync(file)) return EMPTY_LOG;
  const [hash, mac] = value.split(':');
  const expected = createHmac('sha256', auditKey(dataKey)).update(`head:${hash}`).digest('hex');
  if (mac !== expected || !/^[0-9a-f]{64}$/.test(hash)) throw tampered("the audit log's end");
  return { ...(locateAuditLine(file, hash) ?? { lines: -1, bytes: -1, hash }), place: homeIdentity(home) };
}
