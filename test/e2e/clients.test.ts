/**
 * `sy client create|list|describe|update|delete` end to end through the built bin/sy, on a
 * SQLite store in a temporary SY_HOME: the key pair made and shown once (or written to
 * --output, or given), what the store and the audit log keep (never a key), every refusal
 * with its exit code and nothing made, and `delete --revoke-leases` against the real
 * PostgreSQL of the jest global setup, with leases issued for the client as a daemon would.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID } from 'node:crypto';
import { existsSync, lstatSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Sqlite from 'better-sqlite3';
import { execa } from 'execa';
import { issueLease } from '../../src/leases/issue.js';
import { clientActor } from '../../src/model/client.js';
import { openStore } from '../../src/store/open.js';
import { connectTarget } from '../../src/targets/connect.js';
import { type SyHome, type SyResult, makeHome } from '../helpers/cli.js';
import { createPgDatabase, dropPgDatabase, dropPgRoles, pgManagedRoles, pgRoleExists, scramCluster, tag } from '../helpers/db.js';
import { createStoreDatabase } from '../helpers/pg-store.js';

const T = tag();
const DB = `sy_e2e_clients_${T}`;
const PREFIX = `cl${T}_`;

let sy: SyHome;
const stderrs: string[] = [];
/** Every private key printed here: none may reach the store, the audit log or stderr. */
const privateKeys: string[] = [];

const run = async (args: string[], options: { input?: string } = {}): Promise<SyResult> => {
  const result = await sy.run(args, options);
  stderrs.push(result.stderr);
  return result;
};
const ok = async <R = any>(args: string[], options: { input?: string } = {}): Promise<R> => {
  const result = await run(args, options);
  if (result.exitCode !== 0) throw new Error(`sy ${args.join(' ')} exited ${result.exitCode}: ${result.stderr}`);
  return JSON.parse(result.stdout) as R;
};
/** A refusal: the exit code, nothing on stdout, a sentence (and perhaps a hint) on stderr matching `message`. */
const refused = async (args: string[], exitCode: number, message: RegExp, options: { input?: string } = {}) => {
  const result = await run(args, options);
  expect({ exitCode: result.exitCode, stdout: result.stdout }).toEqual({ exitCode, stdout: '' });
  expect(result.stderr).toMatch(message);
  expect(result.stderr.trim().split('\n').length).toBeLessThanOrEqual(2);
  return result;
};
const names = async (): Promise<string[]> => (await ok<{ data: { name: string }[] }>(['client', 'list'])).data.map((c) => c.name);
const fingerprint = (pem: string) =>
  `SHA256:${createHash('sha256').update(createPublicKey(pem).export({ type: 'spki', format: 'der' })).digest('base64').replace(/=+$/, '')}`;
const pemBody = (pem: string) => pem.split('\n').filter((line) => line && !line.startsWith('-----')).join('');

beforeAll(async () => {
  sy = await makeHome();
});

afterAll(async () => {
  const dump = existsSync(join(sy.env.SY_HOME, 'sy.db')) ? readFileSync(join(sy.env.SY_HOME, 'sy.db')).toString('latin1') : '';
  const log = readFileSync(join(sy.env.SY_HOME, 'audit.log'), 'utf8');
  sy.cleanup();
  for (const key of privateKeys) {
    for (const text of [dump, log, ...stderrs]) expect(text).not.toContain(pemBody(key));
  }
});

describe('sy client create', () => {
  test('makes an Ed25519 pair: the private key once in private_key, the store keeps the public half, listings a fingerprint', async () => {
    const created = await ok(['client', 'create', 'ci-runner', '--allow', 'db:postgresql:*', '--allow', 'app/x', '--max-ttl', '15m', '--max-leases', '3']);
    privateKeys.push(created.private_key);
    const privateKey = createPrivateKey(created.private_key);
    expect(privateKey.asymmetricKeyType).toBe('ed25519');
    expect(created.private_key).toMatch(/^-----BEGIN PRIVATE KEY-----\n[\s\S]+\n-----END PRIVATE KEY-----\n$/);
    const publicPem = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString();
    expect(created).toEqual({
      name: 'ci-runner', allow: ['db:postgresql:*', 'app:x'], max_ttl: 900, max_leases: 3, active_leases: 0,
      key_fingerprint: fingerprint(publicPem), created_at: expect.stringMatching(/Z$/), updated_at: created.created_at, private_key: created.private_key,
    });

    const described = await ok(['client', 'describe', 'ci-runner']);
    const { private_key: _shownOnce, ...rest } = created;
    expect(described).toEqual(rest);
    const listed = await run(['client', 'list']);
    expect(JSON.parse(listed.stdout)).toEqual({ data: [rest] });
    for (const format of ['json', 'yaml', 'table', 'env']) {
      for (const args of [['client', 'list'], ['client', 'describe', 'ci-runner']]) {
        const shown = await run([...args, '--format', format]);
        expect(shown.exitCode).toBe(0);
        expect(shown.stdout).toContain('ci-runner');
        expect(shown.stdout).not.toMatch(/BEGIN|PRIVATE|PUBLIC KEY/);
        expect(shown.stdout).not.toContain(pemBody(publicPem));
      }
    }
    // The store holds the public half; the audit log holds neither half.
    const db = new Sqlite(join(sy.env.SY_HOME, 'sy.db'), { readonly: true });
    const row = db.prepare('SELECT * FROM clients WHERE name = ?').get('ci-runner') as { public_key: string; allow: string };
    db.close();
    expect(row).toMatchObject({ public_key: publicPem, allow: '["db:postgresql:*","app:x"]' });
    const log = readFileSync(join(sy.env.SY_HOME, 'audit.log'), 'utf8');
    expect(log).not.toContain(pemBody(publicPem));
    const line = log.trim().split('\n').map((l) => JSON.parse(l)).find((e) => e.action === 'client.create');
    expect(line).toMatchObject({ outcome: 'success', detail: { client: 'ci-runner', allow: ['db:postgresql:*', 'app:x'], max_ttl: 900, max_leases: 3, key_fingerprint: created.key_fingerprint } });
  });

  test('--output FILE: the private key goes there (0600) and nowhere else; stdout names the file', async () => {
    const file = join(sy.home, 'ci2.pem');
    const result = await run(['client', 'create', 'ci2', '--allow', '*', '--output', file]);
    expect(result.exitCode).toBe(0);
    const pem = readFileSync(file, 'utf8');
    privateKeys.push(pem);
    expect(lstatSync(file).mode & 0o777).toBe(0o600);
    expect(createPrivateKey(pem).asymmetricKeyType).toBe('ed25519');
    const shown = JSON.parse(result.stdout);
    expect(shown).toMatchObject({ name: 'ci2', allow: ['*'], max_leases: 100, max_ttl: null, private_key_file: file });
    expect(shown).not.toHaveProperty('private_key');
    expect(result.stdout + result.stderr).not.toContain(pemBody(pem));
    expect(shown.key_fingerprint).toBe(fingerprint(createPublicKey(createPrivateKey(pem)).export({ type: 'spki', format: 'pem' }).toString()));
  });

  test('--output through a symlink or into no directory: refused before the client exists', async () => {
    const link = join(sy.home, 'link.pem');
    symlinkSync(join(sy.home, 'elsewhere.pem'), link);
    await refused(['client', 'create', 'linked', '--allow', '*', '--output', link], 2, /symbolic link/);
    await refused(['client', 'create', 'linked', '--allow', '*', '--output', join(sy.home, 'no', 'such', 'dir.pem')], 2, /directory does not exist/);
    expect(existsSync(join(sy.home, 'elsewhere.pem'))).toBe(false);
    expect(await names()).not.toContain('linked');
  });

  test('--public-key inline, @file or stdin: kept as SPKI PEM; no private key is printed or made', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const file = join(sy.home, 'given.pub');
    writeFileSync(file, pem);
    for (const [name, value, input] of [['given-inline', pem, undefined], ['given-file', `@${file}`, undefined], ['given-stdin', '-', pem]] as const) {
      const result = await run(['client', 'create', name, '--allow', 'app:x', '--public-key', value], { input });
      expect(result.exitCode).toBe(0);
      const shown = JSON.parse(result.stdout);
      expect(shown.key_fingerprint).toBe(fingerprint(pem));
      expect(result.stdout).not.toMatch(/private_key|BEGIN/);
    }
    // A key given in another PEM wrapping of the same key is the same key.
    const sameKey = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString();
    expect((await ok(['client', 'describe', 'given-stdin'])).key_fingerprint).toBe(fingerprint(sameKey));
  });

  test('a key that is not an Ed25519 public key: one sentence, exit 2, nothing made, the key never echoed', async () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const ed = generateKeyPairSync('ed25519');
    const rsaPem = rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const edPrivate = ed.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    privateKeys.push(edPrivate);
    await refused(['client', 'create', 'k1', '--allow', 'a', '--public-key', rsaPem], 2, /Ed25519 public key; this one is rsa/);
    await refused(['client', 'create', 'k1', '--allow', 'a', '--public-key', '-'], 2, /Ed25519 public key; this one is ec/, { input: ec.publicKey.export({ type: 'spki', format: 'pem' }).toString() });
    const priv = await refused(['client', 'create', 'k1', '--allow', 'a', '--public-key', '-'], 2, /was given a private key/, { input: edPrivate });
    expect(priv.stderr).not.toContain(pemBody(edPrivate));
    await refused(['client', 'create', 'k1', '--allow', 'a', '--public-key', 'not a key at all'], 2, /must be an Ed25519 public key in PEM/);
    await refused(['client', 'create', 'k1', '--allow', 'a', '--public-key', `@${join(sy.home, 'missing.pub')}`], 2, /cannot be read/);
    await refused(['client', 'create', 'k1', '--allow', 'a', '--public-key', rsaPem, '--output', join(sy.home, 'k1.pem')], 2, /--output/);
    expect(await names()).not.toContain('k1');
  });

  test.each([
    [['client', 'create', 'bad name', '--allow', 'a'], /not a valid client name/],
    [['client', 'create', 'x'.repeat(65), '--allow', 'a'], /not a valid client name/],
    [['client', 'create', 'ünï', '--allow', 'a'], /not a valid client name/],
    [['client', 'create', 'p1', '--allow', 'db:*:x'], /"db:\*:x" is not a valid pattern/],
    [['client', 'create', 'p1', '--allow', 'db:postgresql:..:*'], /is not a valid pattern/],
    [['client', 'create', 'p1', '--allow', 'ok', '--allow', 'db:post*'], /"db:post\*" is not a valid pattern/],
    [['client', 'create', 'p1'], /--allow/],
    [['client', 'create', 'p1', '--allow', 'a', '--max-ttl', '86401'], /--max-ttl must be between 1 and 86400/],
    [['client', 'create', 'p1', '--allow', 'a', '--max-ttl', '25h'], /--max-ttl must be between 1 and 86400/],
    [['client', 'create', 'p1', '--allow', 'a', '--max-ttl', 'soon'], /--max-ttl/],
    [['client', 'create', 'p1', '--allow', 'a', '--max-leases', '0'], /--max-leases must be a whole number/],
    [['client', 'create', 'p1', '--allow', 'a', '--max-leases', '1.5'], /--max-leases must be a whole number/],
    [['client', 'create', 'p1', '--allow', 'a', '--max-leases', '-3'], /--max-leases/],
    [['client', 'create', 'p1', '--allow', 'a', '--format', 'dotenv'], /dotenv/],
    [['client', 'create', 'p1', '--allow', 'a', '--filter', 'nope'], /no field "nope"/],
  ])('refuses %j with exit 2, one plain sentence, nothing made', async (args, message) => {
    await refused(args, 2, message);
    expect(await names()).not.toContain('p1');
  });

  test('a name taken: exit 2, the client as it was', async () => {
    privateKeys.push((await ok(['client', 'create', 'taken', '--allow', 'mine'])).private_key);
    const before = await ok(['client', 'describe', 'taken']);
    await refused(['client', 'create', 'taken', '--allow', 'other'], 2, /already exists/);
    expect(await ok(['client', 'describe', 'taken'])).toEqual(before);
  });

  test('every format: table shows the private key unindented once, env can be eval-ed', async () => {
    const table = await run(['client', 'create', 'tabled', '--allow', 'x', '--format', 'table']);
    expect(table.exitCode).toBe(0);
    const pem = `${/-----BEGIN PRIVATE KEY-----\n[\s\S]*?-----END PRIVATE KEY-----/.exec(table.stdout)![0]}\n`;
    privateKeys.push(pem);
    expect(createPrivateKey(pem).asymmetricKeyType).toBe('ed25519');
    expect(table.stdout.split(pemBody(pem)).length).toBe(2);
    const env = await run(['client', 'create', 'envd', '--allow', 'x', '--format', 'env']);
    expect(env.exitCode).toBe(0);
    const shell = await execa('sh', ['-c', `${env.stdout}\nprintf '%s|' "$SY_CLIENT_ID"; printf '%s' "$SY_PRIVATE_KEY"`]);
    const [id, key] = shell.stdout.split('|');
    privateKeys.push(key);
    expect(id).toBe('envd');
    expect(createPrivateKey(key).asymmetricKeyType).toBe('ed25519');
    const yaml = await run(['client', 'create', 'yamld', '--allow', 'x', '--format', 'yaml']);
    expect(yaml.stdout).toMatch(/^name: yamld$/m);
    privateKeys.push(`${/-----BEGIN PRIVATE KEY-----[\s\S]*?-----END PRIVATE KEY-----/.exec(yaml.stdout)![0]}\n`);
    const filtered = await run(['client', 'create', 'filtered', '--allow', 'x', '--filter', 'private_key']);
    privateKeys.push(filtered.stdout);
    expect(createPrivateKey(filtered.stdout).asymmetricKeyType).toBe('ed25519');
  });
});

describe('sy client update', () => {
  test('changes what is given, keeps the rest and created_at; --allow replaces every pattern; a new key changes the fingerprint', async () => {
    privateKeys.push((await ok(['client', 'create', 'upd', '--allow', 'app:a', '--allow', 'app:b', '--max-ttl', '600'])).private_key);
    const before = await ok(['client', 'describe', 'upd']);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const updated = await ok(['client', 'update', 'upd', '--allow', 'db/mysql/*', '--max-leases', '7']);
    expect(updated).toEqual({ ...before, allow: ['db:mysql:*'], max_leases: 7, updated_at: expect.any(String) });
    expect(Date.parse(updated.updated_at)).toBeGreaterThan(Date.parse(before.updated_at));
    const { publicKey } = generateKeyPairSync('ed25519');
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const rekeyed = await ok(['client', 'update', 'upd', '--public-key', '-', '--max-ttl', '1h'], { input: pem });
    expect(rekeyed).toMatchObject({ allow: ['db:mysql:*'], max_leases: 7, max_ttl: 3600, key_fingerprint: fingerprint(pem), created_at: before.created_at });
    const lines = (await ok<{ data: { action: string; detail?: Record<string, unknown> }[] }>(['audit', 'list'])).data.filter((e) => e.action === 'client.update');
    expect(lines.map((e) => e.detail)).toEqual([
      expect.objectContaining({ client: 'upd', allow: ['db:mysql:*'], max_leases: 7 }),
      expect.objectContaining({ client: 'upd', key_fingerprint: fingerprint(pem), new_key: true, max_ttl: 3600 }),
    ]);
  });

  test('refusals: no such client (3), nothing to change (2), bad values (2); the client unchanged', async () => {
    privateKeys.push((await ok(['client', 'create', 'steady', '--allow', 'app:a'])).private_key);
    const before = await ok(['client', 'describe', 'steady']);
    await refused(['client', 'update', 'ghost', '--max-leases', '2'], 3, /No client named ghost/);
    await refused(['client', 'update', 'steady'], 2, /Nothing to change/);
    await refused(['client', 'update', 'steady', '--allow', '..'], 2, /not a valid pattern/);
    await refused(['client', 'update', 'steady', '--max-ttl', '90000'], 2, /--max-ttl/);
    await refused(['client', 'update', 'steady', '--public-key', 'junk'], 2, /Ed25519/);
    expect(await ok(['client', 'describe', 'steady'])).toEqual(before);
    await refused(['client', 'describe', 'ghost'], 3, /No client named ghost/);
    await refused(['client', 'describe', '../x'], 2, /not a valid client name/);
  });
});

describe('sy client delete', () => {
  test('needs --yes without a terminal; with it, the client is gone and the deletion audited', async () => {
    privateKeys.push((await ok(['client', 'create', 'doomed', '--allow', 'x'])).private_key);
    await refused(['client', 'delete', 'doomed'], 2, /pass --yes/);
    expect(await names()).toContain('doomed');
    const deleted = await ok(['client', 'delete', 'doomed', '--yes']);
    expect(deleted).toEqual({ name: 'doomed', revoked_leases: [], remaining_leases: [] });
    expect(await names()).not.toContain('doomed');
    await refused(['client', 'delete', 'doomed', '--yes'], 3, /No client named doomed/);
    const audit = (await ok<{ data: { action: string; outcome: string; detail?: { client?: string } }[] }>(['audit', 'list'])).data;
    expect(audit.filter((e) => e.action === 'client.delete' && e.detail?.client === 'doomed').map((e) => e.outcome)).toEqual(['success']);
  });

  test('--revoke-leases revokes every lease the client holds on its server; without it they are left to expire', async () => {
    const admin = scramCluster();
    await createPgDatabase(DB, []);
    try {
      await ok(['secret', 'create', 'db:pg:root', '--body', '-'], {
        input: JSON.stringify({ attributes: { type: 'postgresql' }, data: { host: '127.0.0.1', port: admin.port, username: admin.user, password: admin.password, database: DB } }),
      });
      await ok(['secret', 'create', 'db:pg:app', '--attributes', JSON.stringify({
        linkConfig: { linkType: 'dynamic', linkedSecret: 'db:pg:root' }, grantPermissions: { what: 'SELECT', where: '*.*' }, ttl: 600, userPrefix: PREFIX,
      })]);
      privateKeys.push((await ok(['client', 'create', 'holder', '--allow', 'db:pg:*'])).private_key);
      privateKeys.push((await ok(['client', 'create', 'keeper', '--allow', 'db:pg:*'])).private_key);
      // Leases issued for the clients as a daemon does: on the store, with the client recorded and named in the audit log.
      const store = await openStore(sy.env.SY_HOME, sy.env, { actor: 'daemon@test', warn: () => undefined });
      const issue = (client: string) =>
        issueLease({ store, connect: connectTarget, now: Date.now, claimant: randomUUID(), actor: clientActor(client) }, { path: 'db:pg:app' }, { client });
      let held: Awaited<ReturnType<typeof issue>>[];
      let kept: Awaited<ReturnType<typeof issue>>;
      try {
        held = [await issue('holder'), await issue('holder')];
        kept = await issue('keeper');
      } finally {
        await store.close();
      }
      const own = await ok(['dynamic', 'lease', 'create', '--path', 'db:pg:app']);
      expect(await ok(['dynamic', 'lease', 'lookup', held[0].leaseId])).toMatchObject({ client: 'holder', state: 'active' });
      expect(await ok(['dynamic', 'lease', 'lookup', own.lease_id])).toMatchObject({ client: null });
      expect((await ok(['client', 'describe', 'holder'])).active_leases).toBe(2);
      expect((await ok<{ data: { name: string; active_leases: number }[] }>(['client', 'list'])).data.filter((c) => ['holder', 'keeper'].includes(c.name)))
        .toEqual([expect.objectContaining({ name: 'holder', active_leases: 2 }), expect.objectContaining({ name: 'keeper', active_leases: 1 })]);
      for (const lease of [...held, kept]) expect(await pgRoleExists(lease.username)).toBe(true);

      await refused(['client', 'delete', 'holder', '--revoke-leases'], 2, /revoke its 2 active leases: pass --yes/);
      const deleted = await ok(['client', 'delete', 'holder', '--revoke-leases', '--yes']);
      expect({ ...deleted, revoked_leases: [...deleted.revoked_leases].sort() }).toEqual({ name: 'holder', revoked_leases: held.map((l) => l.leaseId).sort(), remaining_leases: [] });
      for (const lease of held) {
        expect(await pgRoleExists(lease.username)).toBe(false);
        expect(await ok(['dynamic', 'lease', 'lookup', lease.leaseId])).toMatchObject({ state: 'revoked', client: 'holder' });
      }
      // Another client's lease and the store's own lease are untouched.
      expect(await pgRoleExists(kept.username)).toBe(true);
      expect(await pgRoleExists(own.username)).toBe(true);

      const leftToExpire = await ok(['client', 'delete', 'keeper', '--yes']);
      expect(leftToExpire).toEqual({ name: 'keeper', revoked_leases: [], remaining_leases: [kept.leaseId] });
      expect(await ok(['dynamic', 'lease', 'lookup', kept.leaseId])).toMatchObject({ state: 'active', client: 'keeper' });

      const audit = (await ok<{ data: { action: string; actor: string; lease_id?: string }[] }>(['audit', 'list'])).data;
      expect(audit.filter((e) => e.lease_id === held[0].leaseId).map((e) => [e.action, e.actor])).toEqual([
        ['lease.create', 'client:holder'],
        ['lease.revoke', expect.not.stringMatching(/^client:/)],
      ]);
    } finally {
      await run(['dynamic', 'lease', 'revoke', '--prefix', 'db:pg', '--yes', '--force']);
      await dropPgRoles(await pgManagedRoles(PREFIX));
      await dropPgDatabase(DB);
    }
  });
});

describe('the store keeps clients whole', () => {
  test('a row edited in sy.db (wider patterns): every client command exits 4; put back, they work', async () => {
    privateKeys.push((await ok(['client', 'create', 'victim', '--allow', 'app:one'])).private_key);
    privateKeys.push((await ok(['client', 'create', 'bystander', '--allow', 'app:two'])).private_key);
    const edit = (allow: string) => {
      const db = new Sqlite(join(sy.env.SY_HOME, 'sy.db'));
      db.prepare('UPDATE clients SET allow = ? WHERE name = ?').run(allow, 'victim');
      db.close();
    };
    edit('["*"]');
    for (const args of [['client', 'list'], ['client', 'describe', 'victim'], ['client', 'describe', 'bystander'], ['client', 'update', 'victim', '--max-leases', '1'], ['client', 'delete', 'victim', '--yes']]) {
      await refused(args, 4, /changed by someone without the key/);
    }
    edit('["app:one"]');
    expect((await ok(['client', 'describe', 'victim'])).allow).toEqual(['app:one']);
  });

  test('sy store info counts clients; sy store copy carries them to PostgreSQL and back, fingerprints and all', async () => {
    const listed = (await ok<{ data: { name: string }[] }>(['client', 'list'])).data;
    expect((await ok(['store', 'info'])).clients).toBe(listed.length);
    const pg = await createStoreDatabase();
    try {
      const toPg = await ok(['store', 'copy', '--to', pg.url]);
      expect(toPg.clients).toBe(listed.length);
      const shared = await runOn(pg.url, ['client', 'list']);
      expect(shared.exitCode).toBe(0);
      expect(JSON.parse(shared.stdout).data).toEqual(listed);
      const back = join(sy.home, 'back');
      const fromPg = await runOn(pg.url, ['store', 'copy', '--to', back]);
      expect(JSON.parse(fromPg.stdout).clients).toBe(listed.length);
      const local = await runSyIn(back, ['client', 'list']);
      expect(JSON.parse(local.stdout).data).toEqual(listed);
    } finally {
      await pg.drop();
    }
  });
});

const runOn = (url: string, args: string[]) => sy.run(args, { env: { SY_STORE: url } });
const runSyIn = (home: string, args: string[]) => sy.run(args, { env: { SY_HOME: home } });
