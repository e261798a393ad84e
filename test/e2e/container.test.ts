/**
 * The Kubernetes init container without Docker: a store prepared elsewhere is mounted
 * read-only, copied into an empty SY_HOME, and `sy dynamic lease create --record-uid ...
 * --output /shared/db-creds.json` runs with nothing but PATH, SY_HOME, SY_MASTER_KEY and
 * SY_CLIENT_ID: no HOME, no D-Bus, no terminal, stdin closed. When the tests run as root,
 * the "container" runs as a uid with no passwd entry (as `runAsUser` does), so the
 * read-only mount really is read-only to it: the SQLite store of one machine, copied into a
 * pod. (The Kubernetes examples use the shared store instead: test/unit/examples.test.ts
 * checks them, test/e2e/dockerfile.test.ts the image.) Target: the machine's PostgreSQL on
 * 127.0.0.1:5432 (postgres, trust).
 */
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import pg from 'pg';
import { makeHome, ROOT, type SyHome } from '../helpers/cli.js';
import { LOCAL_PG, localPgQuery, pgConnect, tag } from '../helpers/db.js';

const T = tag();
const DB = `sy_e2e_ctr_${T}`;
const PREFIX = `k${T}_`;
const CLIENT_ID = `myapp/db-credential-refresh-${T}`;
const asRoot = process.getuid?.() === 0;

/** A uid with no passwd entry, like an arbitrary `runAsUser`. */
function unknownUid(): number {
  const known = new Set(readFileSync('/etc/passwd', 'utf8').split('\n').map((line) => Number(line.split(':')[2])));
  let uid = 4242;
  while (known.has(uid)) uid++;
  return uid;
}

/** Fails with the command's stderr in the message when the exit status is not `code`. */
function expectStatus(result: { exitCode?: number; stderr: unknown }, code: number): void {
  if (result.exitCode !== code) throw new Error(`exit status ${result.exitCode}, expected ${code}; stderr:\n${String(result.stderr)}`);
}

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

let sy: SyHome;
let dynamicId: string;
let base: string;
/** The read-only "Secret mount" holding sy.db. */
let roDir: string;
let uid: number | undefined;
let roHash: string;
/** Directories made read-only (0555), opened again for the cleanup. */
const readOnlyDirs: string[] = [];
/** SY_HOME of each container run, for the cleanup. */
const containerHomes: string[] = [];

/** A fresh writable directory owned by the container's user. */
function volume(name: string): string {
  const dir = join(base, name);
  mkdirSync(dir, { mode: 0o700 });
  if (uid !== undefined) chownSync(dir, uid, uid);
  return dir;
}

/** Runs `sh -c script` as the init container would: only `env` (plus PATH), no tty, stdin closed. */
async function container(script: string, env: Record<string, string>) {
  const result = await execa('sh', ['-c', script], {
    env: { PATH: `${join(ROOT, 'bin')}:${process.env.PATH}`, ...env },
    extendEnv: false,
    reject: false,
    stdin: 'ignore',
    timeout: 30_000,
    ...(uid !== undefined ? { uid, gid: uid } : {}),
  });
  return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
}

beforeAll(async () => {
  await localPgQuery(`CREATE DATABASE ${pg.escapeIdentifier(DB)}`);
  await localPgQuery('CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2), (3)', [], DB);
  // The store, prepared "on the admin's machine".
  sy = await makeHome();
  for (const [path, attributes, data] of [
    ['db:postgresql:root', { type: 'postgresql' }, { host: LOCAL_PG.host, port: LOCAL_PG.port, username: LOCAL_PG.user, password: 'unused-trust', database: DB }],
    ['db:postgresql:app', { linkConfig: { linkType: 'dynamic', linkedSecret: 'db:postgresql:root' }, grantPermissions: { what: 'SELECT', where: '*.*' }, ttl: 600, userPrefix: PREFIX }, {}],
  ] as const) {
    const created = await sy.run(['secret', 'create', path, '--attributes', JSON.stringify(attributes), '--data', JSON.stringify(data)]);
    if (created.exitCode !== 0) throw new Error(`creating ${path}: ${created.stderr}`);
  }
  dynamicId = (await sy.json(['secret', 'describe', 'db:postgresql:app'])).id;

  base = mkdtempSync(join(tmpdir(), 'sy-container-'));
  chmodSync(base, 0o755);
  uid = asRoot ? unknownUid() : undefined;
  roDir = join(base, 'sy-store');
  mkdirSync(roDir);
  copyFileSync(join(sy.env.SY_HOME, 'sy.db'), join(roDir, 'sy.db'));
  chmodSync(join(roDir, 'sy.db'), 0o444);
  chmodSync(roDir, 0o555);
  readOnlyDirs.push(roDir);
  roHash = sha256(join(roDir, 'sy.db'));
});

afterAll(async () => {
  for (const home of containerHomes) {
    if (existsSync(join(home, 'sy.db'))) {
      // As the container's user: sy refuses a SY_HOME that belongs to someone else, root included.
      await container('sy dynamic lease revoke --prefix db --yes', { SY_HOME: home, SY_MASTER_KEY: sy.env.SY_MASTER_KEY, SY_NO_SWEEP: '1' });
    }
  }
  sy?.cleanup();
  if (base) {
    for (const dir of readOnlyDirs) chmodSync(dir, 0o755);
    rmSync(base, { recursive: true, force: true });
  }
  const left = await localPgQuery<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)', [PREFIX]);
  for (const { rolname } of left) {
    await localPgQuery(`DROP OWNED BY ${pg.escapeIdentifier(rolname)}`, [], DB).catch(() => undefined);
    await localPgQuery(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(rolname)}`).catch(() => undefined);
  }
  await localPgQuery(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(DB)} WITH (FORCE)`);
});

/** Checks a creds file: 0600, owned by the container's user, and a lease that logs in. */
async function expectWorkingCreds(file: string): Promise<{ lease_id: string; username: string; password: string }> {
  const stat = statSync(file);
  expect((stat.mode & 0o777).toString(8)).toBe('600');
  if (uid !== undefined) expect(stat.uid).toBe(uid);
  const lease = JSON.parse(readFileSync(file, 'utf8'));
  expect(lease).toMatchObject({ record_uid: dynamicId, path: 'db:postgresql:app', engine: 'postgresql', host: '127.0.0.1', port: 5432, database: DB, lease_duration: 3600, renewable: true });
  expect(Date.parse(lease.expires_at) - Date.parse(lease.created_at)).toBe(3_600_000);
  const client = await pgConnect(lease.connection_string);
  try {
    const row = (await client.query('SELECT current_user AS who, (SELECT count(*)::int FROM t) AS n')).rows[0];
    expect(row).toEqual({ who: lease.username, n: 3 });
  } finally {
    await client.end();
  }
  return lease;
}

describe('the init container, without Docker', () => {
  // The mount is 0555 with sy.db 0444 (a Secret with defaultMode 0444), and the container is
  // not root: `cp` gives a 0444 copy, which sy, owning it, must still be able to use.
  test('copies the read-only store (0444) into an empty SY_HOME and writes a working 0600 lease, with nothing prompted', async () => {
    const home = volume('sy-home');
    containerHomes.push(home);
    const shared = volume('shared');
    const creds = join(shared, 'db-creds.json');
    const script = `cp ${roDir}/sy.db "$SY_HOME/sy.db" && sy dynamic lease create --record-uid ${dynamicId} --ttl 3600 --output ${creds}`;
    const started = Date.now();
    const result = await container(script, { SY_HOME: home, SY_MASTER_KEY: sy.env.SY_MASTER_KEY, SY_CLIENT_ID: CLIENT_ID });
    expectStatus(result, 0);
    expect(Date.now() - started).toBeLessThan(15_000);
    // Data went to the file; stderr has at most a notice, no prompt.
    expect(result.stdout).toBe('');
    expect(result.stderr).not.toMatch(/\?|passphrase|keychain/i);
    const lease = await expectWorkingCreds(creds);
    expect(result.stderr).not.toContain(lease.password);
    expect(readdirSync(shared)).toEqual(['db-creds.json']);

    // The mounted store is untouched; the copy holds the lease, and the audit log names the client.
    expect(sha256(join(roDir, 'sy.db'))).toBe(roHash);
    const list = await container('sy dynamic lease list --format json', { SY_HOME: home, SY_MASTER_KEY: sy.env.SY_MASTER_KEY, SY_CLIENT_ID: CLIENT_ID });
    expect(JSON.parse(list.stdout).data).toEqual([expect.objectContaining({ lease_id: lease.lease_id, username: lease.username, state: 'active' })]);
    const audit = readFileSync(join(home, 'audit.log'), 'utf8');
    const created = audit.trim().split('\n').map((line) => JSON.parse(line)).find((event) => event.action === 'lease.create');
    expect(created).toMatchObject({ actor: CLIENT_ID, lease_id: lease.lease_id, outcome: 'success' });
    expect(audit).not.toContain(lease.password);
  });

  test('without SY_HOME and without HOME it exits at once, naming SY_HOME, and writes nothing', async () => {
    const shared = volume('shared-nohome');
    const script = `sy dynamic lease create --record-uid ${dynamicId} --ttl 3600 --output ${shared}/db-creds.json`;
    const result = await container(script, { SY_MASTER_KEY: sy.env.SY_MASTER_KEY, SY_CLIENT_ID: CLIENT_ID });
    // As a uid with no passwd entry there is no home at all: bad usage. (With a passwd home,
    // sy looks there and finds no store: exit 4, with the same advice.)
    expect({ exitCode: result.exitCode, stderr: result.stderr }).toEqual({ exitCode: uid !== undefined ? 2 : 4, stderr: expect.stringContaining('SY_HOME') });
    expect(readdirSync(shared)).toEqual([]);
  });
});
