/**
 * End-to-end tests of the encrypted store through the built bin/sy: keys (master key,
 * key file, passphrase, key change), integrity (a flipped byte, a damaged header, swapped
 * records), permissions, concurrent writers and writers killed mid-transaction.
 */
import Database from 'better-sqlite3';
import { execa } from 'execa';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, SY_BIN, freshKey, makeHome, type SyHome, type SyResult } from '../helpers/cli.js';

const PASSWORD = 'Sup3r-S3cret-Value!';
const PASSPHRASE = 'correct horse battery staple';

const dbFile = (sy: SyHome): string => join(sy.env.SY_HOME, 'sy.db');

/** Every file of SY_HOME, byte for byte. */
function homeBytes(sy: SyHome): Record<string, string> {
  const files: Record<string, string> = {};
  for (const name of readdirSync(sy.env.SY_HOME).sort()) files[name] = readFileSync(join(sy.env.SY_HOME, name)).toString('base64');
  return files;
}

/** Folds the WAL into sy.db and closes, so the file alone holds every committed page. */
function checkpoint(sy: SyHome): void {
  const db = new Database(dbFile(sy));
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
}

function sealedOf(sy: SyHome, path: string, version = 1): Buffer {
  const db = new Database(dbFile(sy), { readonly: true });
  try {
    const row = db
      .prepare('SELECT v.sealed FROM secret_versions v JOIN secrets s ON s.id = v.secret_id WHERE s.path = ? AND v.version = ?')
      .get(path, version) as { sealed: Buffer } | undefined;
    if (!row) throw new Error(`no sealed row for ${path} v${version}`);
    return row.sealed;
  } finally {
    db.close();
  }
}

/** A store failure: exit 4, nothing on stdout, a plain message without stack or secrets. */
function expectStoreError(result: SyResult, message: RegExp, secrets: string[] = []): void {
  expect({ exitCode: result.exitCode, stdout: result.stdout }).toEqual({ exitCode: 4, stdout: '' });
  expect(result.stderr).toMatch(/^sy: /);
  expect(result.stderr).toMatch(message);
  expect(result.stderr).not.toMatch(/^\s+at /m);
  expect(result.stderr).not.toMatch(/unexpected error/i);
  expect(result.stderr.trimEnd().split('\n').length).toBeLessThanOrEqual(2);
  for (const secret of [PASSWORD, ...secrets]) expect(result.stderr).not.toContain(secret);
}

async function ok<T = any>(sy: SyHome, args: string[], env?: Record<string, string | undefined>): Promise<T> {
  const result = await sy.run(args, { env });
  expect({ args, exitCode: result.exitCode, stderr: result.stderr }).toEqual({ args, exitCode: 0, stderr: '' });
  return JSON.parse(result.stdout) as T;
}

describe('the store: round trip, keys and permissions', () => {
  let sy: SyHome;
  let secret: any;
  beforeAll(async () => {
    sy = await makeHome();
    await ok(sy, ['secret', 'create', 'app:one', '--data', JSON.stringify({ password: PASSWORD, n: 1 }), '--desc', 'first']);
    secret = await ok(sy, ['secret', 'read', 'app:one']);
  });
  afterAll(() => sy?.cleanup());

  test('a secret written by one process is read back by a fresh one, and is encrypted at rest', async () => {
    expect(secret).toMatchObject({ path: 'app:one', version: 1, description: 'first', data: { password: PASSWORD, n: 1 } });
    expect(await ok(sy, ['secret', 'read', secret.id])).toEqual(secret);
    checkpoint(sy);
    for (const name of readdirSync(sy.env.SY_HOME)) {
      const bytes = readFileSync(join(sy.env.SY_HOME, name));
      expect({ name, found: bytes.indexOf(PASSWORD) }).toEqual({ name, found: -1 });
      expect({ name, found: bytes.indexOf(sy.env.SY_MASTER_KEY) }).toEqual({ name, found: -1 });
    }
  });

  test('SY_HOME is 0700 and the store file 0600', () => {
    expect(statSync(sy.env.SY_HOME).mode & 0o777).toBe(0o700);
    expect(statSync(dbFile(sy)).mode & 0o777).toBe(0o600);
    for (const name of readdirSync(sy.env.SY_HOME)) expect({ name, mode: statSync(join(sy.env.SY_HOME, name)).mode & 0o077 }).toEqual({ name, mode: 0 });
  });

  test('a wrong SY_MASTER_KEY exits 4 with a clear message and changes no byte', async () => {
    const wrong = freshKey();
    checkpoint(sy);
    const before = homeBytes(sy);
    const attempts = [
      ['secret', 'read', 'app:one'],
      ['secret', 'search'],
      ['secret', 'create', 'app:two', '--data', '{"a": 1}'],
      ['secret', 'update', 'app:one', '--data', '{"n": 2}'],
      ['secret', 'delete', 'app:one'],
      ['key', 'change', '--to', 'passphrase'],
    ];
    for (const args of attempts) {
      const result = await sy.run(args, { env: { SY_MASTER_KEY: wrong, SY_NEW_PASSPHRASE: PASSPHRASE } });
      expectStoreError(result, /SY_MASTER_KEY.*does not open|does not open.*SY_MASTER_KEY/, [wrong, PASSPHRASE]);
    }
    expect(homeBytes(sy)).toEqual(before);
    expect(await ok(sy, ['secret', 'read', 'app:one'])).toEqual(secret);
  });

  test('a malformed SY_MASTER_KEY exits 4 without echoing it', async () => {
    const malformed = 'not-a-key-but-a-secret-looking-value';
    expectStoreError(await sy.run(['secret', 'read', 'app:one'], { env: { SY_MASTER_KEY: malformed } }), /SY_MASTER_KEY/, [malformed]);
  });

  test('without any key and without a terminal, sy exits 4 at once and names SY_MASTER_KEY', async () => {
    const started = Date.now();
    const result = await sy.run(['secret', 'read', 'app:one'], { env: { SY_MASTER_KEY: undefined }, input: '', timeout: 20_000 });
    expectStoreError(result, /SY_MASTER_KEY/);
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  test('SY_MASTER_KEY_FILE opens the same store', async () => {
    const keyFile = join(sy.home, 'master.key');
    writeFileSync(keyFile, `${sy.env.SY_MASTER_KEY}\n`, { mode: 0o600 });
    expect(await ok(sy, ['secret', 'read', 'app:one'], { SY_MASTER_KEY: undefined, SY_MASTER_KEY_FILE: keyFile })).toEqual(secret);
  });

  test('sy init on an existing store exits 2 and keeps the store and its key', async () => {
    checkpoint(sy);
    const before = homeBytes(sy);
    const again = await sy.run(['init']);
    expect({ exitCode: again.exitCode, stdout: again.stdout }).toEqual({ exitCode: 2, stdout: '' });
    expect(again.stderr).toMatch(/already exists/);
    const otherKey = freshKey();
    const withOtherKey = await sy.run(['init'], { env: { SY_MASTER_KEY: otherKey } });
    expect(withOtherKey.exitCode).toBe(2);
    expect(withOtherKey.stderr).not.toContain(otherKey);
    expect(homeBytes(sy)).toEqual(before);
    expect(await ok(sy, ['secret', 'read', 'app:one'])).toEqual(secret);
  });

  test('sy key generate prints the base64 of 32 fresh random bytes each time', async () => {
    const keys: string[] = [];
    for (let i = 0; i < 3; i++) {
      const result = await sy.run(['key', 'generate'], { env: { SY_MASTER_KEY: undefined } });
      expect({ exitCode: result.exitCode, stderr: result.stderr }).toEqual({ exitCode: 0, stderr: '' });
      const key = result.stdout.trim();
      expect(key).toMatch(/^[A-Za-z0-9+/]{43}=$/);
      expect(Buffer.from(key, 'base64')).toHaveLength(32);
      keys.push(key);
    }
    expect(new Set(keys).size).toBe(3);
    // A generated key is one sy accepts.
    const other = await makeHome({ init: false, env: { SY_MASTER_KEY: keys[0] } });
    try {
      expect((await other.run(['init'])).exitCode).toBe(0);
      expect((await other.run(['secret', 'search'])).exitCode).toBe(0);
    } finally {
      other.cleanup();
    }
  });
});

describe('the store: passphrases and key change', () => {
  test('a store made with SY_PASSPHRASE opens with it; a wrong passphrase or a master key exits 4', async () => {
    const sy = await makeHome({ init: false });
    const env = { SY_MASTER_KEY: undefined, SY_PASSPHRASE: PASSPHRASE };
    try {
      // --quiet: no next-step line, so stderr must be empty.
      expect(await ok(sy, ['init', '--quiet'], env)).toMatchObject({ key_source: 'SY_PASSPHRASE' });
      await ok(sy, ['secret', 'create', 'app:pp', '--data', JSON.stringify({ password: PASSWORD })], env);
      expect((await ok(sy, ['secret', 'read', 'app:pp'], env)).data).toEqual({ password: PASSWORD });

      const wrong = 'wrong horse battery staple';
      expectStoreError(await sy.run(['secret', 'read', 'app:pp'], { env: { SY_MASTER_KEY: undefined, SY_PASSPHRASE: wrong } }), /does not open/, [wrong, PASSPHRASE]);
      expectStoreError(await sy.run(['secret', 'read', 'app:pp']), /passphrase|SY_PASSPHRASE/, [sy.env.SY_MASTER_KEY]);
      expectStoreError(await sy.run(['secret', 'read', 'app:pp'], { env: { SY_MASTER_KEY: undefined }, input: '' }), /SY_PASSPHRASE/);
    } finally {
      sy.cleanup();
    }
  });

  test('sy key change without the new key and without a terminal exits 2 naming SY_NEW_* and changes nothing', async () => {
    const sy = await makeHome();
    try {
      checkpoint(sy);
      const before = homeBytes(sy);
      for (const [to, variable] of [['passphrase', /SY_NEW_PASSPHRASE/], ['master-key', /SY_NEW_MASTER_KEY/]] as const) {
        const missing = await sy.run(['key', 'change', '--to', to], { input: '' });
        expect({ to, exitCode: missing.exitCode, stdout: missing.stdout }).toEqual({ to, exitCode: 2, stdout: '' });
        // The variable a key change reads, not the one that opens the store today.
        expect(missing.stderr).toMatch(variable);
      }
      expect(homeBytes(sy)).toEqual(before);
    } finally {
      sy.cleanup();
    }
  });

  test('sy key change --to passphrase: the old key stops working and the passphrase opens the same secrets', async () => {
    const sy = await makeHome();
    try {
      await ok(sy, ['secret', 'create', 'app:a', '--data', JSON.stringify({ password: PASSWORD })]);
      await ok(sy, ['secret', 'update', 'app:a', '--data', '{"v": 2}']);
      const a = await ok(sy, ['secret', 'read', 'app:a']);
      const a1 = await ok(sy, ['secret', 'read', 'app:a', '--version', '1']);

      const changed = await ok(sy, ['key', 'change', '--to', 'passphrase'], { SY_NEW_PASSPHRASE: PASSPHRASE });
      expect(changed).toMatchObject({ key_source: 'SY_NEW_PASSPHRASE', previous_key_source: 'SY_MASTER_KEY' });
      expect(JSON.stringify(changed)).not.toContain(PASSPHRASE);

      expectStoreError(await sy.run(['secret', 'read', 'app:a']), /SY_MASTER_KEY/, [sy.env.SY_MASTER_KEY]);
      const byPassphrase = { SY_MASTER_KEY: undefined, SY_PASSPHRASE: PASSPHRASE };
      expect(await ok(sy, ['secret', 'read', 'app:a'], byPassphrase)).toEqual(a);
      expect(await ok(sy, ['secret', 'read', 'app:a', '--version', '1'], byPassphrase)).toEqual(a1);
      expectStoreError(await sy.run(['secret', 'read', 'app:a'], { env: { SY_MASTER_KEY: undefined, SY_PASSPHRASE: `${PASSPHRASE}!` } }), /does not open/);

      // And back to a new master key.
      const newKey = freshKey();
      expect(await ok(sy, ['key', 'change', '--to', 'master-key'], { ...byPassphrase, SY_NEW_MASTER_KEY: newKey })).toMatchObject({ key_source: 'SY_NEW_MASTER_KEY' });
      expect(await ok(sy, ['secret', 'read', 'app:a'], { SY_MASTER_KEY: newKey })).toEqual(a);
      expectStoreError(await sy.run(['secret', 'read', 'app:a'], { env: byPassphrase }), /SY_PASSPHRASE/, [PASSPHRASE]);
      expectStoreError(await sy.run(['secret', 'read', 'app:a']), /does not open/, [sy.env.SY_MASTER_KEY]);
    } finally {
      sy.cleanup();
    }
  });
});

describe('the store: tampering is detected', () => {
  let sy: SyHome;
  beforeEach(async () => {
    sy = await makeHome();
    await ok(sy, ['secret', 'create', 'app:a', '--data', JSON.stringify({ password: PASSWORD, who: 'a' })]);
    await ok(sy, ['secret', 'create', 'app:b', '--data', JSON.stringify({ password: 'other-secret-value', who: 'b' })]);
  });
  afterEach(() => sy?.cleanup());

  test('one flipped byte inside a sealed payload makes reading that secret exit 4 as tampered', async () => {
    const sealed = sealedOf(sy, 'app:a');
    const ciphertext = sealed.subarray(1 + 12, sealed.length - 16);
    expect(ciphertext.length).toBeGreaterThan(16);
    checkpoint(sy);
    const bytes = readFileSync(dbFile(sy));
    const at = bytes.indexOf(ciphertext);
    expect(at).toBeGreaterThan(0);
    expect(bytes.indexOf(ciphertext, at + 1)).toBe(-1);
    const flipped = at + Math.floor(ciphertext.length / 2);
    bytes[flipped] ^= 0x01;
    writeFileSync(dbFile(sy), bytes);
    expect(sealedOf(sy, 'app:a').equals(sealed)).toBe(false);

    expectStoreError(await sy.run(['secret', 'read', 'app:a']), /tamper|damage|changed by someone without the key/i, ['other-secret-value']);
    expectStoreError(await sy.run(['secret', 'read', 'app:a', '--version', '1']), /tamper|damage|changed by someone without the key/i);
  });

  test('garbage over the SQLite header exits 4', async () => {
    checkpoint(sy);
    const bytes = readFileSync(dbFile(sy));
    Buffer.from('this is not an sqlite database, it was overwritten!!').copy(bytes, 0);
    writeFileSync(dbFile(sy), bytes);
    expectStoreError(await sy.run(['secret', 'read', 'app:a']), /damage|not a sy store|tamper/i);
    expectStoreError(await sy.run(['secret', 'search']), /damage|not a sy store|tamper/i);
    expectStoreError(await sy.run(['secret', 'create', 'app:c', '--data', '{}']), /damage|not a sy store|tamper/i);
  });

  test('swapping the sealed payloads of two secrets exits 4: a payload is bound to its id and version', async () => {
    const db = new Database(dbFile(sy));
    const ids = db.prepare("SELECT path, id FROM secrets WHERE path IN ('app:a', 'app:b') ORDER BY path").all() as { id: string }[];
    const [a, b] = ids.map(({ id }) => (db.prepare('SELECT sealed FROM secret_versions WHERE secret_id = ? AND version = 1').get(id) as { sealed: Buffer }).sealed);
    const swap = db.prepare('UPDATE secret_versions SET sealed = ? WHERE secret_id = ? AND version = 1');
    db.transaction(() => {
      swap.run(b, ids[0].id);
      swap.run(a, ids[1].id);
    })();
    db.close();

    expectStoreError(await sy.run(['secret', 'read', 'app:a']), /tamper|damage|changed by someone without the key/i, ['other-secret-value']);
    expectStoreError(await sy.run(['secret', 'read', 'app:b']), /tamper|damage|changed by someone without the key/i, ['other-secret-value']);
    expectStoreError(await sy.run(['secret', 'update', 'app:a', '--data', '{"x": 1}']), /tamper|damage|changed by someone without the key/i);
  });

  test('a version payload moved to another version of the same secret exits 4', async () => {
    await ok(sy, ['secret', 'update', 'app:a', '--data', '{"who": "a2"}']);
    const db = new Database(dbFile(sy));
    const { id } = db.prepare("SELECT id FROM secrets WHERE path = 'app:a'").get() as { id: string };
    const v1 = (db.prepare('SELECT sealed FROM secret_versions WHERE secret_id = ? AND version = 1').get(id) as { sealed: Buffer }).sealed;
    db.prepare('UPDATE secret_versions SET sealed = ? WHERE secret_id = ? AND version = 2').run(v1, id);
    db.close();
    expectStoreError(await sy.run(['secret', 'read', 'app:a']), /tamper|damage|changed by someone without the key/i);
  });
});

describe('the store: concurrent writers and crashes', () => {
  let sy: SyHome;
  beforeAll(async () => {
    sy = await makeHome();
  });
  afterAll(() => sy?.cleanup());

  test('20 concurrent sy secret create processes all succeed', async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => sy.run(['secret', 'create', `load:${String(i).padStart(2, '0')}`, '--data', JSON.stringify({ i, password: PASSWORD })])),
    );
    expect(results.map((r) => ({ exitCode: r.exitCode, stderr: r.stderr }))).toEqual(results.map(() => ({ exitCode: 0, stderr: '' })));
    const found = await ok(sy, ['secret', 'search', 'load:', '--limit', '1000']);
    expect(found.data.map((s: { path: string }) => s.path).sort()).toEqual(Array.from({ length: 20 }, (_, i) => `load:${String(i).padStart(2, '0')}`));
    const reads = await Promise.all(found.data.map((s: { id: string }) => sy.json(['secret', 'read', s.id])));
    expect(reads.map((r) => r.data.i).sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  test('a writer killed with SIGKILL before COMMIT leaves a readable store and releases the lock', async () => {
    await ok(sy, ['secret', 'create', 'crash:before', '--data', JSON.stringify({ password: PASSWORD })]);
    const dir = mkdtempSync(join(tmpdir(), 'sy-crash-'));
    const script = join(dir, 'writer.cjs');
    // Holds the write lock, writes enough to spill uncommitted pages into the WAL, then waits to be killed.
    writeFileSync(
      script,
      `const Database = require(${JSON.stringify(join(ROOT, 'node_modules', 'better-sqlite3'))});
const db = new Database(process.argv[2]);
db.pragma('busy_timeout = 15000');
db.pragma('cache_size = 8');
db.exec('BEGIN IMMEDIATE');
const now = new Date().toISOString();
db.prepare("INSERT INTO secrets (id, path, kind, linked_path, current_version, created, last_modified) VALUES ('00000000-0000-4000-8000-00000000dead', 'crash:half', 'static', NULL, 1, ?, ?)").run(now, now);
const version = db.prepare("INSERT INTO secret_versions (secret_id, version, created, sealed) VALUES ('00000000-0000-4000-8000-00000000dead', ?, ?, randomblob(65536))");
for (let v = 1; v <= 64; v++) version.run(v, now);
db.prepare("UPDATE secrets SET last_modified = 'garbage' WHERE path = 'crash:before'").run();
process.stdout.write('ready\\n');
setInterval(() => {}, 1000);
`,
    );
    const writer = execa('node', [script, dbFile(sy)], { reject: false, stdin: 'ignore' });
    try {
      await new Promise<void>((resolve, reject) => {
        let seen = '';
        writer.stdout!.on('data', (chunk: Buffer) => {
          seen += chunk.toString();
          if (seen.includes('ready')) resolve();
        });
        writer.then((result) => reject(new Error(`the writer exited before it was ready: ${result.stderr}`)), reject);
        const timer = setTimeout(() => reject(new Error(`the writer never became ready: ${seen}`)), 30_000);
        writer.stdout!.once('close', () => clearTimeout(timer));
      });
      // While the lock is held, a reader still works (WAL).
      expect((await ok(sy, ['secret', 'read', 'crash:before'])).data).toEqual({ password: PASSWORD });
      writer.kill('SIGKILL');
      const killed = await writer;
      expect(killed.signal).toBe('SIGKILL');
    } finally {
      writer.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }

    const found = await ok(sy, ['secret', 'search', '--limit', '1000']);
    const paths = found.data.map((s: { path: string }) => s.path);
    expect(paths).toContain('crash:before');
    expect(paths).not.toContain('crash:half');
    const before = found.data.find((s: { path: string }) => s.path === 'crash:before');
    expect(before.lastModified).not.toBe('garbage');
    expect((await ok(sy, ['secret', 'read', 'crash:before'])).data).toEqual({ password: PASSWORD });
    await ok(sy, ['secret', 'create', 'crash:after', '--data', '{"ok": true}']);
    expect((await ok(sy, ['secret', 'read', 'crash:after'])).data).toEqual({ ok: true });
  });

  test('sy secret create processes killed at random moments leave every reported secret readable', async () => {
    const reported: string[] = [];
    const outcomes: string[] = [];
    const total = 24;
    for (let batch = 0; batch < total / 4; batch++) {
      await Promise.all(
        Array.from({ length: 4 }, async (_, j) => {
          const i = batch * 4 + j;
          const path = `kill:${String(i).padStart(2, '0')}`;
          const child = execa(SY_BIN, ['secret', 'create', path, '--data', JSON.stringify({ i, password: PASSWORD })], {
            env: { PATH: process.env.PATH, ...sy.env },
            extendEnv: false,
            reject: false,
            stdin: 'ignore',
          });
          // Spread from 0 to ~200 ms: over start-up (the first few are always killed before a
          // command can finish), store opening and the write itself (~100-150 ms in). The last
          // batch is left to finish, writing after the crashes.
          const delay = i < total - 4 ? i * 10 + Math.floor(Math.random() * 10) : 60_000;
          const timer = setTimeout(() => child.kill('SIGKILL'), delay);
          const result = await child;
          clearTimeout(timer);
          if (result.exitCode === 0) {
            expect(JSON.parse(String(result.stdout)).path).toBe(path);
            reported.push(path);
            outcomes.push('created');
          } else {
            expect(result.signal).toBe('SIGKILL');
            outcomes.push('killed');
          }
        }),
      );
    }
    expect(outcomes).toContain('killed');
    expect(outcomes.slice(-4)).toEqual(Array(4).fill('created'));
    console.info(`killed ${outcomes.filter((o) => o === 'killed').length} of ${total - 4}`);

    const found = await ok(sy, ['secret', 'search', 'kill:', '--limit', '1000']);
    const present = found.data.map((s: { path: string }) => s.path);
    for (const path of reported) expect(present).toContain(path);
    for (const path of present) {
      const read = await ok(sy, ['secret', 'read', path]);
      expect(read.data).toEqual({ i: Number(path.slice('kill:'.length)), password: PASSWORD });
    }
    await ok(sy, ['secret', 'create', 'kill:after', '--data', '{"ok": true}']);
  });
});
