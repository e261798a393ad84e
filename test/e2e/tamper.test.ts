/**
 * Someone who can write the files in SY_HOME but has no key (issue 10). Every edit is made
 * the way such an attacker would make it: with SQLite directly on sy.db, or on audit.log and
 * the directory itself. Each must be reported (exit 4, one sentence naming the record) and
 * must change nothing on any server: the leases here are real users on the machine's
 * PostgreSQL (127.0.0.1:5432), next to a "victim" role sy never created.
 */
import { chmodSync, chownSync, copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { freshKey, makeHome, ROOT, type SyHome, type SyResult } from '../helpers/cli.js';
import { tag } from '../helpers/db.js';
import { writeOldStore } from '../helpers/old-store.js';
import { auditFile, dropPgPrefix, ledger, mustJson, PG5432, pgCreateRole, pgExists, pgUsers } from '../helpers/revocation.js';

const T = tag(4);
const PREFIX = `tm${T}_`;
const VICTIM = `tm${T}_victim`;
const BASE = 'db:postgresql:root';
const DYN = 'db:postgresql:app';
const asRoot = process.getuid?.() === 0;

const homes: SyHome[] = [];
const dirs: string[] = [];

beforeAll(async () => {
  await pgCreateRole(VICTIM);
});

afterAll(async () => {
  for (const sy of homes) sy.cleanup();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  await dropPgPrefix(PREFIX);
});

/** A store with a PostgreSQL base secret (the local server, trust auth) and a dynamic secret on it. */
async function pgStore(): Promise<SyHome> {
  const sy = await makeHome();
  homes.push(sy);
  await mustJson(sy, ['secret', 'create', BASE, '--attributes', '{"type": "postgresql"}', '--data', '-'], {
    input: JSON.stringify({ host: PG5432.host, port: PG5432.port, username: PG5432.user, password: PG5432.password, database: 'postgres' }),
  });
  await mustJson(sy, ['secret', 'create', DYN, '--attributes', '-'], {
    input: JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: BASE }, grantPermissions: { what: 'SELECT', where: '*.*' }, userPrefix: PREFIX, ttl: 600 }),
  });
  return sy;
}

async function newLease(sy: SyHome): Promise<{ lease_id: string; username: string }> {
  return mustJson(sy, ['dynamic', 'lease', 'create', '--path', DYN]);
}

/** Runs SQL on sy.db as the attacker does: no key, straight at the file. */
function edit(sy: SyHome, sql: string, ...params: unknown[]): Promise<unknown> {
  return ledger(sy, (db) => db.prepare(sql).run(...params));
}

function row<T = Record<string, unknown>>(sy: SyHome, sql: string, ...params: unknown[]): Promise<T> {
  return ledger(sy, (db) => db.prepare(sql).get(...params) as T);
}

/** Exit 4, nothing on stdout, one sentence (and at most a hint) naming what was changed. */
function expectTampered(result: SyResult, names: RegExp): void {
  expect({ exitCode: result.exitCode, stdout: result.stdout }).toEqual({ exitCode: 4, stdout: '' });
  expect(result.stderr).toMatch(/^sy: /);
  expect(result.stderr).toMatch(/changed by someone without the key/);
  expect(result.stderr).toMatch(names);
  expect(result.stderr.trimEnd().split('\n').length).toBeLessThanOrEqual(2);
  expect(result.stderr).not.toMatch(/^\s+at |unexpected error/m);
}

const sweep = (sy: SyHome): Promise<SyResult> => sy.run(['dynamic', 'sweep']);
const FAR = Date.now() + 10 * 365 * 86400_000;

describe('lease records', () => {
  test('a user name edited and the lease made due: neither the sweep nor the next command drops anyone', async () => {
    const sy = await pgStore();
    const lease = await newLease(sy);
    await edit(sy, 'UPDATE leases SET username = ?, expires_at = 0 WHERE id = ?', VICTIM, lease.lease_id);

    expectTampered(await sweep(sy), new RegExp(`lease ${lease.lease_id}`));
    // The sweep before an unrelated command.
    expectTampered(await sy.run(['secret', 'search'], { env: { SY_NO_SWEEP: '0' } }), new RegExp(`lease ${lease.lease_id}`));
    expectTampered(await sy.run(['dynamic', 'lease', 'lookup', lease.lease_id]), new RegExp(`lease ${lease.lease_id}`));
    expect(await pgExists(VICTIM)).toBe(true);
    expect(await pgExists(lease.username)).toBe(true);
  });

  test.each([
    ['state = revoked', "state = 'revoked', ended_at = 1"],
    ['state = forgotten', "state = 'forgotten'"],
    ['expires_at far in the future', `expires_at = ${FAR}, max_expires_at = ${FAR}`],
    ['a claim far in the future', `state = 'revoking', claimant = 'someone', claimed_until = ${FAR}`],
    ['a retry far in the future', `state = 'failed', attempts = 1, next_attempt_at = ${FAR}`],
  ])('a live, expired lease hidden from the sweep (%s) is found by `sy dynamic sweep`, which revokes nothing', async (_what, change) => {
    const sy = await pgStore();
    const other = await newLease(sy);
    const hidden = await newLease(sy);
    // `hidden` has expired (as if its TTL had run out), then is hidden from the sweep.
    await edit(sy, 'UPDATE leases SET expires_at = ? WHERE id = ?', Date.now() - 1000, hidden.lease_id);
    await edit(sy, `UPDATE leases SET ${change} WHERE id = ?`, hidden.lease_id);

    expectTampered(await sweep(sy), /lease|ledger/);
    expect(await pgExists(hidden.username)).toBe(true);
    expect(await pgExists(other.username)).toBe(true);
    expectTampered(await sy.run(['dynamic', 'lease', 'list', '--all']), new RegExp(`lease ${hidden.lease_id}`));
    expectTampered(await sy.run(['dynamic', 'lease', 'lookup', hidden.lease_id]), new RegExp(`lease ${hidden.lease_id}`));
  });

  test('every column of a lease is covered: an edit of any one is named by lookup, and undoing it is accepted again', async () => {
    const sy = await pgStore();
    const lease = await newLease(sy);
    const original = await row(sy, 'SELECT * FROM leases WHERE id = ?', lease.lease_id);
    const edits: [string, unknown][] = [
      ['secret_id', '00000000-0000-4000-8000-000000000001'],
      ['base_id', '00000000-0000-4000-8000-000000000002'],
      ['path', 'db:postgresql:other'],
      ['pool', 'elsewhere'],
      ['engine', 'mysql'],
      ['target', '192.0.2.7:5432/postgres'],
      ['username', VICTIM],
      ['state', 'irrevocable'],
      ['created_at', 1],
      ['expires_at', FAR],
      ['max_expires_at', FAR],
      ['attempts', 3],
      ['next_attempt_at', FAR],
      ['last_error', 'made up'],
      ['ended_at', 5],
      ['owner_pid', 1],
      ['owner_host', 'elsewhere'],
      ['claimant', 'someone'],
      ['claimed_until', FAR],
    ];
    for (const [column, value] of edits) {
      await edit(sy, `UPDATE leases SET ${column} = ? WHERE id = ?`, value, lease.lease_id);
      const result = await sy.run(['dynamic', 'lease', 'lookup', lease.lease_id]);
      expect({ column, exitCode: result.exitCode }).toEqual({ column, exitCode: 4 });
      expectTampered(result, new RegExp(`lease ${lease.lease_id}`));
      await edit(sy, `UPDATE leases SET ${column} = ? WHERE id = ?`, original[column], lease.lease_id);
      expect({ column, exitCode: (await sy.run(['dynamic', 'lease', 'lookup', lease.lease_id])).exitCode }).toEqual({ column, exitCode: 0 });
    }
    expect(await pgExists(lease.username)).toBe(true);
  });

  test('a lease row copied under another id is named, and the sweep notices the extra live lease', async () => {
    const sy = await pgStore();
    const lease = await newLease(sy);
    const copy = '11111111-2222-4333-8444-555555555555';
    const columns = (await ledger(sy, (db) => db.prepare('PRAGMA table_info(leases)').all() as { name: string }[])).map((c) => c.name);
    const select = columns.map((c) => (c === 'id' ? '?' : c)).join(', ');
    await edit(sy, `INSERT INTO leases (${columns.join(', ')}) SELECT ${select} FROM leases WHERE id = ?`, copy, lease.lease_id);

    expectTampered(await sy.run(['dynamic', 'lease', 'lookup', copy]), new RegExp(`lease ${copy}`));
    expectTampered(await sy.run(['dynamic', 'lease', 'list']), new RegExp(`lease ${copy}`));
    expectTampered(await sweep(sy), /lease|ledger/);
    expect(await pgExists(lease.username)).toBe(true);
  });

  test('a lease row copied from another copy of the same store (same key) is noticed by the sweep', async () => {
    const sy = await pgStore();
    await newLease(sy);
    // A second copy of the store, as an init container makes; it records a lease of its own.
    const twin = await makeHome({ init: false, env: { SY_MASTER_KEY: sy.env.SY_MASTER_KEY } });
    homes.push(twin);
    mkdirSync(twin.env.SY_HOME, { mode: 0o700 });
    await ledger(sy, (db) => db.pragma('wal_checkpoint(TRUNCATE)'));
    copyFileSync(join(sy.env.SY_HOME, 'sy.db'), join(twin.env.SY_HOME, 'sy.db'));
    const theirs = await newLease(twin);
    const copied = await ledger(twin, (db) => db.prepare('SELECT * FROM leases WHERE id = ?').get(theirs.lease_id) as Record<string, unknown>);
    const names = Object.keys(copied);
    await edit(sy, `INSERT INTO leases (${names.join(', ')}) VALUES (${names.map(() => '?').join(', ')})`, ...names.map((n) => copied[n]));

    expectTampered(await sweep(sy), /lease|ledger/);
    expect(await pgExists(theirs.username)).toBe(true);
    await twin.run(['dynamic', 'lease', 'revoke', theirs.lease_id]);
  });
});

describe('secret records', () => {
  let sy: SyHome;
  let id: string;
  beforeEach(async () => {
    sy = await pgStore();
    id = (await mustJson(sy, ['secret', 'describe', DYN])).id;
    // Version 2 narrows the recipe; version 1 was wider.
    await mustJson(sy, ['secret', 'update', DYN, '--attributes', '{"grantPermissions": {"what": "SELECT", "where": "public.*"}}']);
  });

  test('current_version moved back to the wider recipe: reading and issuing refuse, and no user is created', async () => {
    const before = await pgUsers(PREFIX);
    await edit(sy, 'UPDATE secrets SET current_version = 1 WHERE id = ?', id);
    expectTampered(await sy.run(['secret', 'read', DYN]), new RegExp(`secret ${DYN}`));
    expectTampered(await sy.run(['dynamic', 'lease', 'create', '--path', DYN]), new RegExp(`secret ${DYN}`));
    expect(await pgUsers(PREFIX)).toEqual(before);
  });

  test('the newest version deleted and current_version set back is named', async () => {
    await edit(sy, 'DELETE FROM secret_versions WHERE secret_id = ? AND version = 2', id);
    await edit(sy, 'UPDATE secrets SET current_version = 1 WHERE id = ?', id);
    expectTampered(await sy.run(['secret', 'read', DYN]), new RegExp(`secret ${DYN}`));
  });

  test('the newest version deleted alone is named, not reported as missing', async () => {
    await edit(sy, 'DELETE FROM secret_versions WHERE secret_id = ? AND version = 2', id);
    expectTampered(await sy.run(['secret', 'read', DYN]), new RegExp(`secret ${DYN}`));
  });

  test('an older copy of the row replayed while the newer version is still there is named', async () => {
    const older = await row(sy, 'SELECT * FROM secrets WHERE id = ?', id);
    await mustJson(sy, ['secret', 'update', DYN, '--desc', 'version 3']);
    const names = Object.keys(older);
    await edit(sy, `UPDATE secrets SET ${names.map((n) => `${n} = ?`).join(', ')} WHERE id = ?`, ...names.map((n) => older[n]), id);
    expectTampered(await sy.run(['secret', 'read', DYN]), new RegExp(`secret ${DYN}`));
  });

  test('an older copy of the row replayed with the newer version deleted is found by a full listing', async () => {
    const older = await ledger(sy, (db) => {
      const secret = db.prepare('SELECT * FROM secrets WHERE id = ?').get(id);
      return secret as Record<string, unknown>;
    });
    await mustJson(sy, ['secret', 'update', DYN, '--desc', 'version 3']);
    const names = Object.keys(older);
    await edit(sy, 'DELETE FROM secret_versions WHERE secret_id = ? AND version = 3', id);
    await edit(sy, `UPDATE secrets SET ${names.map((n) => `${n} = ?`).join(', ')} WHERE id = ?`, ...names.map((n) => older[n]), id);
    expectTampered(await sy.run(['secret', 'search']), /secret|store/);
  });

  test('a version row edited (its date) is named', async () => {
    await edit(sy, "UPDATE secret_versions SET created = '2000-01-01T00:00:00Z' WHERE secret_id = ? AND version = 1", id);
    expectTampered(await sy.run(['secret', 'read', DYN, '--version', '1']), new RegExp(`secret ${DYN}`));
  });

  test.each([
    ['path', 'db:postgresql:moved'],
    ['linked_path', 'db:postgresql:elsewhere'],
    ['kind', 'static'],
    ['last_modified', '2000-01-01T00:00:00Z'],
  ])('the %s column edited is named by a read by id and by search', async (column, value) => {
    await edit(sy, `UPDATE secrets SET ${column} = ? WHERE id = ?`, value, id);
    expectTampered(await sy.run(['secret', 'read', id]), /secret/);
    expectTampered(await sy.run(['secret', 'search']), /secret/);
  });

  test('a secret row with its versions copied from another store is named', async () => {
    const other = await makeHome();
    homes.push(other);
    await mustJson(other, ['secret', 'create', 'app:theirs', '--data', '{"x": 1}']);
    const secret = await row(other, "SELECT * FROM secrets WHERE path = 'app:theirs'");
    const versions = await ledger(other, (db) => db.prepare('SELECT * FROM secret_versions WHERE secret_id = ?').all(secret.id) as Record<string, unknown>[]);
    await ledger(sy, (db) => {
      const insert = (table: string, r: Record<string, unknown>) =>
        db.prepare(`INSERT INTO ${table} (${Object.keys(r).join(', ')}) VALUES (${Object.keys(r).map(() => '?').join(', ')})`).run(...Object.values(r));
      insert('secrets', secret);
      for (const v of versions) insert('secret_versions', v);
    });
    expectTampered(await sy.run(['secret', 'read', 'app:theirs']), /secret app:theirs/);
  });
});

describe('the audit log', () => {
  let sy: SyHome;
  beforeEach(async () => {
    sy = await makeHome();
    homes.push(sy);
    for (const name of ['a', 'b', 'c', 'd']) await mustJson(sy, ['secret', 'create', `app:${name}`, '--data', '{"x": 1}']);
  });

  const lines = (): string[] => readFileSync(auditFile(sy), 'utf8').split('\n').filter((l) => l !== '');

  test('a cut tail is refused by every later write, and verify keeps reporting it', async () => {
    const full = readFileSync(auditFile(sy), 'utf8');
    writeFileSync(auditFile(sy), `${lines().slice(0, -2).join('\n')}\n`);
    for (const name of ['e', 'f', 'g']) {
      const result = await sy.run(['secret', 'create', `app:${name}`, '--data', '{"x": 1}']);
      expect({ exitCode: result.exitCode, stdout: result.stdout }).toEqual({ exitCode: 4, stdout: '' });
      expect(result.stderr).toMatch(/audit log/);
      expect(result.stderr.trimEnd().split('\n').length).toBeLessThanOrEqual(2);
    }
    expect(lines()).toHaveLength(2);
    expect((await mustJson(sy, ['secret', 'search'])).data.map((s: { path: string }) => s.path)).toEqual(['app:a', 'app:b', 'app:c', 'app:d']);
    const verify = await sy.run(['audit', 'verify']);
    expect(verify.exitCode).toBe(1);
    expect(JSON.parse(verify.stdout)).toMatchObject({ ok: false });
    // Put back, the log is accepted and grows again.
    writeFileSync(auditFile(sy), full);
    await mustJson(sy, ['secret', 'create', 'app:e', '--data', '{"x": 1}']);
    expect((await mustJson(sy, ['audit', 'verify'])).ok).toBe(true);
    expect(lines()).toHaveLength(5);
  });

  test('a line added by someone without the key is refused by the next write', async () => {
    const last = JSON.parse(lines()[3]);
    writeFileSync(auditFile(sy), `${JSON.stringify({ ...last, action: 'secret.delete', prev: last.hash, hash: 'f'.repeat(64) })}\n`, { flag: 'a' });
    const result = await sy.run(['secret', 'create', 'app:e', '--data', '{"x": 1}']);
    expect(result.exitCode).toBe(4);
    expect(result.stderr).toMatch(/audit log/);
    expect((await sy.run(['audit', 'verify'])).exitCode).toBe(1);
  });

  test('a deleted log is refused by the next write', async () => {
    rmSync(auditFile(sy));
    const result = await sy.run(['secret', 'create', 'app:e', '--data', '{"x": 1}']);
    expect(result.exitCode).toBe(4);
    expect(result.stderr).toMatch(/audit log/);
    expect(existsSync(auditFile(sy))).toBe(false);
  });

  test('a symlinked log is not followed: nothing is written through it, exit 4', async () => {
    const elsewhere = mkdtempSync(join(tmpdir(), 'sy-tamper-link-'));
    dirs.push(elsewhere);
    const target = join(elsewhere, 'someone-elses-file');
    renameSync(auditFile(sy), target);
    const before = readFileSync(target, 'utf8');
    symlinkSync(target, auditFile(sy));
    const result = await sy.run(['secret', 'create', 'app:e', '--data', '{"x": 1}']);
    expect({ exitCode: result.exitCode, stdout: result.stdout }).toEqual({ exitCode: 4, stdout: '' });
    expect(result.stderr).toMatch(/audit\.log.*link/);
    expect(readFileSync(target, 'utf8')).toBe(before);
    expect((await sy.run(['audit', 'verify'])).exitCode).toBe(4);
    expect((await sy.run(['audit', 'list'])).exitCode).toBe(4);
    expect(readFileSync(target, 'utf8')).toBe(before);
  });

  test('a hard-linked log is not written through either', async () => {
    const elsewhere = mkdtempSync(join(tmpdir(), 'sy-tamper-link-'));
    dirs.push(elsewhere);
    const other = join(elsewhere, 'other-name');
    linkSync(auditFile(sy), other);
    const before = readFileSync(other, 'utf8');
    const result = await sy.run(['secret', 'create', 'app:e', '--data', '{"x": 1}']);
    expect(result.exitCode).toBe(4);
    expect(result.stderr).toMatch(/audit\.log.*hard links/);
    expect(readFileSync(other, 'utf8')).toBe(before);
    expect((await mustJson(sy, ['secret', 'search'])).data).toHaveLength(4);
    // Reading it is harmless and still allowed.
    expect((await sy.run(['audit', 'verify'])).exitCode).toBe(0);
  });

  test('a log made readable by others is 0600 again after the next write', async () => {
    chmodSync(auditFile(sy), 0o644);
    await mustJson(sy, ['secret', 'create', 'app:e', '--data', '{"x": 1}']);
    expect((statSync(auditFile(sy)).mode & 0o777).toString(8)).toBe('600');
  });
});

describe('SY_HOME', () => {
  test('a home made world-writable is tightened to 0700, with one line on stderr', async () => {
    const sy = await makeHome();
    homes.push(sy);
    chmodSync(sy.env.SY_HOME, 0o777);
    const result = await sy.run(['secret', 'search']);
    expect(result.exitCode).toBe(0);
    expect(result.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(new RegExp(`${sy.env.SY_HOME}.*0700`))]);
    expect((statSync(sy.env.SY_HOME).mode & 0o777).toString(8)).toBe('700');
    expect((await sy.run(['secret', 'search'])).stderr).toBe('');
  });

  test('a store file writable by others is tightened to 0600, with one line on stderr', async () => {
    const sy = await makeHome();
    homes.push(sy);
    chmodSync(join(sy.env.SY_HOME, 'sy.db'), 0o666);
    const result = await sy.run(['secret', 'search']);
    expect(result.exitCode).toBe(0);
    expect(result.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(/sy\.db.*0600/)]);
    expect((statSync(join(sy.env.SY_HOME, 'sy.db')).mode & 0o777).toString(8)).toBe('600');
  });

  test('sy init in an existing world-writable directory tightens it first and says so', async () => {
    const sy = await makeHome({ init: false });
    homes.push(sy);
    mkdirSync(sy.env.SY_HOME);
    chmodSync(sy.env.SY_HOME, 0o777);
    const result = await sy.run(['init']);
    expect(result.exitCode).toBe(0);
    expect(result.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(/0700/), expect.stringMatching(/^Next: /)]);
    expect((statSync(sy.env.SY_HOME).mode & 0o777).toString(8)).toBe('700');
  });

  test('a store file replaced by a symbolic link is refused, and the file it points to is untouched', async () => {
    const sy = await makeHome();
    homes.push(sy);
    const elsewhere = mkdtempSync(join(tmpdir(), 'sy-tamper-link-'));
    dirs.push(elsewhere);
    await ledger(sy, (db) => db.pragma('wal_checkpoint(TRUNCATE)'));
    const real = join(elsewhere, 'sy.db');
    renameSync(join(sy.env.SY_HOME, 'sy.db'), real);
    symlinkSync(real, join(sy.env.SY_HOME, 'sy.db'));
    const before = readFileSync(real);
    const result = await sy.run(['secret', 'create', 'app:x', '--data', '{}']);
    expect({ exitCode: result.exitCode, stdout: result.stdout }).toEqual({ exitCode: 4, stdout: '' });
    expect(result.stderr).toMatch(/sy\.db is a symbolic link/);
    expect(readFileSync(real).equals(before)).toBe(true);
  });

  (asRoot ? test : test.skip)('a home that another user owns is refused, naming it and the fix, and left as it is', async () => {
    const sy = await makeHome();
    homes.push(sy);
    chownSync(sy.env.SY_HOME, 4243, 4243);
    const result = await sy.run(['secret', 'search']);
    expect({ exitCode: result.exitCode, stdout: result.stdout }).toEqual({ exitCode: 4, stdout: '' });
    expect(result.stderr).toContain(sy.env.SY_HOME);
    expect(result.stderr).toMatch(/another user/);
    expect(statSync(sy.env.SY_HOME).uid).toBe(4243);
    chownSync(sy.env.SY_HOME, 0, 0);
  });

  (asRoot ? test : test.skip)("a world-writable directory that is not the user's (an emptyDir) is refused with the fix", async () => {
    const sy = await makeHome();
    homes.push(sy);
    const uid = 4244;
    const emptyDir = mkdtempSync(join(tmpdir(), 'sy-tamper-emptydir-'));
    dirs.push(emptyDir);
    chmodSync(emptyDir, 0o777);
    await ledger(sy, (db) => db.pragma('wal_checkpoint(TRUNCATE)'));
    copyFileSync(join(sy.env.SY_HOME, 'sy.db'), join(emptyDir, 'sy.db'));
    chownSync(join(emptyDir, 'sy.db'), uid, uid);
    const result = await execa(join(ROOT, 'bin', 'sy'), ['secret', 'search'], {
      env: { PATH: process.env.PATH, SY_HOME: emptyDir, SY_MASTER_KEY: sy.env.SY_MASTER_KEY, SY_NO_SWEEP: '1' },
      extendEnv: false,
      reject: false,
      stdin: 'ignore',
      uid,
      gid: uid,
    });
    expect({ exitCode: result.exitCode, stdout: result.stdout }).toEqual({ exitCode: 4, stdout: '' });
    expect(result.stderr).toContain(emptyDir);
    expect(result.stderr).toMatch(/mkdir -m 700/);
    expect((statSync(emptyDir).mode & 0o777).toString(8)).toBe('777');
  });
});

describe('a store written by the previous version', () => {
  const oldHome = (): { home: string; key: string; env: Record<string, string> } => {
    const dir = mkdtempSync(join(tmpdir(), 'sy-tamper-old-'));
    dirs.push(dir);
    const key = freshKey();
    const home = join(dir, 'store');
    return { home, key, env: { PATH: process.env.PATH!, SY_HOME: home, SY_MASTER_KEY: key, HOME: dir, SY_NO_SWEEP: '1' } };
  };
  const run = (env: Record<string, string>, args: string[]) =>
    execa(join(ROOT, 'bin', 'sy'), args, { env, extendEnv: false, reject: false, stdin: 'ignore' }).then((r) => ({ exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) }));
  const connection = { engine: 'postgresql', host: '127.0.0.1', port: 5432, username: 'postgres', password: 'x', database: 'postgres' };

  test('is migrated on open with the key: its records read back, then an edit is caught', async () => {
    const { home, key, env } = oldHome();
    const old = writeOldStore(home, key, [
      { path: 'app:static', kind: 'static', versions: [{ attributes: {}, data: { v: 1 } }, { attributes: {}, data: { v: 2 } }] },
      { path: BASE, kind: 'base', versions: [{ attributes: { type: 'postgresql' }, data: connection }] },
      { path: DYN, kind: 'dynamic', linkedPath: BASE, versions: [{ attributes: { linkConfig: { linkType: 'dynamic', linkedSecret: BASE }, grantPermissions: { what: 'SELECT', where: '*.*' }, userPrefix: PREFIX }, data: {} }] },
    ], [
      { secretPath: DYN, basePath: BASE, username: `${PREFIX}nosuchuser`, state: 'active', expiresAt: FAR, connection, sealUsername: false },
    ]);

    const read = await run(env, ['secret', 'read', 'app:static']);
    expect({ exitCode: read.exitCode, stderr: read.stderr }).toEqual({ exitCode: 0, stderr: '' });
    expect(JSON.parse(read.stdout)).toMatchObject({ version: 2, data: { v: 2 } });
    const lookup = await run(env, ['dynamic', 'lease', 'lookup', old.leaseIds[0]]);
    expect(lookup.exitCode).toBe(0);
    expect(JSON.parse(lookup.stdout)).toMatchObject({ username: `${PREFIX}nosuchuser`, state: 'active' });
    const verify = await run(env, ['audit', 'verify']);
    expect(verify.exitCode).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ ok: true, lines: old.auditLines });
    expect((await run(env, ['secret', 'create', 'app:new', '--data', '{}'])).exitCode).toBe(0);
    expect(JSON.parse((await run(env, ['audit', 'verify'])).stdout)).toMatchObject({ ok: true, lines: old.auditLines + 1 });

    // Migrated: the version is recorded and every row now carries a MAC that catches an edit.
    const sy = { env } as unknown as SyHome;
    expect((await row<{ value: string }>(sy, "SELECT value FROM meta WHERE key = 'schema_version'")).value).toBe('5');
    await edit(sy, 'UPDATE leases SET username = ? WHERE id = ?', VICTIM, old.leaseIds[0]);
    expectTampered(await run(env, ['dynamic', 'lease', 'lookup', old.leaseIds[0]]), new RegExp(`lease ${old.leaseIds[0]}`));
  });

  test('one whose audit tail had been cut before the upgrade still fails verify after it', async () => {
    const { home, key, env } = oldHome();
    writeOldStore(home, key, [
      { path: 'app:a', kind: 'static', versions: [{ attributes: {}, data: {} }] },
      { path: 'app:b', kind: 'static', versions: [{ attributes: {}, data: {} }] },
    ], []);
    const log = join(home, 'audit.log');
    writeFileSync(log, `${readFileSync(log, 'utf8').split('\n')[0]}\n`);
    const verify = await run(env, ['audit', 'verify']);
    expect(verify.exitCode).toBe(1);
    expect((await run(env, ['secret', 'create', 'app:c', '--data', '{}'])).exitCode).toBe(4);
  });

  test('a new store dressed up as an old one (schema_version set back) is refused, not migrated', async () => {
    const sy = await pgStore();
    const lease = await newLease(sy);
    await edit(sy, "UPDATE meta SET value = '1' WHERE key = 'schema_version'");
    await edit(sy, 'UPDATE leases SET username = ? WHERE id = ?', VICTIM, lease.lease_id);
    const result = await sy.run(['dynamic', 'lease', 'lookup', lease.lease_id]);
    expect({ exitCode: result.exitCode, stdout: result.stdout }).toEqual({ exitCode: 4, stdout: '' });
    expect(result.stderr).toMatch(/changed by someone without the key/);
    expect((await row<{ value: string }>(sy, "SELECT value FROM meta WHERE key = 'schema_version'")).value).toBe('1');
  });
});

describe('records put back (issue 16): a census replayed, older rows mixed with newer', () => {
  /** Copies of meta rows (and whole rows of other tables) now; the function puts each back as it was. */
  async function keep(sy: SyHome, keys: string[], rows: { table: string; where: string; param: string }[] = []): Promise<() => Promise<void>> {
    const meta = await ledger(sy, (db) => keys.map((key) => db.prepare('SELECT * FROM meta WHERE key = ?').get(key) as Record<string, unknown>));
    const kept = await ledger(sy, (db) => rows.map((r) => ({ ...r, rows: db.prepare(`SELECT * FROM ${r.table} WHERE ${r.where} = ?`).all(r.param) as Record<string, unknown>[] })));
    return () => ledger(sy, (db) => {
      for (const row of meta) db.prepare('UPDATE meta SET value = ? WHERE key = ?').run(row.value, row.key);
      for (const { table, where, param, rows: old } of kept) {
        db.prepare(`DELETE FROM ${table} WHERE ${where} = ?`).run(param);
        for (const r of old) db.prepare(`INSERT INTO ${table} (${Object.keys(r).join(', ')}) VALUES (${Object.keys(r).map(() => '?').join(', ')})`).run(...Object.values(r));
      }
    });
  }

  test.each([
    ['the older census of live leases', ['lease_census'], /its live leases/],
    ['the older census and generation', ['lease_census', 'generation'], /its generation counter/],
  ])('a live lease deleted and %s put back: the sweep, the next command, lookup and verify refuse; its user stays known', async (_, keys, names) => {
    const sy = await pgStore();
    const putBack = await keep(sy, keys);
    const lease = await newLease(sy);
    await putBack();
    await edit(sy, 'DELETE FROM leases WHERE id = ?', lease.lease_id);

    expectTampered(await sweep(sy), names);
    expectTampered(await sy.run(['secret', 'search'], { env: { SY_NO_SWEEP: '0' } }), names);
    expectTampered(await sy.run(['dynamic', 'lease', 'create', '--path', DYN]), names);
    expectTampered(await sy.run(['audit', 'verify']), names);
    expect(await pgExists(lease.username)).toBe(true);
  });

  test('and the audit head put back with them: the lines written since tell every write and verify', async () => {
    const sy = await pgStore();
    const putBack = await keep(sy, ['lease_census', 'generation', 'audit_head']);
    const lease = await newLease(sy);
    await putBack();
    await edit(sy, 'DELETE FROM leases WHERE id = ?', lease.lease_id);

    const swept = await sweep(sy);
    expect({ exitCode: swept.exitCode, stdout: swept.stdout }).toEqual({ exitCode: 4, stdout: '' });
    expect(swept.stderr).toMatch(/audit log was changed by someone without the key/);
    expect((await sy.run(['secret', 'create', 'app:after', '--data', '{"x": 1}'])).exitCode).toBe(4);
    const verify = await sy.run(['audit', 'verify']);
    expect(verify.exitCode).toBe(1);
    expect(JSON.parse(verify.stdout)).toMatchObject({ ok: false, reason: expect.stringMatching(/put back/) });
    expect(await pgExists(lease.username)).toBe(true);
  });

  test.each([
    ['the older census of secrets', ['secret_census'], /its secrets/],
    ['the older census and generation', ['secret_census', 'generation'], /its generation counter/],
  ])('a recipe rolled back to its older, wider version with %s: reading and issuing refuse, and no user is made', async (_, keys, names) => {
    const sy = await pgStore();
    const id = (await mustJson(sy, ['secret', 'describe', DYN])).id;
    const putBack = await keep(sy, keys, [{ table: 'secrets', where: 'id', param: id }, { table: 'secret_versions', where: 'secret_id', param: id }]);
    await mustJson(sy, ['secret', 'update', DYN, '--attributes', '{"grantPermissions": {"what": "SELECT", "where": "public.*"}}']);
    await putBack();
    const before = await pgUsers(PREFIX);

    expectTampered(await sy.run(['dynamic', 'lease', 'create', '--path', DYN]), names);
    expectTampered(await sy.run(['secret', 'read', DYN]), names);
    expectTampered(await sy.run(['audit', 'verify']), names);
    expect(await pgUsers(PREFIX)).toEqual(before);
  });

  test('a recipe rolled back to its older, wider version under the newer census: issuing refuses, and no user is made', async () => {
    const sy = await pgStore();
    const id = (await mustJson(sy, ['secret', 'describe', DYN])).id;
    const putBack = await keep(sy, [], [{ table: 'secrets', where: 'id', param: id }, { table: 'secret_versions', where: 'secret_id', param: id }]);
    await mustJson(sy, ['secret', 'update', DYN, '--attributes', '{"grantPermissions": {"what": "SELECT", "where": "public.*"}}']);
    await putBack();
    const before = await pgUsers(PREFIX);

    expectTampered(await sy.run(['dynamic', 'lease', 'create', '--path', DYN]), /its secrets/);
    expectTampered(await sy.run(['secret', 'read', DYN]), /its secrets/);
    expect(await pgUsers(PREFIX)).toEqual(before);
  });

  test('the audit head put back alone: every command that records and verify refuse, naming it', async () => {
    const sy = await pgStore();
    const putBack = await keep(sy, ['audit_head']);
    await mustJson(sy, ['secret', 'create', 'app:one', '--data', '{"x": 1}']);
    await putBack();
    expectTampered(await sy.run(['secret', 'create', 'app:two', '--data', '{"x": 1}']), /the audit log's end/);
    expectTampered(await sy.run(['secret', 'read', 'app:one']), /the audit log's end/);
    expectTampered(await sy.run(['audit', 'verify']), /the audit log's end/);
  });
});
