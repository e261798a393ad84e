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
import { type KeySlot, openSlot, wrapDataKey } from '../../src/store/key-slot.js';
import { initStore, openStore } from '../../src/store/open.js';
import { ROOTS_BEFORE_CLIENTS, RecordMac, RootRecords, recordKey } from '../../src/store/records.js';
import type { Store } from '../../src/store/store.js';
import { type StoreHarness, describeStoreContract } from './store.contract.js';

/**
 * A fresh store in a temp SY_HOME; the tamper hooks write sy.db and audit.log as an attacker
 * would. `groupCommit`: opened as `sy daemon` opens it (StoreOptions.groupCommit), the other
 * handles too.
 */
async function openSqlite(options: { actor: string; warn: (text: string) => void }, groupCommit = false) {
  const dir = mkdtempSync(join(tmpdir(), 'sy-contract-'));
  const home = join(dir, 'store');
  const env = { SY_MASTER_KEY: randomBytes(32).toString('base64') };
  const { store } = await initStore(home, env, { source: 'master-key', ...options, groupCommit });
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
      const handle = await openStore(home, env, { ...more, groupCommit });
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
      async keep(records: string[]) {
        const db = new Sqlite(join(home, 'sy.db'));
        const kept = records.map((record) => {
          const [kind, id] = record.includes(':') ? record.split(':', 2) : ['meta', record];
          if (kind === 'audit_log') return { record, value: readFileSync(log) };
          if (kind === 'meta') return { record, value: db.prepare('SELECT * FROM meta WHERE key = ?').get(id) };
          if (kind === 'lease') return { record, value: db.prepare('SELECT * FROM leases WHERE id = ?').get(id) };
          return { record, value: { row: db.prepare('SELECT * FROM secrets WHERE id = ?').get(id), versions: db.prepare('SELECT * FROM secret_versions WHERE secret_id = ?').all(id) } };
        });
        db.close();
        const put = (table: string, row: Record<string, unknown> | undefined) => {
          if (!row) return;
          const names = Object.keys(row);
          sql(`INSERT INTO ${table} (${names.join(', ')}) VALUES (${names.map(() => '?').join(', ')})`, ...names.map((n) => row[n]));
        };
        return async () => {
          for (const { record, value } of kept) {
            const [kind, id] = record.includes(':') ? record.split(':', 2) : ['meta', record];
            if (kind === 'audit_log') {
              writeFileSync(log, value as Buffer);
            } else if (kind === 'meta') {
              sql('DELETE FROM meta WHERE key = ?', id);
              put('meta', value as Record<string, unknown> | undefined);
            } else if (kind === 'lease') {
              sql('DELETE FROM leases WHERE id = ?', id);
              put('leases', value as Record<string, unknown> | undefined);
            } else {
              const { row, versions } = value as { row?: Record<string, unknown>; versions: Record<string, unknown>[] };
              sql('DELETE FROM secret_versions WHERE secret_id = ?', id);
              sql('DELETE FROM secrets WHERE id = ?', id);
              put('secrets', row);
              for (const version of versions) put('secret_versions', version);
            }
          }
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

/**
 * Makes a closed store in `home` what an older sy (schema 2 or 3) left: its key slot sealed
 * for records without generations, its censuses and audit head without a stamp, no
 * generation row (and no daemons table at schema 2).
 */
function asOlderSy(home: string, env: { SY_MASTER_KEY: string }, schema: 2 | 3): void {
  const db = new Sqlite(join(home, 'sy.db'));
  try {
    const slot = JSON.parse((db.prepare("SELECT value FROM meta WHERE key = 'keyslot'").get() as { value: string }).value) as KeySlot;
    const kek = Buffer.from(env.SY_MASTER_KEY, 'base64');
    const dataKey = openSlot(kek, slot)!;
    const roots = new RootRecords(new RecordMac(recordKey(dataKey), slot.storeId));
    for (const key of ROOTS_BEFORE_CLIENTS) {
      const value = roots.decode(key, (db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string }).value)!;
      db.prepare('UPDATE meta SET value = ? WHERE key = ?').run(roots.encode(key, value.replace(/^\d+:/, '')), key);
    }
    db.prepare("DELETE FROM meta WHERE key = 'generation'").run();
    db.exec(CLIENTS_DOWN);
    db.prepare("UPDATE meta SET value = ? WHERE key = 'keyslot'").run(JSON.stringify(wrapDataKey(kek, dataKey, slot.storeId, slot.wrap, 2)));
    db.prepare("UPDATE meta SET value = ? WHERE key = 'schema_version'").run(String(schema));
    if (schema === 2) db.exec('DROP TABLE daemons');
  } finally {
    db.close();
  }
}

/** What schema 5 added, taken away: the clients' table, the leases' client column, the census of clients. */
const CLIENTS_DOWN = "DROP TABLE clients; DROP INDEX leases_client; ALTER TABLE leases DROP COLUMN client; DELETE FROM meta WHERE key = 'client_census'";

/**
 * Makes a closed store in `home` what a schema-4 sy left: generations, no clients. The
 * generation is written again (with the key, as that sy would have) without the census of clients.
 */
function beforeClients(home: string, env: { SY_MASTER_KEY: string }): void {
  const db = new Sqlite(join(home, 'sy.db'));
  try {
    const slot = JSON.parse((db.prepare("SELECT value FROM meta WHERE key = 'keyslot'").get() as { value: string }).value) as KeySlot;
    const dataKey = openSlot(Buffer.from(env.SY_MASTER_KEY, 'base64'), slot)!;
    const roots = new RootRecords(new RecordMac(recordKey(dataKey), slot.storeId));
    const stored = new Map((db.prepare('SELECT key, value FROM meta').all() as { key: string; value: string }[]).map((r) => [r.key, r.value]));
    const checked = roots.check(stored);
    delete checked.stamps.client_census;
    const [, generation] = roots.next(checked, {}).at(-1)!;
    db.prepare("UPDATE meta SET value = ? WHERE key = 'generation'").run(generation);
    db.exec(CLIENTS_DOWN);
    db.exec("UPDATE meta SET value = '4' WHERE key = 'schema_version'");
  } finally {
    db.close();
  }
}

describeStoreContract('SQLite', harness);
describeStoreContract('SQLite, group commit (sy daemon)', { open: (options) => openSqlite(options, true) });

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
    asOlderSy(opened.home, opened.env, 2);
    const again = await opened.another({ actor: 'x', warn: (text) => warnings.push(text) });
    expect(await again.secrets.get({ id: secret.id })).toEqual(secret);
    const id = await again.pools.join({ pool: 'p', host: 'h', pid: 1, version: 'v' });
    expect((await again.pools.list()).map((m) => m.id)).toEqual([id]);
    expect((await again.info()).schemaVersion).toBe(5);
  });

  test('a schema-3 store (censuses without generations) gets them at open, every record kept; set back to schema 3 afterwards, it is refused', async () => {
    const secret = await opened.store.secrets.create({ path: 'app:kept', kind: 'static', description: '', attributes: {}, data: { v: 1 } });
    await opened.store.audit.append([{ action: 'one', outcome: 'success' }]);
    await opened.store.close();
    asOlderSy(opened.home, opened.env, 3);
    const again = await opened.another({ actor: 'x', warn: (text) => warnings.push(text) });
    expect(await again.secrets.get({ id: secret.id })).toEqual(secret);
    await again.audit.append([{ action: 'two', outcome: 'success' }]);
    expect(await again.audit.verify()).toMatchObject({ ok: true, lines: 2 });
    expect((await again.info()).schemaVersion).toBe(5);
    // Dressed up as schema 3 again, to have an older census stamped afresh: the key slot says otherwise.
    const db = new Sqlite(join(opened.home, 'sy.db'));
    db.exec("UPDATE meta SET value = '3' WHERE key = 'schema_version'");
    db.close();
    await expect(opened.another({ actor: 'y', warn: (text) => warnings.push(text) })).rejects.toMatchObject({ exitCode: 4, message: expect.stringMatching(/its schema version/) });
  });

  test('a schema-4 store (before clients) gets its clients at open: leases keep their MACs, the census starts empty; set back, refused', async () => {
    const base = await opened.store.secrets.create({ path: 'db:b', kind: 'base', description: '', attributes: {}, data: {} });
    const dyn = await opened.store.secrets.create({ path: 'db:d', kind: 'dynamic', linkedPath: 'db:b', description: '', attributes: {}, data: {} });
    const lease = {
      id: '00000000-0000-4000-8000-00000000000a', secretId: dyn.id, baseId: base.id, path: 'db:d', pool: 'default', engine: 'postgresql', target: 'h:1/d',
      username: 'sy_old', createdAt: 1000, expiresAt: 2000, maxExpiresAt: 3000, ownerPid: 1, ownerHost: 'elsewhere.invalid', revocation: { connection: {}, username: 'sy_old' },
    };
    await opened.store.leases.recordIntent(lease);
    await opened.store.close();
    beforeClients(opened.home, opened.env);
    const again = await opened.another({ actor: 'x', warn: (text) => warnings.push(text) });
    expect(await again.leases.get(lease.id)).toMatchObject({ username: 'sy_old', state: 'intent' });
    expect(await again.leases.liveUsernames()).toEqual(new Set(['sy_old']));
    expect(await again.clients.list()).toEqual([]);
    await again.clients.create({ name: 'new', publicKey: 'k', allow: ['*'], maxLeases: 1, createdAt: 1, updatedAt: 1 });
    expect((await again.info()).schemaVersion).toBe(5);
    // Opened again: the migration is not repeated, the census is kept.
    const third = await opened.another({ actor: 'y', warn: (text) => warnings.push(text) });
    expect((await third.clients.list()).map((c) => c.name)).toEqual(['new']);
    // Dressed up as schema 4 again, to have the clients counted afresh: the census of clients says otherwise.
    const db = new Sqlite(join(opened.home, 'sy.db'));
    db.exec("UPDATE meta SET value = '4' WHERE key = 'schema_version'");
    db.close();
    await expect(opened.another({ actor: 'z', warn: (text) => warnings.push(text) })).rejects.toMatchObject({ exitCode: 4, message: expect.stringMatching(/its schema version/) });
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
