/**
 * `scripts/quickstart.sh`, the README's first command, run as a newcomer runs it: from the
 * checkout, with an environment of its own (no SY_* variable, a fresh HOME and TMPDIR), on
 * the machine's PostgreSQL at 127.0.0.1:5432 (postgres, trust). Its lease must be one the
 * newcomer can go on using: the export line it prints opens its store, and revoking the
 * lease with it drops the role.
 */
import { execa } from 'execa';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freshKey, ROOT } from '../helpers/cli.js';
import { localPgQuery, SY_MARKER } from '../helpers/db.js';

let dir: string;
const made: string[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sy-quickstart-'));
});

afterAll(async () => {
  for (const role of made) {
    await localPgQuery(`DROP OWNED BY ${pg.escapeIdentifier(role)}`).catch(() => undefined);
    await localPgQuery(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(role)}`).catch(() => undefined);
  }
  rmSync(dir, { recursive: true, force: true });
});

const roleExists = async (name: string) => (await localPgQuery('SELECT 1 FROM pg_roles WHERE rolname = $1', [name])).length === 1;

/** A newcomer's shell: PATH and a HOME and TMPDIR of the test's, nothing of sy's. */
function newcomerEnv(extra: Record<string, string> = {}): Record<string, string> {
  const home = join(dir, 'home');
  const tmp = join(dir, 'tmp');
  mkdirSync(home, { recursive: true });
  mkdirSync(tmp, { recursive: true });
  return { PATH: String(process.env.PATH), HOME: home, TMPDIR: tmp, ...extra };
}

async function quickstart(env: Record<string, string>) {
  const result = await execa(join(ROOT, 'scripts/quickstart.sh'), [], { cwd: ROOT, env, extendEnv: false, reject: false, stdin: 'ignore', timeout: 120_000 });
  return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
}

test('the lease it prints can be revoked with the export line it prints', async () => {
  const env = newcomerEnv();
  const result = await quickstart(env);
  if (result.exitCode !== 0) throw new Error(`quickstart exited ${result.exitCode}: ${result.stderr}`);
  const lease = JSON.parse(result.stdout);
  made.push(lease.username);
  expect(lease).toMatchObject({ path: 'db:postgresql:dyn1', engine: 'postgresql', host: '127.0.0.1', port: 5432 });
  expect(lease.username).toMatch(SY_MARKER);
  expect(await roleExists(lease.username)).toBe(true);

  // The key itself is never printed: the line names a file that holds it.
  const exportLine = result.stderr.split('\n').find((line) => /^\s*export SY_HOME=/.test(line));
  expect(exportLine).toMatch(/^\s*export SY_HOME=\S+ SY_MASTER_KEY_FILE=\S+$/);
  const keyFile = /SY_MASTER_KEY_FILE=(\S+)/.exec(exportLine!)![1];
  expect(statSync(keyFile).mode & 0o777).toBe(0o600);
  expect(result.stderr).toContain(`./bin/sy dynamic lease revoke ${lease.lease_id}`);

  const revoke = await execa('bash', ['--norc', '--noprofile', '-c', `${exportLine!.trim()}; ./bin/sy dynamic lease revoke ${lease.lease_id} --format json`], {
    cwd: ROOT, env, extendEnv: false, reject: false, stdin: 'ignore',
  });
  expect({ exitCode: revoke.exitCode, stderr: String(revoke.stderr) }).toEqual({ exitCode: 0, stderr: '' });
  expect(JSON.parse(String(revoke.stdout))).toMatchObject({ lease_id: lease.lease_id, state: 'revoked' });
  expect(await roleExists(lease.username)).toBe(false);
});

test("it makes its own store, whatever the caller's SY_HOME and key say", async () => {
  const theirs = join(dir, 'their-store');
  mkdirSync(theirs);
  const result = await quickstart(newcomerEnv({ SY_HOME: theirs, SY_MASTER_KEY: freshKey(), SY_PASSPHRASE: 'not-this-one' }));
  if (result.exitCode !== 0) throw new Error(`quickstart exited ${result.exitCode}: ${result.stderr}`);
  const lease = JSON.parse(result.stdout);
  made.push(lease.username);
  expect(readdirSync(theirs)).toEqual([]);
  expect(result.stderr).not.toContain(theirs);
  const home = /export SY_HOME=(\S+)/.exec(result.stderr)![1];
  expect(existsSync(join(home, 'sy.db'))).toBe(true);
});
