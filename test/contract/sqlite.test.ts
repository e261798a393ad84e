/**
 * The store contract against the SQLite store, each test in a fresh SY_HOME under the
 * system's temp directory; then what only the SQLite store does (its file log in SY_HOME).
 * Needs no server.
 */
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Sqlite from 'better-sqlite3';
import { AUDIT_FILE } from '../../src/audit/file-log.js';
import { initStore, openStore } from '../../src/store/open.js';
import type { Store } from '../../src/store/store.js';
import { type StoreHarness, describeStoreContract } from './store.contract.js';

/** A fresh store in a temp SY_HOME; the tamper hooks write sy.db and audit.log as an attacker would. */
async function openSqlite(options: { actor: string; warn: (text: string) => void }) {
  const dir = mkdtempSync(join(tmpdir(), 'sy-contract-'));
  const home = join(dir, 'store');
  const env = { SY_MASTER_KEY: randomBytes(32).toString('base64') };
  const { store } = await initStore(home, env, { source: 'master-key', ...options });
  const handles: Store[] = [store];
  const log = join(home, AUDIT_FILE);
  const sql = (statement: string, ...params: unknown[]): void => {
    const db = new Sqlite(join(home, 'sy.db'));
    try {
      db.pragma('busy_timeout = 15000');
      db.prepare(statement).run(...params);
    } finally {
      db.close();
    }
  };
  const lines = (): string[] => readFileSync(log, 'utf8').split('\n').filter((line) => line !== '');
  return {
    home,
    env,
    store,
    async another(more: { actor: string; warn: (text: string) => void }) {
      const handle = await openStore(home, env, more);
      handles.push(handle);
      return handle;
    },
    tamper: {
      async editSecret(id: string, change: { path?: string; currentVersion?: number }) {
        if (change.path !== undefined) sql('UPDATE secrets SET path = ? WHERE id = ?', change.path, id);
        if (change.currentVersion !== undefined) sql('UPDATE secrets SET current_version = ? WHERE id = ?', change.currentVersion, id);
      },
      async editLease(id: string, change: { state?: string; path?: string }) {
        if (change.state !== undefined) sql('UPDATE leases SET state = ? WHERE id = ?', change.state, id);
        if (change.path !== undefined) sql('UPDATE leases SET path = ? WHERE id = ?', change.path, id);
      },
      async keepLeaseRow(id: string) {
        const db = new Sqlite(join(home, 'sy.db'));
        const row = db.prepare('SELECT * FROM leases WHERE id = ?').get(id) as Record<string, unknown>;
        db.close();
        return async () => {
          const columns = Object.keys(row);
          sql(`UPDATE leases SET ${columns.map((c) => `${c} = ?`).join(', ')} WHERE id = ?`, ...columns.map((c) => row[c]), id);
        };
      },
      async setLeaseClient(id: string, client: string | null) {
        sql('UPDATE leases SET client = ? WHERE id = ?', client, id);
      },
      async editClient(name: string, change: { allow?: string; maxLeases?: number }) {
        if (change.allow !== undefined) sql('UPDATE clients SET allow = ? WHERE name = ?', change.allow, name);
        if (change.maxLeases !== undefined) sql('UPDATE clients SET max_leases = ? WHERE name = ?', change.maxLeases, name);
      },
      async deleteClientRow(name: string) {
        sql('DELETE FROM clients WHERE name = ?', name);
      },
      async keepClientRow(name: string) {
        const db = new Sqlite(join(home, 'sy.db'));
        const row = db.prepare('SELECT * FROM clients WHERE name = ?').get(name) as Record<string, unknown>;
        db.close();
        return async () => {
          const columns = Object.keys(row);
          sql(`INSERT OR REPLACE INTO clients (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`, ...columns.map((c) => row[c]));
        };
      },
      async cutAuditLog(count: number) {
        writeFileSync(log, lines().slice(0, -count).map((line) => `${line}\n`).join(''));
      },
      async replaceAuditLog(entries: object[]) {
        writeFileSync(log, entries.map((entry) => `${JSON.stringify(entry)}\n`).join(''));
      },
    },
    async cleanup() {
      for (const handle of handles) await handle.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const harness: StoreHarness = { open: openSqlite };

/** A schema-4 store taken back to what schema 3 had: no clients, no lease client column. */
const SCHEMA_3_DOWN = `DROP TABLE clients; DELETE FROM meta WHERE key = 'client_census'; DROP INDEX leases_client;
  ALTER TABLE leases DROP COLUMN client; UPDATE meta SET value = '3' WHERE key = 'schema_version' AND value = '4'`;

describeStoreContract('SQLite', harness);

describe('the SQLite store', () => {
  let opened: Awaited<ReturnType<typeof openSqlite>>;
  const warnings: string[] = [];
  beforeEach(async () => {
    warnings.length = 0;
    opened = await openSqlite({ actor: 'sqlite-test', warn: (text) => warnings.push(text) });
  });
  afterEach(() => opened.cleanup());

  test('lives in SY_HOME, its audit log in audit.log next to sy.db', async () => {
    expect({ kind: opened.store.kind, location: opened.store.location }).toEqual({ kind: 'sqlite', location: opened.home });
    expect((await opened.store.audit.verify()).location).toBe(join(opened.home, AUDIT_FILE));
    await opened.store.audit.append([{ action: 'one', outcome: 'success' }]);
    expect(JSON.parse(readFileSync(join(opened.home, AUDIT_FILE), 'utf8'))).toMatchObject({ action: 'one', actor: 'sqlite-test' });
    expect(await opened.store.audit.head()).toMatchObject({ lines: 1, bytes: readFileSync(join(opened.home, AUDIT_FILE)).length });
  });

  test('a log that cannot be written only warns, through the callback, with the code', async () => {
    mkdirSync(join(opened.home, AUDIT_FILE));
    await opened.store.audit.append([{ action: 'secret.create', path: 'app:x', outcome: 'success' }]);
    expect(warnings).toEqual(['warning: could not write the audit log (EISDIR).']);
  });

  test('a torn last line (a crash mid-write) is cut off by the next append', async () => {
    await opened.store.audit.append([{ action: 'one', outcome: 'success' }]);
    writeFileSync(join(opened.home, AUDIT_FILE), '{"time":"half a li', { flag: 'a' });
    await opened.store.audit.check();
    await opened.store.audit.append([{ action: 'two', outcome: 'success' }]);
    expect(await opened.store.audit.verify()).toMatchObject({ ok: true, lines: 2 });
  });

  test('a schema-2 store (before the pool registry) gets its daemons table at open, every record kept', async () => {
    const secret = await opened.store.secrets.create({ path: 'app:kept', kind: 'static', description: '', attributes: {}, data: { v: 1 } });
    await opened.store.close();
    const db = new Sqlite(join(opened.home, 'sy.db'));
    db.exec("DROP TABLE daemons; UPDATE meta SET value = '2' WHERE key = 'schema_version'");
    db.exec(SCHEMA_3_DOWN);
    db.close();
    const again = await opened.another({ actor: 'x', warn: (text) => warnings.push(text) });
    expect(await again.secrets.get({ id: secret.id })).toEqual(secret);
    const id = await again.pools.join({ pool: 'p', host: 'h', pid: 1, version: 'v' });
    expect((await again.pools.list()).map((m) => m.id)).toEqual([id]);
    expect((await again.info()).schemaVersion).toBe(4);
  });

  test('a schema-3 store (before clients) gets its clients at open: leases keep their MACs, the census starts empty', async () => {
    const base = await opened.store.secrets.create({ path: 'db:b', kind: 'base', description: '', attributes: {}, data: {} });
    const dyn = await opened.store.secrets.create({ path: 'db:d', kind: 'dynamic', linkedPath: 'db:b', description: '', attributes: {}, data: {} });
    const lease = {
      id: '00000000-0000-4000-8000-00000000000a', secretId: dyn.id, baseId: base.id, path: 'db:d', pool: 'default', engine: 'postgresql', target: 'h:1/d',
      username: 'sy_old', createdAt: 1000, expiresAt: 2000, maxExpiresAt: 3000, ownerPid: 1, ownerHost: 'elsewhere.invalid', revocation: { connection: {}, username: 'sy_old' },
    };
    await opened.store.leases.recordIntent(lease);
    await opened.store.close();
    const db = new Sqlite(join(opened.home, 'sy.db'));
    db.exec(SCHEMA_3_DOWN);
    db.close();
    const again = await opened.another({ actor: 'x', warn: (text) => warnings.push(text) });
    expect(await again.leases.get(lease.id)).toMatchObject({ username: 'sy_old', state: 'intent' });
    expect(await again.leases.liveUsernames()).toEqual(new Set(['sy_old']));
    expect(await again.clients.list()).toEqual([]);
    await again.clients.create({ name: 'new', publicKey: 'k', allow: ['*'], maxLeases: 1, createdAt: 1, updatedAt: 1 });
    expect((await again.info()).schemaVersion).toBe(4);
    // Opened again: the migration is not repeated, the census is kept.
    const third = await opened.another({ actor: 'y', warn: (text) => warnings.push(text) });
    expect((await third.clients.list()).map((c) => c.name)).toEqual(['new']);
  });

  test('a store copied into another directory without its log starts a new one there, saying which came before', async () => {
    await opened.store.audit.append([{ action: 'one', outcome: 'success' }, { action: 'two', outcome: 'success' }]);
    const previous = await opened.store.audit.head();
    await opened.store.close();
    const elsewhere = mkdtempSync(join(tmpdir(), 'sy-contract-copy-'));
    try {
      copyFileSync(join(opened.home, 'sy.db'), join(elsewhere, 'sy.db'));
      const copy = await openStore(elsewhere, opened.env, { actor: 'the-copy', warn: (text) => warnings.push(text) });
      try {
        await copy.audit.check();
        expect(await copy.audit.head()).toMatchObject({ lines: 0 });
        await copy.audit.append([{ action: 'three', outcome: 'success' }]);
        expect(await copy.audit.read({})).toEqual([
          expect.objectContaining({ action: 'audit.start', actor: 'the-copy', detail: { previous_lines: 2, previous_hash: previous.hash } }),
          expect.objectContaining({ action: 'three' }),
        ]);
        expect(await copy.audit.verify()).toMatchObject({ ok: true, lines: 2 });
      } finally {
        await copy.close();
      }
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
    }
    // In the directory it was written in, a log that is gone was deleted.
    rmSync(join(opened.home, AUDIT_FILE));
    const again = await opened.another({ actor: 'x', warn: () => undefined });
    await expect(again.audit.check()).rejects.toMatchObject({ code: 'audit_log_tampered', exitCode: 4 });
  });
});
