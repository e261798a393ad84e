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
    expect(tables.map((t) => t.table_name)).toEqual(['audit_lines', 'daemons', 'leases', 'meta', 'schema_migrations', 'secret_versions', 'secrets']);
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
        created: false, storeId: (await database.query("SELECT value FROM sy.meta WHERE key = 'keyslot'")).map((r) => JSON.parse(r.value).storeId)[0], migrated: { from: 2, to: 2 },
      });
    } finally {
      await again.store.close();
    }
    expect(await database.query('SELECT version FROM sy.schema_migrations ORDER BY 1')).toEqual([{ version: 1 }, { version: 2 }]);
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
    expect((await database.query('SELECT version FROM sy.schema_migrations ORDER BY 1')).map((r) => r.version)).toEqual([1, 2, 99]);
  });

  test('two inits at once on an empty database: one creates the store, the other finds it; one schema', async () => {
    const fresh = await createStoreDatabase();
    try {
      const url = parseStoreUrl(fresh.url);
      const results = await Promise.all([1, 2, 3].map(() => initPostgresStore(url, opened.env, { source: 'master-key', ...options })));
      for (const result of results) await result.store.close();
      expect(results.map((r) => r.created).sort()).toEqual([false, false, true]);
      expect(new Set(results.map((r) => r.storeId)).size).toBe(1);
      expect(await fresh.query('SELECT version FROM sy.schema_migrations ORDER BY 1')).toEqual([{ version: 1 }, { version: 2 }]);
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
