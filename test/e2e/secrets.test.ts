/**
 * End-to-end tests of `sy secret *` through the built bin/sy, without a terminal: exit
 * code, stdout and stderr of every verb, the DSV seed secrets as documented, output
 * formats and files, and bad input that must leave the store exactly as it was.
 */
import { execa } from 'execa';
import { existsSync, lstatSync, readFileSync, readdirSync, readlinkSync, statSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { SEED_BASE, SEED_DYNAMIC } from '../helpers/seeds.js';
import { makeHome, type SyHome, type SyResult } from '../helpers/cli.js';

/** A distinctive value that must never reach stderr. */
const PASSWORD = 'Sup3r-S3cret-Value!';

const SEED_PASSWORD = 'P@ssword!';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

const MYSQL_DATA = { host: 'mysql.internal', port: 3306, username: 'root', password: PASSWORD };
const pgDynamic = (grant: unknown, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: 'db:postgresql:root' }, grantPermissions: grant, ...extra });

let sy: SyHome;
/** Every result that exited non-zero, checked at the end for leaked secret values. */
const failures: { args: string[]; result: SyResult }[] = [];

async function run(args: string[], options: { input?: string } = {}): Promise<SyResult> {
  const result = await sy.run(args, options);
  if (result.exitCode !== 0) failures.push({ args, result });
  return result;
}

/** Success: exit 0, nothing on stderr, JSON on stdout. */
async function ok<T = any>(args: string[], options: { input?: string } = {}): Promise<T> {
  const result = await run(args, options);
  expect({ args, exitCode: result.exitCode, stderr: result.stderr }).toEqual({ args, exitCode: 0, stderr: '' });
  return JSON.parse(result.stdout) as T;
}

/** A user-facing failure: the exit code, nothing on stdout, one or two plain sentences, no stack, no secret. */
function expectFailure(result: SyResult, exitCode: number, message: RegExp): void {
  expect({ exitCode: result.exitCode, stdout: result.stdout }).toEqual({ exitCode, stdout: '' });
  expect(result.stderr).toMatch(message);
  const lines = result.stderr.trimEnd().split('\n');
  expect(lines[0]).toMatch(/^sy: \S.*\.$/);
  expect(lines.length).toBeLessThanOrEqual(2);
  for (const line of lines) expect(line).toMatch(/\.$/);
  expect(result.stderr).not.toMatch(/^\s+at /m);
  expect(result.stderr).not.toMatch(/unexpected error|SyError|TypeError|SqliteError/i);
  expect(result.stderr).not.toContain(PASSWORD);
  expect(result.stderr).not.toContain(SEED_PASSWORD);
}

function file(name: string, content: string): string {
  const path = join(sy.home, name);
  writeFileSync(path, content);
  return path;
}

/** The listing of every secret (paths, versions, attributes, times): any create, update or delete shows in it. */
async function listing(): Promise<unknown> {
  const search = await sy.run(['secret', 'search', '--limit', '1000']);
  expect(search.exitCode).toBe(0);
  return JSON.parse(search.stdout);
}

/** A secret's full contents (describe for dynamic ones, whose read issues a lease), or how reading it fails. */
async function contents(path: string): Promise<unknown> {
  const verb = DYNAMIC_PATHS.has(path) ? 'describe' : 'read';
  const result = await sy.run(['secret', verb, path]);
  return { path, exitCode: result.exitCode, stdout: result.stdout };
}

const DYNAMIC_PATHS = new Set(['db:postgresql:dyn1', 'db:postgresql:dyn2', 'db:mysql:ro', 'db:mysql:old-ro']);

/** What must not change when a command is refused: the whole listing and the affected secrets. */
async function snapshot(paths: string[]): Promise<unknown> {
  const reads = [];
  for (const path of paths) reads.push(await contents(path));
  return { listing: await listing(), reads };
}

const paths = (list: { data: { path: string }[] }): string[] => list.data.map((s) => s.path).sort();

beforeAll(async () => {
  sy = await makeHome();
});

afterAll(() => sy?.cleanup());

describe('sy secret: the DSV seed secrets and the verbs', () => {
  let rootId: string;

  test('creates the seed base and dynamic secrets from --body @file exactly as documented', async () => {
    const base = await ok(['secret', 'create', '--body', `@${file('base.json', SEED_BASE)}`]);
    expect(base).toEqual({
      id: expect.stringMatching(UUID),
      path: 'db:postgresql:root',
      version: 1,
      description: 'postgresql root credentials',
      attributes: { type: 'postgresql' },
      created: expect.stringMatching(ISO_TIME),
      lastModified: expect.stringMatching(ISO_TIME),
    });
    rootId = base.id;

    // The seed's server (an RDS host name) cannot be reached from here: the recipe is stored
    // unchecked, with one line of warning.
    const stored = await run(['secret', 'create', '--body', `@${file('dyn.json', SEED_DYNAMIC)}`]);
    expect(stored.exitCode).toBe(0);
    expect(stored.stderr).toMatch(
      /^warning: db:postgresql:dyn1 was stored without checking its recipe: could not connect to PostgreSQL at database-1\.cjqpjhgsaz53\.us-east-1\.rds\.amazonaws\.com:3306: [^\n]+\.$/,
    );
    expect(stored.stderr).not.toContain(SEED_PASSWORD);
    const dynamic = JSON.parse(stored.stdout);
    expect(dynamic).not.toHaveProperty('data');
    expect(dynamic).toMatchObject({
      path: 'db:postgresql:dyn1',
      version: 1,
      attributes: {
        grantPermissions: { what: 'SELECT', where: '*.*' },
        linkConfig: { linkType: 'dynamic', linkedSecret: 'db:postgresql:root' },
        pool: 'pool1',
        ttl: 1000,
      },
    });

    const read = await ok(['secret', 'read', 'db:postgresql:root']);
    expect(read).toEqual({ ...base, data: { host: 'database-1.cjqpjhgsaz53.us-east-1.rds.amazonaws.com', password: SEED_PASSWORD, port: 3306, username: 'admin' } });
  });

  test('creates secrets from --data, --attributes and --desc, canonicalising a / path', async () => {
    const base = await ok(['secret', 'create', 'db/mysql/main', '--data', JSON.stringify(MYSQL_DATA), '--attributes', '{"type": "mysql"}', '--desc', 'mysql admin']);
    expect(base).toMatchObject({ path: 'db:mysql:main', version: 1, description: 'mysql admin', attributes: { type: 'mysql' } });
    expect(base).not.toHaveProperty('data');

    // These bases name hosts that do not exist: the test is about the store, not the server.
    const dynamic = await ok([
      'secret', 'create', '--path', 'db:mysql:ro', '--no-verify',
      '--attributes', JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: 'db/mysql/main' }, grantPermissions: { what: 'SELECT, INSERT', where: 'app.*' }, ttl: 600 }),
      '--data', '{}',
    ]);
    expect(dynamic).toMatchObject({ path: 'db:mysql:ro', version: 1 });

    const dsvDyn2 = await ok(['secret', 'create', 'db:postgresql:dyn2', '--no-verify', '--attributes', pgDynamic([{ what: 'SELECT', where: 'public.*' }, { what: 'INSERT, UPDATE', where: 'app.orders' }], { userPrefix: 'ro_', maxTtl: 7200 })]);
    expect(dsvDyn2.attributes.grantPermissions).toHaveLength(2);
  });

  test('reads by canonical path, by / spelling, by --path and by id, all alike', async () => {
    const byPath = await ok(['secret', 'read', 'db:postgresql:root']);
    expect(await ok(['secret', 'read', 'db/postgresql/root'])).toEqual(byPath);
    expect(await ok(['secret', 'read', '--path', 'db/postgresql:root'])).toEqual(byPath);
    expect(await ok(['secret', 'read', rootId])).toEqual(byPath);
    expect(await ok(['secret', 'read', rootId.toUpperCase()])).toEqual(byPath);
    expect(byPath.data.password).toBe(SEED_PASSWORD);
  });

  test('reads JSON from stdin with --data - and --body -', async () => {
    const created = await ok(['secret', 'create', 'app:stdin', '--data', '-'], { input: JSON.stringify({ token: PASSWORD, n: 1 }) });
    expect(created).toMatchObject({ path: 'app:stdin', version: 1 });
    expect((await ok(['secret', 'read', 'app:stdin'])).data).toEqual({ token: PASSWORD, n: 1 });

    await ok(['secret', 'create', '--body', '-'], { input: `{"path": "app/body", "description": "from stdin", "data": {"k": "v",},}` });
    expect(await ok(['secret', 'read', 'app:body'])).toMatchObject({ path: 'app:body', description: 'from stdin', data: { k: 'v' } });
  });

  test('describe prints everything but data', async () => {
    const described = await ok(['secret', 'describe', 'db:mysql:main']);
    const read = await ok(['secret', 'read', 'db:mysql:main']);
    expect(described).not.toHaveProperty('data');
    const { data, ...rest } = read;
    expect(data.password).toBe(PASSWORD);
    expect(described).toEqual(rest);
    expect(JSON.stringify(described)).not.toContain(PASSWORD);
    expect(await ok(['secret', 'describe', 'db:postgresql:dyn1'])).toMatchObject({ path: 'db:postgresql:dyn1', attributes: { pool: 'pool1' } });
  });

  test('update merges data, --overwrite replaces it, each adds a version, --version reads an old one', async () => {
    const v1 = await ok(['secret', 'create', 'app:config', '--data', '{"a": 1, "b": {"x": 1, "y": 2}}', '--desc', 'first']);
    expect(v1.version).toBe(1);

    const v2 = await ok(['secret', 'update', 'app:config', '--data', '{"b": {"y": 3}, "c": 4}', '--desc', 'second']);
    expect(v2).toMatchObject({ id: v1.id, version: 2, description: 'second' });
    expect(v2).not.toHaveProperty('data');
    expect((await ok(['secret', 'read', 'app:config'])).data).toEqual({ a: 1, b: { x: 1, y: 3 }, c: 4 });

    const v3 = await ok(['secret', 'update', 'app/config', '--data', '{"z": true}', '--overwrite']);
    expect(v3).toMatchObject({ id: v1.id, version: 3, description: 'second' });
    expect(await ok(['secret', 'read', 'app:config'])).toMatchObject({ version: 3, data: { z: true } });
    expect((await ok(['secret', 'read', 'app:config'])).data).toEqual({ z: true });

    expect(await ok(['secret', 'read', 'app:config', '--version', '1'])).toMatchObject({ version: 1, description: 'first', data: { a: 1, b: { x: 1, y: 2 } } });
    expect(await ok(['secret', 'read', v1.id, '--version', '2'])).toMatchObject({ version: 2, data: { a: 1, b: { x: 1, y: 3 }, c: 4 } });

    // A base secret keeps its required fields through a merge.
    const mysql = await ok(['secret', 'update', 'db:mysql:main', '--data', '{"port": 3307}']);
    expect(mysql.version).toBe(2);
    expect((await ok(['secret', 'read', 'db:mysql:main'])).data).toEqual({ ...MYSQL_DATA, port: 3307 });
  });

  test('rollback adds a version equal to the previous one, or to --version N', async () => {
    const v4 = await ok(['secret', 'rollback', 'app:config']);
    expect(v4).toMatchObject({ version: 4, description: 'second' });
    expect(v4).not.toHaveProperty('data');
    const v2 = await ok(['secret', 'read', 'app:config', '--version', '2']);
    const now4 = await ok(['secret', 'read', 'app:config']);
    expect({ data: now4.data, description: now4.description, attributes: now4.attributes }).toEqual({ data: v2.data, description: v2.description, attributes: v2.attributes });

    const v5 = await ok(['secret', 'rollback', '--path', 'app:config', '--version', '1']);
    expect(v5).toMatchObject({ version: 5, description: 'first' });
    expect(await ok(['secret', 'read', 'app:config'])).toMatchObject({ version: 5, data: { a: 1, b: { x: 1, y: 2 } } });
    // Earlier versions are kept.
    expect((await ok(['secret', 'read', 'app:config', '--version', '3'])).data).toEqual({ z: true });
  });

  test('search finds paths containing the query and honours --limit', async () => {
    expect(paths(await ok(['secret', 'search', 'db:postgresql']))).toEqual(['db:postgresql:dyn1', 'db:postgresql:dyn2', 'db:postgresql:root']);
    expect(paths(await ok(['secret', 'search', '--query', 'mysql']))).toEqual(['db:mysql:main', 'db:mysql:ro']);
    expect(paths(await ok(['secret', 'search', '--query', 'nothing-like-this']))).toEqual([]);
    const all = await ok(['secret', 'search', '--limit', '1000']);
    expect(paths(all)).toEqual(['app:body', 'app:config', 'app:stdin', 'db:mysql:main', 'db:mysql:ro', 'db:postgresql:dyn1', 'db:postgresql:dyn2', 'db:postgresql:root']);
    for (const secret of all.data) expect(secret).not.toHaveProperty('data');
    expect(JSON.stringify(all)).not.toContain(PASSWORD);
    const limited = await ok(['secret', 'search', 'db', '--limit', '2']);
    expect(limited.data).toHaveLength(2);
    expect(await ok(['secret', 'search', '--limit', '1'])).toEqual({ data: [expect.objectContaining({ path: expect.any(String) })] });
  });

  test('--search-links lists exactly the dynamic secrets linked to the given base', async () => {
    expect(paths(await ok(['secret', 'search', '--search-links', '--query', 'db:postgresql:root']))).toEqual(['db:postgresql:dyn1', 'db:postgresql:dyn2']);
    expect(paths(await ok(['secret', 'search', '--search-links', 'db/mysql/main']))).toEqual(['db:mysql:ro']);
    expect(paths(await ok(['secret', 'search', '--search-links', 'app:config']))).toEqual([]);
    // Not a substring match: a prefix of a base path links to nothing.
    expect(paths(await ok(['secret', 'search', '--search-links', 'db:postgresql']))).toEqual([]);
  });

  test('--format yaml, table and env print the same secret', async () => {
    const json = await ok(['secret', 'read', 'db:mysql:main']);

    const yaml = await run(['secret', 'read', 'db:mysql:main', '--format', 'yaml']);
    expect({ exitCode: yaml.exitCode, stderr: yaml.stderr }).toEqual({ exitCode: 0, stderr: '' });
    expect(parseYaml(yaml.stdout)).toEqual(json);

    const table = await run(['secret', 'read', 'db:mysql:main', '--format', 'table']);
    expect({ exitCode: table.exitCode, stderr: table.stderr }).toEqual({ exitCode: 0, stderr: '' });
    expect(table.stdout).toMatch(/^KEY\s+VALUE$/m);
    expect(table.stdout).toMatch(new RegExp(`^data\\.password\\s+${PASSWORD}$`, 'm'));
    expect(table.stdout).toMatch(/^path\s+db:mysql:main$/m);

    const env = await run(['secret', 'read', 'db:mysql:main', '--format', 'env']);
    expect({ exitCode: env.exitCode, stderr: env.stderr }).toEqual({ exitCode: 0, stderr: '' });
    expect(env.stdout).toMatch(/^export [A-Z_][A-Z0-9_]*='/m);
    const sourced = await execa('sh', ['-c', `${env.stdout}\nprintf '%s|%s|%s' "$PASSWORD" "$HOST" "$PORT"`]);
    expect(sourced.stdout).toBe(`${PASSWORD}|mysql.internal|3307`);
  });

  test('--format env quotes hostile values so a shell reads them back verbatim', async () => {
    const hostile = `it's "$HOME" $(touch ${join(sy.home, 'pwned')}) \`id\`; x`;
    await ok(['secret', 'create', 'app:hostile', '--data', '-'], { input: JSON.stringify({ token: hostile }) });
    const env = await run(['secret', 'read', 'app:hostile', '--format', 'env']);
    expect(env.exitCode).toBe(0);
    const sourced = await execa('sh', ['-c', `${env.stdout}\nprintf '%s' "$TOKEN"`]);
    expect(sourced.stdout).toBe(hostile);
    expect(existsSync(join(sy.home, 'pwned'))).toBe(false);
    expect((await run(['secret', 'delete', 'app:hostile'])).exitCode).toBe(0);
  });

  test('--filter prints one raw value; an unknown field exits 2', async () => {
    const password = await run(['secret', 'read', 'db:mysql:main', '--filter', 'data.password']);
    // execa strips the final newline; the --output test below sees the raw bytes.
    expect(password).toEqual({ exitCode: 0, stdout: PASSWORD, stderr: '' });
    const seed = await run(['secret', 'read', 'db/postgresql/root', '--filter', 'data.password']);
    expect(seed).toEqual({ exitCode: 0, stdout: SEED_PASSWORD, stderr: '' });
    expect((await run(['secret', 'read', 'db:mysql:main', '--filter', 'data.port'])).stdout).toBe('3307');
    expect((await run(['secret', 'describe', 'db:mysql:main', '--filter', 'path'])).stdout).toBe('db:mysql:main');
    expect((await run(['secret', 'search', 'db:mysql:main', '--filter', 'data.0.path'])).stdout).toBe('db:mysql:main');

    expectFailure(await run(['secret', 'read', 'db:mysql:main', '--filter', 'data.nope']), 2, /data\.nope/);
    expectFailure(await run(['secret', 'read', 'db:mysql:main', '--filter', 'nope']), 2, /nope/);
    // describe has no data, so no data.password either.
    expectFailure(await run(['secret', 'describe', 'db:mysql:main', '--filter', 'data.password']), 2, /data\.password/);
  });

  test('--output writes a 0600 file atomically and prints nothing on stdout', async () => {
    const target = join(sy.home, 'creds.json');
    writeFileSync(target, 'old content');
    chmodSync(target, 0o644);
    const result = await run(['secret', 'read', 'db:mysql:main', '--output', target]);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe('');
    expect(result.stderr).not.toContain(PASSWORD);
    expect(statSync(target).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(target, 'utf8'))).toEqual(await ok(['secret', 'read', 'db:mysql:main']));

    const fresh = join(sy.home, 'fresh.json');
    expect((await run(['secret', 'read', 'db:mysql:main', '--filter', 'data.password', '-o', fresh])).exitCode).toBe(0);
    expect(readFileSync(fresh, 'utf8')).toBe(`${PASSWORD}\n`);
    expect(statSync(fresh).mode & 0o777).toBe(0o600);
    expect(readdirSync(sy.home).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });

  test('--output refuses a symlink and leaves its target untouched', async () => {
    const victim = join(sy.home, 'victim.txt');
    const link = join(sy.home, 'link.json');
    writeFileSync(victim, 'do not overwrite\n');
    chmodSync(victim, 0o644);
    symlinkSync(victim, link);
    expectFailure(await run(['secret', 'read', 'db:mysql:main', '--output', link]), 2, /symbolic link/);
    expect(readFileSync(victim, 'utf8')).toBe('do not overwrite\n');
    expect(statSync(victim).mode & 0o777).toBe(0o644);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readlinkSync(link)).toBe(victim);
    expect(readdirSync(sy.home).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });

  test('delete is refused while a dynamic secret links to the base, and needs --yes with --force', async () => {
    await ok(['secret', 'create', 'db:mysql:old', '--data', JSON.stringify(MYSQL_DATA), '--attributes', '{"type": "mariadb"}']);
    await ok(['secret', 'create', 'db:mysql:old-ro', '--no-verify', '--attributes', JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: 'db:mysql:old' }, grantPermissions: { what: 'SELECT', where: '*.*' } })]);
    const before = await snapshot(['db:mysql:old', 'db:mysql:old-ro']);

    expectFailure(await run(['secret', 'delete', 'db:mysql:old']), 2, /db:mysql:old-ro/);
    expect(await snapshot(['db:mysql:old', 'db:mysql:old-ro'])).toEqual(before);

    const noYes = await run(['secret', 'delete', 'db:mysql:old', '--force']);
    expectFailure(noYes, 2, /--yes/);
    expect(await snapshot(['db:mysql:old', 'db:mysql:old-ro'])).toEqual(before);

    const forced = await run(['secret', 'delete', 'db/mysql/old', '--force', '--yes']);
    expect(forced.exitCode).toBe(0);
    expect(forced.stdout).toBe('');
    expectFailure(await run(['secret', 'read', 'db:mysql:old']), 3, /db:mysql:old/);

    const plain = await run(['secret', 'delete', '--path', 'app:body']);
    expect({ exitCode: plain.exitCode, stdout: plain.stdout }).toEqual({ exitCode: 0, stdout: '' });
    expectFailure(await run(['secret', 'describe', 'app:body']), 3, /app:body/);
  });
});

describe('sy secret: bad input is refused with exit 2 or 3 and changes nothing', () => {
  // The table of refused input runs in-process: test/unit/cli/secret-refusals.test.ts.
  const malformed = `{"host": "h", "port": 5432, "username": "u", "password": "${PASSWORD}" "database": "x"}`;

  test('with --debug a failing command may show a stack but never the secret value', async () => {
    const withSecret: { args: string[]; input?: string; exit: number }[] = [
      { args: ['secret', 'create', 'db:pg:bad', '--data', malformed, '--attributes', '{"type": "postgresql"}'], exit: 2 },
      { args: ['secret', 'create', 'db:pg:bad', '--data', '-', '--attributes', '{"type": "postgresql"}'], input: `{"password": "${PASSWORD}", }}`, exit: 2 },
      { args: ['secret', 'create', 'db:pg:nohost', '--data', JSON.stringify({ port: 5432, username: 'u', password: PASSWORD }), '--attributes', '{"type": "postgresql"}'], exit: 2 },
      { args: ['secret', 'create', 'db:pg:port', '--data', JSON.stringify({ host: 'h', port: PASSWORD, username: 'u', password: PASSWORD }), '--attributes', '{"type": "postgresql"}'], exit: 2 },
      { args: ['secret', 'update', 'db:mysql:main', '--data', JSON.stringify({ host: `bad host ${PASSWORD}` })], exit: 2 },
      { args: ['secret', 'create', 'db:mysql:main', '--data', JSON.stringify(MYSQL_DATA), '--attributes', '{"type": "mysql"}'], exit: 2 },
      { args: ['secret', 'read', 'db:mysql:main', '--output', join(sy.home, 'no-such-dir', 'x.json')], exit: 2 },
    ];
    for (const { args, input, exit } of withSecret) {
      for (const debug of [false, true]) {
        const result = await run(debug ? [...args, '--debug'] : args, { input });
        expect({ args, debug, exitCode: result.exitCode, stdout: result.stdout }).toEqual({ args, debug, exitCode: exit, stdout: '' });
        expect(result.stderr).toMatch(/^sy: /);
        expect(result.stderr).not.toContain(PASSWORD);
        expect(result.stderr).not.toContain('S3cret');
      }
    }
  });

  test('no failing command in this file printed a secret value on stderr', () => {
    // The table of refused input, checked for leaks case by case, runs in the unit tier.
    expect(failures.length).toBeGreaterThan(20);
    const leaks = failures.filter(({ result }) => result.stderr.includes(PASSWORD) || result.stderr.includes(SEED_PASSWORD) || result.stdout.includes(PASSWORD));
    expect(leaks.map(({ args }) => args.join(' '))).toEqual([]);
  });
});
