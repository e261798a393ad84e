/**
 * A store as the previous version of sy (store schema 1) wrote it, built byte for byte from
 * that format rather than with today's code: the migration test must start from what an
 * upgrade really finds on disk. The format, as it was: a meta table with the key slot (the
 * random data key sealed with AES-256-GCM under the master key, associated data
 * `sy/data-key/v1/<store id>`), secrets and versions sealed under the data key, leases with
 * plain index columns and a sealed revocation payload, no record MACs; the audit log chained
 * with HMAC-SHA256 under a key derived from the data key, its newest hash in meta as
 * `hash:mac`.
 */
import { createCipheriv, createHmac, hkdfSync, randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';

const SCHEMA_V1 = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE secrets (
  id TEXT PRIMARY KEY, path TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, linked_path TEXT,
  current_version INTEGER NOT NULL, created TEXT NOT NULL, last_modified TEXT NOT NULL
);
CREATE INDEX secrets_linked_path ON secrets (linked_path) WHERE linked_path IS NOT NULL;
CREATE TABLE secret_versions (
  secret_id TEXT NOT NULL REFERENCES secrets (id) ON DELETE CASCADE, version INTEGER NOT NULL,
  created TEXT NOT NULL, sealed BLOB NOT NULL, PRIMARY KEY (secret_id, version)
) WITHOUT ROWID;
CREATE TABLE leases (
  id TEXT PRIMARY KEY, secret_id TEXT NOT NULL, base_id TEXT NOT NULL, path TEXT NOT NULL,
  pool TEXT NOT NULL, engine TEXT NOT NULL, target TEXT NOT NULL, username TEXT NOT NULL,
  state TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
  max_expires_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER,
  last_error TEXT, ended_at INTEGER, owner_pid INTEGER, owner_host TEXT, claimant TEXT,
  claimed_until INTEGER, sealed BLOB NOT NULL
);
CREATE INDEX leases_due ON leases (state, expires_at);
CREATE INDEX leases_retry ON leases (state, next_attempt_at);
CREATE INDEX leases_secret ON leases (secret_id, state);
CREATE INDEX leases_base ON leases (base_id, state);
CREATE INDEX leases_path ON leases (path);
`;

function seal(key: Buffer, plaintext: Buffer, aad: string): Buffer {
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([Buffer.from([1]), nonce, body, cipher.getAuthTag()]);
}

export interface OldSecret {
  path: string;
  kind: 'static' | 'base' | 'dynamic';
  linkedPath?: string;
  /** One entry per version, oldest first. */
  versions: { description?: string; attributes: Record<string, unknown>; data: Record<string, unknown> }[];
}

export interface OldLease {
  secretPath: string;
  basePath: string;
  username: string;
  state: string;
  expiresAt: number;
  connection: Record<string, unknown>;
  /** Leases of the oldest stores did not seal their user name. */
  sealUsername: boolean;
}

export interface OldStore {
  storeId: string;
  secretIds: Record<string, string>;
  leaseIds: string[];
  auditLines: number;
}

/** Writes a schema-1 store and audit log into `home` (created 0700). */
export function writeOldStore(home: string, masterKey: string, secrets: OldSecret[], leases: OldLease[]): OldStore {
  mkdirSync(home, { recursive: true, mode: 0o700 });
  const kek = Buffer.from(masterKey, 'base64');
  const dataKey = randomBytes(32);
  const storeId = randomUUID();
  const db = new Database(join(home, 'sy.db'));
  db.pragma('journal_mode = WAL');
  db.exec(SCHEMA_V1);
  const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const slot = { storeId, wrap: { type: 'key', keychain: false }, wrappedKey: seal(kek, dataKey, `sy/data-key/v1/${storeId}`).toString('base64') };
  const meta = db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)');
  meta.run('schema_version', '1');
  meta.run('keyslot', JSON.stringify(slot));

  const secretIds: Record<string, string> = {};
  for (const secret of secrets) {
    const id = randomUUID();
    secretIds[secret.path] = id;
    db.prepare('INSERT INTO secrets (id, path, kind, linked_path, current_version, created, last_modified) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(id, secret.path, secret.kind, secret.linkedPath ?? null, secret.versions.length, now, now);
    secret.versions.forEach((v, i) => {
      const payload = { description: v.description ?? '', attributes: v.attributes, data: v.data, path: secret.path, kind: secret.kind, linkedPath: secret.linkedPath, created: now };
      db.prepare('INSERT INTO secret_versions (secret_id, version, created, sealed) VALUES (?, ?, ?, ?)')
        .run(id, i + 1, now, seal(dataKey, Buffer.from(JSON.stringify(payload)), `sy/secret/v1/${id}/${i + 1}`));
    });
  }

  const leaseIds: string[] = [];
  for (const lease of leases) {
    const id = randomUUID();
    leaseIds.push(id);
    const revocation = { connection: lease.connection, ...(lease.sealUsername ? { username: lease.username } : {}) };
    db.prepare(
      `INSERT INTO leases (id, secret_id, base_id, path, pool, engine, target, username, state, created_at, expires_at, max_expires_at,
         attempts, owner_pid, owner_host, sealed) VALUES (?, ?, ?, ?, 'default', 'postgresql', ?, ?, ?, ?, ?, ?, 0, 1, 'old-host', ?)`,
    ).run(id, secretIds[lease.secretPath], secretIds[lease.basePath], lease.secretPath, `${lease.connection.host}:${lease.connection.port}/postgres`,
      lease.username, lease.state, Date.now() - 60_000, lease.expiresAt, lease.expiresAt, seal(dataKey, Buffer.from(JSON.stringify(revocation)), `sy/lease/v1/${id}`));
  }

  // The audit log: one line per secret and lease, chained, with the head in meta.
  const auditKey = Buffer.from(hkdfSync('sha256', dataKey, Buffer.alloc(0), 'sy/audit/v1', 32));
  const mac = (text: string): string => createHmac('sha256', auditKey).update(text).digest('hex');
  let prev = '0'.repeat(64);
  let text = '';
  const events = [
    ...secrets.map((s) => ({ action: 'secret.create', path: s.path, outcome: 'success' })),
    ...leases.map((l, i) => ({ action: 'lease.create', path: l.secretPath, lease_id: leaseIds[i], db_user: l.username, outcome: 'success' })),
  ];
  for (const event of events) {
    const body = { time: new Date().toISOString(), actor: 'old-sy@test', ...event, prev };
    const hash = mac(JSON.stringify(body));
    text += `${JSON.stringify({ ...body, hash })}\n`;
    prev = hash;
  }
  writeFileSync(join(home, 'audit.log'), text, { mode: 0o600 });
  meta.run('audit_head', `${prev}:${mac(`head:${prev}`)}`);
  db.close();
  return { storeId, secretIds, leaseIds, auditLines: events.length };
}
