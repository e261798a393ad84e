/**
 * End-to-end tests of the PostgreSQL store through the built bin/sy: SY_STORE names a
 * database of its own on the machine's PostgreSQL 15 (made and dropped by each test), the
 * leases' target is the throwaway SCRAM cluster. `sy init` run again and against a newer
 * schema; `sy store info`; a row edited in the store database; the store unreachable or lost
 * at create; TLS to the store (verify-full against the SCRAM cluster's certificate);
 * `sy store copy` SQLite → PostgreSQL → SQLite; forty commands at once.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { ROOT, type SyResult, freshKey, runSy } from '../helpers/cli.js';
import { createPgDatabase, dropPgDatabase, dropPgRoles, localPgQuery, pgManagedRoles, pgRoleExists, psql, scramCluster, tag } from '../helpers/db.js';
import { type StoreDatabase, createStoreDatabase } from '../helpers/pg-store.js';
import { startProxy } from '../helpers/proxy.js';

const T = tag();
/** The leases' target: a database on the SCRAM cluster; every role this file creates starts with PREFIX. */
const TARGET_DB = `sy_store_target_${T}`;
const PREFIX = `s${T}_`;
const admin = scramCluster();
const dirs: string[] = [];

/** A client of the store: its own temp SY_HOME (which a PostgreSQL store must leave alone) and key. */
interface Client {
  env: Record<string, string>;
  home: string;
  run(args: string[], extra?: Record<string, string | undefined> & { input?: string }): Promise<SyResult>;
  ok<R = any>(args: string[], extra?: Record<string, string | undefined>): Promise<R>;
}

function client(store: string, key = freshKey(), extra: Record<string, string> = {}): Client {
  const dir = mkdtempSync(join(tmpdir(), 'sy-pgstore-'));
  dirs.push(dir);
  const env = { SY_STORE: store, SY_MASTER_KEY: key, SY_HOME: join(dir, 'home'), HOME: dir, SY_NO_SWEEP: '1', ...extra };
  const self: Client = {
    env,
    home: env.SY_HOME,
    run: (args, { input, ...more } = {}) => runSy(args, { ...env, ...more }, { input }),
    async ok(args, more = {}) {
      const result = await self.run(args, more);
      if (result.exitCode !== 0) throw new Error(`sy ${args.join(' ')} exited ${result.exitCode}: ${result.stderr}`);
      return JSON.parse(result.stdout);
    },
  };
  return self;
}

/** One plain sentence (and perhaps a hint) on stderr, nothing on stdout, this exit code. */
function expectSentence(result: SyResult, exitCode: number, message: RegExp): void {
  expect({ exitCode: result.exitCode, stdout: result.stdout }).toEqual({ exitCode, stdout: '' });
  expect(result.stderr).toMatch(/^sy: /);
  expect(result.stderr).toMatch(message);
  expect(result.stderr).not.toMatch(/^\s+at |unexpected error/im);
  expect(result.stderr.trimEnd().split('\n').length).toBeLessThanOrEqual(2);
}

const dynamicAttributes = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: 'db:pg:root' }, grantPermissions: { what: 'SELECT', where: '*.*' }, userPrefix: PREFIX, ttl: 600, ...extra });

/** The base secret (the SCRAM cluster's admin, password by stdin) and a dynamic secret db:pg:dyn. */
async function secretsFor(sy: Client): Promise<void> {
  await sy.ok(['secret', 'create', '--body', '-'], {
    input: JSON.stringify({ path: 'db:pg:root', attributes: { type: 'postgresql' }, data: { host: '127.0.0.1', port: admin.port, username: admin.user, password: admin.password, database: TARGET_DB } }),
  } as Record<string, string>);
  await sy.ok(['secret', 'create', 'db:pg:dyn', '--attributes', dynamicAttributes()]);
}

let database: StoreDatabase;

beforeAll(async () => {
  await createPgDatabase(TARGET_DB, ['CREATE TABLE public.items (id int)']);
});

beforeEach(async () => {
  database = await createStoreDatabase();
});

afterEach(async () => {
  await database.drop();
});

afterAll(async () => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  await dropPgRoles(await pgManagedRoles(PREFIX).catch(() => []), [TARGET_DB]);
  await dropPgDatabase(TARGET_DB).catch(() => undefined);
});

describe('sy init against a PostgreSQL store', () => {
  test('creates the schema, then says the store is there; SY_HOME is never touched', async () => {
    const sy = client(database.url);
    const first = await sy.ok(['init']);
    expect(first).toEqual({ store: `postgresql://postgres@127.0.0.1/${database.name}`, kind: 'postgresql', store_id: expect.any(String), key_source: 'SY_MASTER_KEY', schema_version: 3, created: true });
    const again = await sy.run(['init']);
    expect(again.exitCode).toBe(0);
    expect(JSON.parse(again.stdout)).toEqual({ ...first, created: false });
    expect(again.stderr).toMatch(/already/);
    expect(existsSync(sy.home)).toBe(false);
    // Another key: refused, and the store is as it was.
    const slot = await database.query("SELECT value FROM sy.meta WHERE key = 'keyslot'");
    expectSentence(await sy.run(['init'], { SY_MASTER_KEY: freshKey() }), 4, /does not open the store/);
    expect(await database.query("SELECT value FROM sy.meta WHERE key = 'keyslot'")).toEqual(slot);
  });

  test('sy key change re-wraps the shared store\'s key: the old key no longer opens it, the new one does', async () => {
    const sy = client(database.url);
    await sy.ok(['init']);
    await sy.ok(['secret', 'create', 'app:k', '--data', '{"v":1}']);
    const next = freshKey();
    expect(await sy.ok(['key', 'change', '--to', 'master-key'], { SY_NEW_MASTER_KEY: next })).toEqual({
      store: `postgresql://postgres@127.0.0.1/${database.name}`, key_source: 'SY_NEW_MASTER_KEY', previous_key_source: 'SY_MASTER_KEY',
    });
    expectSentence(await sy.run(['secret', 'read', 'app:k']), 4, /does not open the store/);
    expect((await sy.ok(['secret', 'read', 'app:k'], { SY_MASTER_KEY: next })).data).toEqual({ v: 1 });
    expect(existsSync(sy.home)).toBe(false);
  });

  test('a schema written by a newer sy: init and every command refuse it with exit 4, nothing is touched', async () => {
    const sy = client(database.url);
    await sy.ok(['init']);
    await database.query("INSERT INTO sy.schema_migrations (version, sy_version) VALUES (99, '99.0.0')");
    expectSentence(await sy.run(['init']), 4, /newer version of sy/);
    expectSentence(await sy.run(['secret', 'create', 'app:x', '--data', '{"a":1}']), 4, /newer version of sy/);
    expect(await database.query('SELECT count(*)::int AS n FROM sy.secrets')).toEqual([{ n: 0 }]);
  });

  test('SY_STORE that is no PostgreSQL URL, or names an unknown parameter: exit 2, one sentence, no password repeated', async () => {
    expectSentence(await client('mysql://root@localhost/sy').run(['secret', 'search']), 2, /SY_STORE/);
    const result = await client(`${database.urlFor('postgres', 'Pa55-in-url')}?sslmod=require`).run(['secret', 'search']);
    expectSentence(result, 2, /sslmod/);
    expect(result.stderr).not.toContain('Pa55-in-url');
  });
});

describe('the least-privilege roles of examples/kubernetes/store-role.sql', () => {
  test('sy init as the owner role; every other command, init again included, as the app role that may only use rows', async () => {
    const owner = `sy_owner_${T}`;
    const app = `sy_app_${T}`;
    const file = join(mkdtempSync(join(tmpdir(), 'sy-pgstore-roles-')), 'store-role.sql');
    dirs.push(join(file, '..'));
    writeFileSync(file, readFileSync(join(ROOT, 'examples/kubernetes/store-role.sql'), 'utf8').replace(/\bsy_owner\b/g, owner).replace(/\bsy_app\b/g, app));
    try {
      const applied = await psql(['-h', '127.0.0.1', '-U', 'postgres', '-d', database.name, '-f', file]);
      expect({ exitCode: applied.exitCode, stderr: applied.stderr.replace(/^.*NOTICE.*\n?/gm, '') }).toEqual({ exitCode: 0, stderr: '' });
      const key = freshKey();
      const asOwner = client(database.urlFor(owner, undefined, '?sslmode=disable'), key);
      const asApp = client(database.urlFor(app, undefined, '?sslmode=disable'), key);
      expect(await asOwner.ok(['init'])).toMatchObject({ created: true });
      expect(await asApp.ok(['init'])).toMatchObject({ created: false });
      await secretsFor(asApp);
      const lease = await asApp.ok(['dynamic', 'lease', 'create', '--path', 'db:pg:dyn']);
      await asApp.ok(['dynamic', 'lease', 'revoke', lease.lease_id]);
      expect(await pgRoleExists(lease.username)).toBe(false);
      expect(await asApp.ok(['store', 'info'])).toMatchObject({ secrets: 2, leases: { revoked: 1 } });
      expect((await asApp.ok(['audit', 'verify'])).ok).toBe(true);
      // The app role cannot change the schema: sy's tables belong to the owner.
      expect(await database.query("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'sy'")).toEqual([{ tableowner: owner }]);
    } finally {
      await database.drop();
      await localPgQuery(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(app)}`);
      await localPgQuery(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(owner)}`);
    }
  });
});

describe("an init container's conditions", () => {
  test('with only PATH, SY_STORE and SY_MASTER_KEY (no HOME, no SY_HOME, no terminal) a lease is issued; another machine lists it; a daemon revokes it once due', async () => {
    const key = freshKey();
    const laptop = client(database.url, key);
    await laptop.ok(['init']);
    await secretsFor(laptop);
    await laptop.ok(['secret', 'update', 'db:pg:dyn', '--attributes', '{"ttl": 2}']);
    const pod = await runSy(['dynamic', 'lease', 'create', '--path', 'db:pg:dyn'], { SY_STORE: database.url, SY_MASTER_KEY: key });
    // No daemon of the pool runs yet, and the shared store knows it: the pod is told, on stderr.
    expect({ exitCode: pod.exitCode, stderr: pod.stderr }).toEqual({
      exitCode: 0,
      stderr: 'warning: no live daemon serves pool default, so this lease will not be revoked on time; start `sy daemon --pool default` (see `sy pool list`).',
    });
    const lease = JSON.parse(pod.stdout);
    expect((await laptop.ok(['dynamic', 'lease', 'list'])).data.map((l: { lease_id: string }) => l.lease_id)).toEqual([lease.lease_id]);
    expect((await laptop.ok(['audit', 'list'])).data.filter((e: { action: string }) => e.action === 'lease.create')).toHaveLength(1);
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const daemon = client(database.url, key);
    const pass = await daemon.run(['daemon', '--once']);
    expect(pass.exitCode).toBe(0);
    expect(pass.stdout).toContain(lease.lease_id);
    expect(await pgRoleExists(lease.username)).toBe(false);
    expect((await laptop.ok(['dynamic', 'lease', 'lookup', lease.lease_id])).state).toBe('revoked');
  });
});

describe('sy store info', () => {
  test('kind, location without the password, schema version and counts', async () => {
    const sy = client(database.urlFor('postgres', 'never-shown', '?sslmode=disable'));
    await sy.ok(['init']);
    await secretsFor(sy);
    await sy.ok(['secret', 'update', 'db:pg:dyn', '--attributes', '{"ttl": 300}']);
    const lease = await sy.ok(['dynamic', 'lease', 'create', '--path', 'db:pg:dyn']);
    const info = await sy.run(['store', 'info']);
    expect(info.exitCode).toBe(0);
    expect(JSON.parse(info.stdout)).toEqual({
      kind: 'postgresql', location: `postgresql://postgres@127.0.0.1/${database.name}`, schema_version: 3,
      secrets: 2, secret_versions: 3, leases: { active: 1 }, audit_lines: 4, clients: 0,
    });
    expect(info.stdout + info.stderr).not.toContain('never-shown');
    await sy.ok(['dynamic', 'lease', 'revoke', lease.lease_id]);
    expect(await pgRoleExists(lease.username)).toBe(false);
  });
});

describe('a row edited in the store database', () => {
  test("a lease's user name changed: revoke and the sweep are refused with exit 4, and no user is dropped", async () => {
    const sy = client(database.url);
    await sy.ok(['init']);
    await secretsFor(sy);
    const lease = await sy.ok(['dynamic', 'lease', 'create', '--path', 'db:pg:dyn']);
    const victim = await sy.ok(['dynamic', 'lease', 'create', '--path', 'db:pg:dyn']);
    const [original] = await database.query('SELECT expires_at FROM sy.leases WHERE id = $1', [lease.lease_id]);
    await database.query('UPDATE sy.leases SET username = $1, expires_at = 0 WHERE id = $2', [victim.username, lease.lease_id]);
    const refused = await sy.run(['dynamic', 'lease', 'revoke', lease.lease_id]);
    expectSentence(refused, 4, new RegExp(`lease ${lease.lease_id} was changed`));
    expect(refused.stderr).toMatch(/restore the store database from a backup/);
    expectSentence(await sy.run(['dynamic', 'sweep']), 4, /was changed by someone without the key/);
    expectSentence(await sy.run(['dynamic', 'lease', 'list'], { SY_NO_SWEEP: '0' }), 4, /was changed by someone without the key/);
    expect(await pgRoleExists(lease.username)).toBe(true);
    expect(await pgRoleExists(victim.username)).toBe(true);
    // Put back, everything works again.
    await database.query('UPDATE sy.leases SET username = $1, expires_at = $2 WHERE id = $3', [lease.username, original.expires_at, lease.lease_id]);
    await sy.ok(['dynamic', 'lease', 'revoke', lease.lease_id]);
    await sy.ok(['dynamic', 'lease', 'revoke', victim.lease_id]);
    expect(await pgRoleExists(lease.username)).toBe(false);
    expect(await pgRoleExists(victim.username)).toBe(false);
  });
});

describe('the store unreachable at create', () => {
  test('no answer: exit 1 within the connect timeout, one sentence naming host:port, no user on the target', async () => {
    const proxy = await startProxy(5432);
    try {
      const sy = client(`postgresql://postgres@127.0.0.1:${proxy.port}/${database.name}?sslmode=disable&connect_timeout=2`);
      await sy.ok(['init']);
      await secretsFor(sy);
      const before = await pgManagedRoles(PREFIX);
      await proxy.silent();
      const started = Date.now();
      const result = await sy.run(['dynamic', 'lease', 'create', '--path', 'db:pg:dyn']);
      expect(Date.now() - started).toBeLessThan(6000);
      expectSentence(result, 1, new RegExp(`store at 127\\.0\\.0\\.1:${proxy.port}.*no answer within 2 s`));
      await proxy.down();
      expectSentence(await sy.run(['dynamic', 'lease', 'create', '--path', 'db:pg:dyn']), 1, /connection refused/);
      expect(await pgManagedRoles(PREFIX)).toEqual(before);
      expect(await database.query('SELECT count(*)::int AS n FROM sy.leases')).toEqual([{ n: 0 }]);
    } finally {
      await proxy.close();
    }
  });

  test('the connection lost as the intent is written: exit 1, no intent, no user on the target', async () => {
    const sy = client(database.url);
    await sy.ok(['init']);
    await secretsFor(sy);
    const before = await pgManagedRoles(PREFIX);
    // The store's server ends the session in the middle of recording the intent.
    await database.query(`CREATE FUNCTION public.lose_session() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5); RETURN NEW; END $$`);
    await database.query('CREATE TRIGGER lose_session BEFORE INSERT ON sy.leases FOR EACH ROW EXECUTE FUNCTION public.lose_session()');
    expectSentence(await sy.run(['dynamic', 'lease', 'create', '--path', 'db:pg:dyn']), 1, /connection to the store/);
    expect(await pgManagedRoles(PREFIX)).toEqual(before);
    expect(await database.query('SELECT count(*)::int AS n FROM sy.leases')).toEqual([{ n: 0 }]);
  });
});

describe('TLS to the store', () => {
  const tlsDb = `sy_store_tls_${T}`;
  let otherCa: string;
  beforeAll(async () => {
    await createPgDatabase(tlsDb, []);
    const dir = mkdtempSync(join(tmpdir(), 'sy-pgstore-ca-'));
    dirs.push(dir);
    otherCa = join(dir, 'other.crt');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost',
      '-keyout', join(dir, 'other.key'), '-out', otherCa], { stdio: 'ignore' });
  });
  afterAll(async () => {
    await dropPgDatabase(tlsDb).catch(() => undefined);
  });
  const url = (host: string, query: string) =>
    `postgresql://${admin.user}:${encodeURIComponent(admin.password)}@${host}:${admin.port}/${tlsDb}?${query}`;

  test('verify-full with the right CA and host name works, over TLS; the wrong CA or host name is refused with exit 4', async () => {
    const cert = process.env.SY_TEST_PG_CERT_FILE!;
    const key = freshKey();
    const good = client(url('localhost', `sslmode=verify-full&sslrootcert=${encodeURIComponent(cert)}`), key);
    await good.ok(['init']);
    await good.ok(['secret', 'create', 'app:tls', '--data', '{"v":1}']);
    expect((await good.ok(['secret', 'read', 'app:tls'])).data).toEqual({ v: 1 });
    const wrongCa = await client(url('localhost', `sslmode=verify-full&sslrootcert=${encodeURIComponent(otherCa)}`), key).run(['secret', 'read', 'app:tls']);
    expectSentence(wrongCa, 4, new RegExp(`store at localhost:${admin.port} could not be trusted: its certificate`));
    const wrongHost = await client(url('127.0.0.1', `sslmode=verify-full&sslrootcert=${encodeURIComponent(cert)}`), key).run(['secret', 'read', 'app:tls']);
    expectSentence(wrongHost, 4, /not for the host name in SY_STORE/);
    // verify-ca checks the chain only; require alone checks nothing (libpq's meanings).
    expect((await client(url('127.0.0.1', `sslmode=verify-ca&sslrootcert=${encodeURIComponent(cert)}`), key).ok(['secret', 'read', 'app:tls'])).data).toEqual({ v: 1 });
    expectSentence(await client(url('127.0.0.1', `sslmode=verify-ca&sslrootcert=${encodeURIComponent(otherCa)}`), key).run(['secret', 'read', 'app:tls']), 4, /could not be trusted/);
    expect((await client(url('127.0.0.1', 'sslmode=require'), key).ok(['secret', 'read', 'app:tls'])).data).toEqual({ v: 1 });
    // A login the server refuses is exit 4 too, without the password; none given is said as such.
    const wrongPassword = await client(url('localhost', `sslmode=verify-full&sslrootcert=${encodeURIComponent(cert)}`).replace(encodeURIComponent(admin.password), 'not-the-password'), key).run(['secret', 'read', 'app:tls']);
    expectSentence(wrongPassword, 4, /refused the password of "postgres"/);
    expect(wrongPassword.stderr).not.toContain('not-the-password');
    const noPassword = await client(`postgresql://${admin.user}@localhost:${admin.port}/${tlsDb}?sslmode=require`, key).run(['secret', 'read', 'app:tls']);
    expectSentence(noPassword, 4, /asks for a password, and SY_STORE has none/);
    // The local server has no TLS: require is refused there, prefer falls back to plain.
    expectSentence(await client(database.urlFor('postgres', undefined, '?sslmode=require')).run(['init']), 4, /does not accept TLS/);
    await client(database.urlFor('postgres', undefined, '?sslmode=prefer')).ok(['init']);
  });
});

describe('sy store copy', () => {
  test('SQLite → PostgreSQL → SQLite keeps every version, lease and audit line; audit verify passes on each', async () => {
    const key = freshKey();
    const local = client('', key);
    delete (local.env as Record<string, string>).SY_STORE;
    await local.ok(['init']);
    await secretsFor(local);
    await local.ok(['secret', 'create', 'app:versions', '--data', '{"v":1}']);
    await local.ok(['secret', 'update', 'app:versions', '--data', '{"v":2}']);
    await local.ok(['secret', 'update', 'app:versions', '--data', '{"v":3}', '--overwrite']);
    const kept = await local.ok(['dynamic', 'lease', 'create', '--path', 'db:pg:dyn']);
    const ended = await local.ok(['dynamic', 'lease', 'create', '--path', 'db:pg:dyn']);
    await local.ok(['dynamic', 'lease', 'revoke', ended.lease_id]);
    const snapshot = async (sy: Client) => ({
      info: (({ kind: _k, location: _l, schema_version: _s, ...counts }) => counts)(await sy.ok(['store', 'info'])),
      versions: await Promise.all([1, 2, 3].map(async (v) => (await sy.ok(['secret', 'read', 'app:versions', '--version', String(v)])).data)),
      leases: (await sy.ok(['dynamic', 'lease', 'list', '--all'])).data,
      audit: (await sy.ok(['audit', 'list'])).data,
      verify: (({ ok, lines }) => ({ ok, lines }))(await sy.ok(['audit', 'verify'])),
    });
    const original = await snapshot(local);
    expect(original.verify).toEqual({ ok: true, lines: original.audit.length });
    expect(original.leases.map((l: { state: string }) => l.state).sort()).toEqual(['active', 'revoked']);

    const toPg = await local.ok(['store', 'copy', '--to', database.url]);
    expect(toPg).toMatchObject({ from: local.home, to: `postgresql://postgres@127.0.0.1/${database.name}`, secrets: 3, secret_versions: 5, leases: { active: 1, revoked: 1 } });
    const shared = client(database.url, key);
    const inPg = await snapshot(shared);
    // The copy adds its own line to the source's log; the destination has the log as it was.
    expect({ ...inPg, info: { ...inPg.info, audit_lines: original.audit.length } }).toEqual({ ...original, info: { ...original.info, audit_lines: original.audit.length } });
    expect(inPg.audit).toEqual(original.audit);

    const back = join(dirs[dirs.length - 1], 'back');
    const toDir = await shared.ok(['store', 'copy', '--to', back]);
    expect(toDir).toMatchObject({ to: back, secrets: 3, secret_versions: 5 });
    const again = client('', key, { SY_HOME: back });
    delete (again.env as Record<string, string>).SY_STORE;
    expect(await snapshot(again)).toEqual(inPg);
    expect(readFileSync(join(back, 'audit.log'), 'utf8')).toBe(readFileSync(join(local.home, 'audit.log'), 'utf8').split('\n').slice(0, original.audit.length).map((l) => `${l}\n`).join(''));

    // The copies are stores like any other: a lease revoked in one is revoked on its server.
    await shared.ok(['dynamic', 'lease', 'revoke', kept.lease_id]);
    expect(await pgRoleExists(kept.username)).toBe(false);
    expect((await shared.ok(['audit', 'verify'])).ok).toBe(true);

    // A destination that holds anything is refused.
    expectSentence(await local.run(['store', 'copy', '--to', database.url]), 2, /not empty/);
    expectSentence(await local.run(['store', 'copy', '--to', back]), 2, /not empty/);
  });
});

describe('forty commands at once', () => {
  test('secret read and lease create in parallel stay within a role limited to 40 connections', async () => {
    const role = `sy_store_role_${T}`;
    await localPgQuery(`CREATE ROLE ${pg.escapeIdentifier(role)} LOGIN CONNECTION LIMIT 40`);
    const limited = await createStoreDatabase({ owner: role });
    try {
      const sy = client(limited.urlFor(role, undefined, '?sslmode=disable'));
      await sy.ok(['init']);
      await secretsFor(sy);
      await sy.ok(['secret', 'create', 'app:plain', '--data', '{"n":1}']);
      let peak = 0;
      let watching = true;
      const watch = (async () => {
        while (watching) {
          const [{ n }] = await localPgQuery<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1', [role]);
          peak = Math.max(peak, n);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      })();
      const results = await Promise.all(Array.from({ length: 40 }, (_, i) =>
        sy.run(i % 4 === 0 ? ['secret', 'read', 'app:plain'] : i % 4 === 1 ? ['secret', 'read', 'db:pg:dyn'] : ['dynamic', 'lease', 'create', '--path', 'db:pg:dyn'])));
      watching = false;
      await watch;
      expect(results.filter((r) => r.exitCode !== 0).map((r) => r.stderr)).toEqual([]);
      expect(peak).toBeGreaterThan(0);
      expect(peak).toBeLessThanOrEqual(40);
      const leases = (await sy.ok(['dynamic', 'lease', 'list'])).data;
      expect(leases).toHaveLength(30);
      expect((await sy.ok(['audit', 'verify'])).ok).toBe(true);
      await sy.ok(['dynamic', 'lease', 'revoke', '--prefix', 'db:pg', '--yes']);
      // Only this test's users: another test of the file may have left one when it failed.
      const mine = new Set(leases.map((l: { username: string }) => l.username));
      expect((await pgManagedRoles(PREFIX)).filter((name) => mine.has(name))).toEqual([]);
      expect(mine.size).toBe(30);
    } finally {
      await limited.drop();
      await localPgQuery(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(role)}`);
    }
  });
});
