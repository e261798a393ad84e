/**
 * The store contract against the PostgreSQL store, each test in its own database on the
 * machine's PostgreSQL 15, dropped afterwards; the tamper hooks edit rows with SQL as the
 * database's operator could. Then what only the PostgreSQL store does: its schema and
 * migrations, init run again or at once, and how it holds connections.
 */
import { randomBytes } from 'node:crypto';
import { initPostgresStore } from '../../src/store/postgres/init.js';
import { openPostgresStore } from '../../src/store/postgres/store.js';
import { parseStoreUrl } from '../../src/store/postgres/url.js';
import type { Store } from '../../src/store/store.js';
import { type StoreDatabase, createStoreDatabase } from '../helpers/pg-store.js';
import { type StoreHarness, describeStoreContract } from './store.contract.js';

type Options = { actor: string; warn: (text: string) => void };

async function openPostgres(options: Options) {
  const database = await createStoreDatabase();
  const url = parseStoreUrl(database.url);
  const env = { SY_MASTER_KEY: randomBytes(32).toString('base64') };
  const handles: Store[] = [];
  try {
    const { store } = await initPostgresStore(url, env, { source: 'master-key', ...options });
    handles.push(store);
    return {
      database,
      url,
      env,
      store,
      async another(more: Options) {
        const handle = await openPostgresStore(url, env, more);
        handles.push(handle);
        return handle;
      },
      tamper: {
        async editSecret(id: string, change: { path?: string; currentVersion?: number }) {
          if (change.path !== undefined) await database.query('UPDATE sy.secrets SET path = $1 WHERE id = $2', [change.path, id]);
          if (change.currentVersion !== undefined) await database.query('UPDATE sy.secrets SET current_version = $1 WHERE id = $2', [change.currentVersion, id]);
        },
        async editLease(id: string, change: { state?: string; path?: string }) {
          if (change.state !== undefined) await database.query('UPDATE sy.leases SET state = $1 WHERE id = $2', [change.state, id]);
          if (change.path !== undefined) await database.query('UPDATE sy.leases SET path = $1 WHERE id = $2', [change.path, id]);
        },
        async keepLeaseRow(id: string) {
          const [row] = await database.query<Record<string, unknown>>('SELECT * FROM sy.leases WHERE id = $1', [id]);
          return async () => {
            const columns = Object.keys(row);
            await database.query(
              `UPDATE sy.leases SET ${columns.map((c, i) => `${c} = $${i + 1}`).join(', ')} WHERE id = $${columns.length + 1}`,
              [...columns.map((c) => row[c]), id],
            );
          };
        },
        async setLeaseClient(id: string, client: string | null) {
          await database.query('UPDATE sy.leases SET client = $1 WHERE id = $2', [client, id]);
        },
        async editClient(name: string, change: { allow?: string; maxLeases?: number }) {
          if (change.allow !== undefined) await database.query('UPDATE sy.clients SET allow = $1 WHERE name = $2', [change.allow, name]);
          if (change.maxLeases !== undefined) await database.query('UPDATE sy.clients SET max_leases = $1 WHERE name = $2', [change.maxLeases, name]);
        },
        async deleteClientRow(name: string) {
          await database.query('DELETE FROM sy.clients WHERE name = $1', [name]);
        },
        async keepClientRow(name: string) {
          const [row] = await database.query<Record<string, unknown>>('SELECT * FROM sy.clients WHERE name = $1', [name]);
          return async () => {
            const columns = Object.keys(row);
            await database.query('DELETE FROM sy.clients WHERE name = $1', [name]);
            await database.query(`INSERT INTO sy.clients (${columns.join(', ')}) VALUES (${columns.map((_c, i) => `$${i + 1}`).join(', ')})`, columns.map((c) => row[c]));
          };
        },
        async cutAuditLog(count: number) {
          await database.query('DELETE FROM sy.audit_lines WHERE seq > (SELECT max(seq) FROM sy.audit_lines) - $1', [count]);
        },
        async replaceAuditLog(entries: object[]) {
          await database.query('DELETE FROM sy.audit_lines');
          const lines = entries.map((entry) => JSON.stringify(entry));
          await database.query('INSERT INTO sy.audit_lines (seq, line) SELECT n, line FROM unnest($1::text[]) WITH ORDINALITY AS t(line, n)', [lines]);
        },
      },
      async cleanup() {
        for (const handle of handles) await handle.close();
        await database.drop();
      },
    };
  } catch (error) {
    for (const handle of handles) await handle.close();
    await database.drop();
    throw error;
  }
}

const harness: StoreHarness = { open: openPostgres };

describeStoreContract('PostgreSQL', harness);

describe('the PostgreSQL store', () => {
  let opened: Awaited<ReturnType<typeof openPostgres>>;
  let database: StoreDatabase;
  const warnings: string[] = [];
  const options = { actor: 'pg-test', warn: (text: string) => warnings.push(text) };
  beforeEach(async () => {
    warnings.length = 0;
    opened = await openPostgres(options);
    database = opened.database;
  });
  afterEach(async () => {
    await opened.cleanup();
    expect(warnings).toEqual([]);
  });

  test('lives in its own schema; the location is the URL without its password; the log is a table', async () => {
    expect({ kind: opened.store.kind, location: opened.store.location }).toEqual({ kind: 'postgresql', location: `postgresql://postgres@127.0.0.1/${database.name}` });
    expect((await opened.store.audit.verify()).location).toBe(`postgresql://postgres@127.0.0.1/${database.name} (table sy.audit_lines)`);
    const tables = await database.query<{ table_name: string }>("SELECT table_name FROM information_schema.tables WHERE table_schema = 'sy' ORDER BY 1");
    expect(tables.map((t) => t.table_name)).toEqual(['audit_lines', 'clients', 'daemons', 'leases', 'meta', 'schema_migrations', 'secret_versions', 'secrets']);
    expect(await database.query("SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'public'")).toEqual([{ n: 0 }]);
  });

  test('the database holds no secret: payloads are sealed, plain columns are paths, states and times', async () => {
    await opened.store.secrets.create({ path: 'app:sealed', kind: 'static', description: 'd', attributes: {}, data: { password: 'hunter2-very-secret' } });
    const dump = JSON.stringify(await database.query('SELECT s.*, v.* FROM sy.secrets s JOIN sy.secret_versions v ON v.secret_id = s.id'));
    expect(dump).toContain('app:sealed');
    expect(dump).not.toContain('hunter2');
    const bytes = await database.query<{ sealed: Buffer }>('SELECT sealed FROM sy.secret_versions');
    expect(bytes[0].sealed.toString('latin1')).not.toContain('hunter2');
  });

  test('init again with the right key: succeeds, changes nothing, says the store was there', async () => {
    const again = await initPostgresStore(opened.url, opened.env, { source: 'master-key', ...options });
    try {
      expect({ created: again.created, storeId: again.storeId, migrated: again.migrated }).toEqual({
        created: false, storeId: (await database.query("SELECT value FROM sy.meta WHERE key = 'keyslot'")).map((r) => JSON.parse(r.value).storeId)[0], migrated: { from: 3, to: 3 },
      });
    } finally {
      await again.store.close();
    }
    expect(await database.query('SELECT version FROM sy.schema_migrations ORDER BY 1')).toEqual([{ version: 1 }, { version: 2 }, { version: 3 }]);
  });

  test('a schema-2 store (before clients): init adds them with an empty census; leases keep their MACs', async () => {
    const base = await opened.store.secrets.create({ path: 'db:b', kind: 'base', description: '', attributes: {}, data: {} });
    const dyn = await opened.store.secrets.create({ path: 'db:d', kind: 'dynamic', linkedPath: 'db:b', description: '', attributes: {}, data: {} });
    const lease = {
      id: '00000000-0000-4000-8000-00000000000b', secretId: dyn.id, baseId: base.id, path: 'db:d', pool: 'default', engine: 'postgresql', target: 'h:1/d',
      username: 'sy_old', createdAt: 1000, expiresAt: 2000, maxExpiresAt: 3000, ownerPid: 1, ownerHost: 'elsewhere.invalid', revocation: { connection: {}, username: 'sy_old' },
    };
    await opened.store.leases.recordIntent(lease);
    await database.query("DROP TABLE sy.clients; ALTER TABLE sy.leases DROP COLUMN client; DELETE FROM sy.meta WHERE key = 'client_census'; DELETE FROM sy.schema_migrations WHERE version = 3");
    await expect(openPostgresStore(opened.url, opened.env, options)).rejects.toMatchObject({ code: 'store_too_old', exitCode: 4 });
    const again = await initPostgresStore(opened.url, opened.env, { source: 'master-key', ...options });
    try {
      expect(again.migrated).toEqual({ from: 2, to: 3 });
      expect(await again.store.leases.liveUsernames()).toEqual(new Set(['sy_old']));
      expect(await again.store.clients.list()).toEqual([]);
      await again.store.clients.create({ name: 'new', publicKey: 'k', allow: ['*'], maxLeases: 1, createdAt: 1, updatedAt: 1 });
    } finally {
      await again.store.close();
    }
    // Set back to 2 by someone without the key: init finds the migration's tables there and refuses.
    await database.query('DELETE FROM sy.schema_migrations WHERE version = 3');
    await expect(initPostgresStore(opened.url, opened.env, { source: 'master-key', ...options })).rejects.toMatchObject({ code: 'store_tampered', exitCode: 4 });
  });

  test('init again with another key: refused with exit 4, nothing changed', async () => {
    const slot = await database.query("SELECT value FROM sy.meta WHERE key = 'keyslot'");
    await expect(initPostgresStore(opened.url, { SY_MASTER_KEY: randomBytes(32).toString('base64') }, { source: 'master-key', ...options }))
      .rejects.toMatchObject({ code: 'wrong_key', exitCode: 4 });
    expect(await database.query("SELECT value FROM sy.meta WHERE key = 'keyslot'")).toEqual(slot);
  });

  test('a schema written by a newer sy: init and open are refused with exit 4 and nothing is touched', async () => {
    await database.query("INSERT INTO sy.schema_migrations (version, sy_version) VALUES (99, '9.9.9')");
    await expect(initPostgresStore(opened.url, opened.env, { source: 'master-key', ...options })).rejects.toMatchObject({ code: 'store_too_new', exitCode: 4 });
    await expect(openPostgresStore(opened.url, opened.env, options)).rejects.toMatchObject({ code: 'store_too_new', exitCode: 4 });
    expect((await database.query('SELECT version FROM sy.schema_migrations ORDER BY 1')).map((r) => r.version)).toEqual([1, 2, 3, 99]);
  });

  test('two inits at once on an empty database: one creates the store, the other finds it; one schema', async () => {
    const fresh = await createStoreDatabase();
    try {
      const url = parseStoreUrl(fresh.url);
      const results = await Promise.all([1, 2, 3].map(() => initPostgresStore(url, opened.env, { source: 'master-key', ...options })));
      for (const result of results) await result.store.close();
      expect(results.map((r) => r.created).sort()).toEqual([false, false, true]);
      expect(new Set(results.map((r) => r.storeId)).size).toBe(1);
      expect(await fresh.query('SELECT version FROM sy.schema_migrations ORDER BY 1')).toEqual([{ version: 1 }, { version: 2 }, { version: 3 }]);
    } finally {
      await fresh.drop();
    }
  });

  test('opening a database without a store: exit 4, and nothing is created there', async () => {
    const empty = await createStoreDatabase();
    try {
      await expect(openPostgresStore(parseStoreUrl(empty.url), opened.env, options)).rejects.toMatchObject({ code: 'no_store', exitCode: 4 });
      expect(await empty.query("SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'sy'")).toEqual([{ n: 0 }]);
    } finally {
      await empty.drop();
    }
  });

  test('a live lease deleted, or rolled back to an older copy of its row, is found by the census (exit 4)', async () => {
    const base = await opened.store.secrets.create({ path: 'db:base', kind: 'base', description: '', attributes: {}, data: {} });
    const dyn = await opened.store.secrets.create({ path: 'db:dyn', kind: 'dynamic', linkedPath: 'db:base', description: '', attributes: {}, data: {} });
    const lease = (id: string, username: string) => ({
      id, secretId: dyn.id, baseId: base.id, path: 'db:dyn', pool: 'default', engine: 'postgresql', target: 'h:1/d', username,
      createdAt: 1000, expiresAt: 2000, maxExpiresAt: 3000, ownerPid: 1, ownerHost: 'elsewhere.invalid', revocation: { connection: {}, username },
    });
    await opened.store.leases.recordIntent(lease('00000000-0000-4000-8000-000000000001', 'sy_gone'));
    await opened.store.leases.recordIntent(lease('00000000-0000-4000-8000-000000000002', 'sy_back'));
    await opened.store.leases.transition('00000000-0000-4000-8000-000000000002', ['intent'], 'active');
    const [older] = await database.query("SELECT * FROM sy.leases WHERE id = '00000000-0000-4000-8000-000000000002'");
    await opened.store.leases.transition(older.id, ['active'], 'revoked', { endedAt: 2500 });
    const [newer] = await database.query('SELECT * FROM sy.leases WHERE id = $1', [older.id]);

    // Rolled back: the row is one sy wrote, its MAC holds, but the census no longer has it.
    await database.query('UPDATE sy.leases SET state = $2, ended_at = $3, mac = $4 WHERE id = $1', [older.id, older.state, older.ended_at, older.mac]);
    const fresh = await opened.another(options);
    await expect(fresh.leases.claimDue({ now: 10_000, limit: 10, staleIntentBefore: 0, claimMs: 60_000 }, 'c')).rejects.toMatchObject({ code: 'store_tampered', exitCode: 4 });
    await expect(opened.store.leases.liveUsernames()).rejects.toMatchObject({ code: 'store_tampered', message: expect.stringMatching(/its live leases/) });
    await database.query('UPDATE sy.leases SET state = $2, ended_at = $3, mac = $4 WHERE id = $1', [newer.id, newer.state, newer.ended_at, newer.mac]);
    expect(await (await opened.another(options)).leases.liveUsernames()).toEqual(new Set(['sy_gone']));

    // Deleted: gone from every query, but not from the census.
    await database.query("DELETE FROM sy.leases WHERE id = '00000000-0000-4000-8000-000000000001'");
    await expect(opened.store.leases.liveUsernames()).rejects.toMatchObject({ code: 'store_tampered', exitCode: 4 });
    await expect((await opened.another(options)).leases.countByState()).rejects.toMatchObject({ code: 'store_tampered', exitCode: 4 });
  });

  test('a secret rolled back to an older version, its newer version deleted: found by a scan of every secret', async () => {
    const secret = await opened.store.secrets.create({ path: 'app:rolled', kind: 'static', description: '', attributes: {}, data: { v: 1 } });
    const [older] = await database.query('SELECT * FROM sy.secrets WHERE id = $1', [secret.id]);
    await opened.store.secrets.addVersion(secret.id, 1, { description: '', attributes: {}, data: { v: 2 } });
    await database.query('DELETE FROM sy.secret_versions WHERE secret_id = $1 AND version = 2', [secret.id]);
    await database.query('UPDATE sy.secrets SET current_version = 1, last_modified = $2, mac = $3 WHERE id = $1', [secret.id, older.last_modified, older.mac]);
    await expect(opened.store.secrets.search({ limit: 10 })).rejects.toMatchObject({ code: 'store_tampered', message: expect.stringMatching(/its secrets/) });
  });

  test('an append whose session the server ends only warns, as a full disk does for a file log; the next one works', async () => {
    await opened.store.audit.append([{ action: 'before', outcome: 'success' }]);
    await database.query(`CREATE FUNCTION public.lose_session() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5); RETURN NEW; END $$`);
    await database.query('CREATE TRIGGER lose_session BEFORE INSERT ON sy.audit_lines FOR EACH ROW EXECUTE FUNCTION public.lose_session()');
    await opened.store.audit.append([{ action: 'lost', outcome: 'success' }]);
    expect(warnings.splice(0)).toEqual(['warning: could not write the audit log (the store database did not answer).']);
    await database.query('DROP TRIGGER lose_session ON sy.audit_lines');
    await opened.store.audit.append([{ action: 'after', outcome: 'success' }]);
    expect((await opened.store.audit.read({})).map((e) => e.action)).toEqual(['before', 'after']);
    expect(await opened.store.audit.verify()).toMatchObject({ ok: true, lines: 2 });
  });

  test('a handle holds at most one connection, and none once idle', async () => {
    const countMine = async () =>
      (await database.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'sy'", [database.name]))[0].n;
    const handle = await opened.another(options);
    const pair = await handle.secrets.create({ path: 'app:conn', kind: 'static', description: '', attributes: {}, data: {} });
    await Promise.all(Array.from({ length: 20 }, () => handle.secrets.get({ id: pair.id })));
    expect(await countMine()).toBeLessThanOrEqual(2); // this handle and the harness's first
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(await countMine()).toBe(0);
    expect(await handle.secrets.get({ id: pair.id })).toMatchObject({ path: 'app:conn' });
  });
});
