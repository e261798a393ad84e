/**
 * Bad input to `sy secret *` is refused with exit 2 or 3, one or two plain sentences and no
 * secret, and changes nothing in the store. Moved down from test/e2e/secrets.test.ts: the
 * same main() that bin/sy runs, in this process (runMain), with the same arguments and
 * environment, on the same secrets; the e2e file keeps the verbs, the formats, --output and
 * the --debug checks through the built bin/sy.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SEED_BASE, SEED_DYNAMIC } from '../../helpers/seeds.js';
import { type MainResult, runMain, testHome, type TestHome } from '../../helpers/context.js';

/** A distinctive value that must never reach stderr. */
const PASSWORD = 'Sup3r-S3cret-Value!';
const SEED_PASSWORD = 'P@ssword!';

const MYSQL_DATA = { host: 'mysql.internal', port: 3306, username: 'root', password: PASSWORD };
const pgDynamic = (grant: unknown, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: 'db:postgresql:root' }, grantPermissions: grant, ...extra });

let sy: TestHome & { home: string };
const run = (args: string[], options: { input?: string } = {}): Promise<MainResult> => runMain(args, sy.env, { stdin: options.input });

/** A user-facing failure: the exit code, nothing on stdout, one or two plain sentences, no stack, no secret. */
function expectFailure(result: MainResult, exitCode: number, message: RegExp): void {
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
  const search = await run(['secret', 'search', '--limit', '1000']);
  expect(search.exitCode).toBe(0);
  return JSON.parse(search.stdout);
}

const DYNAMIC_PATHS = new Set(['db:postgresql:dyn1']);

/** A secret's full contents (describe for dynamic ones, whose read issues a lease), or how reading it fails. */
async function contents(path: string): Promise<unknown> {
  const verb = DYNAMIC_PATHS.has(path) ? 'describe' : 'read';
  const result = await run(['secret', verb, path]);
  return { path, exitCode: result.exitCode, stdout: result.stdout };
}

/** What must not change when a command is refused: the whole listing and the affected secrets. */
async function snapshot(paths: string[]): Promise<unknown> {
  const reads = [];
  for (const path of paths) reads.push(await contents(path));
  return { listing: await listing(), reads };
}

/** The secrets the e2e file has made by the time it reaches these cases. */
beforeAll(async () => {
  const home = testHome();
  sy = { ...home, home: home.dir };
  const setup: [string[], string?][] = [
    [['init']],
    [['secret', 'create', '--body', `@${file('base.json', SEED_BASE)}`]],
    // The seed's server cannot be reached from here; the e2e file shows the warning.
    [['secret', 'create', '--no-verify', '--body', `@${file('dyn.json', SEED_DYNAMIC)}`]],
    [['secret', 'create', 'db/mysql/main', '--data', JSON.stringify(MYSQL_DATA), '--attributes', '{"type": "mysql"}', '--desc', 'mysql admin']],
    [['secret', 'create', 'app:config', '--data', '{"a": 1, "b": {"x": 1, "y": 2}}', '--desc', 'first']],
    [['secret', 'update', 'app:config', '--data', '{"b": {"y": 3}, "c": 4}', '--desc', 'second']],
  ];
  for (const [args, input] of setup) {
    const result = await run(args, { input });
    if (result.exitCode !== 0) throw new Error(`sy ${args.join(' ')}: ${result.stderr}`);
  }
});

afterAll(() => sy?.cleanup());

describe('sy secret: bad input is refused with exit 2 or 3 and changes nothing', () => {
  const link = (linkedSecret: string) =>
    JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret }, grantPermissions: { what: 'SELECT', where: '*.*' } });
  const malformed = `{"host": "h", "port": 5432, "username": "u", "password": "${PASSWORD}" "database": "x"}`;

  interface BadInput {
    name: string;
    args: () => string[];
    input?: string;
    exit: number;
    message: RegExp;
    /**
     * Existing secrets whose contents must be the same afterwards. The listing is always
     * compared, and shows any secret a refused create would have added.
     */
    affected: string[];
  }

  const cases: BadInput[] = [
    { name: 'malformed inline JSON', args: () => ['secret', 'create', 'db:pg:bad', '--data', malformed, '--attributes', '{"type": "postgresql"}'], exit: 2, message: /malformed/, affected: [] },
    { name: 'malformed JSON on stdin', args: () => ['secret', 'create', 'db:pg:bad', '--data', '-', '--attributes', '{"type": "postgresql"}'], input: `{"password": "${PASSWORD}`, exit: 2, message: /--data/, affected: [] },
    { name: 'malformed JSON in a --body file', args: () => ['secret', 'create', '--body', `@${file('bad-body.json', `{"path": "db:pg:bad", "data": ${malformed}}`)}`], exit: 2, message: /--body.*malformed|malformed.*--body/, affected: [] },
    { name: 'malformed JSON in an update', args: () => ['secret', 'update', 'db:mysql:main', '--data', `{"password": "${PASSWORD}x" `], exit: 2, message: /malformed/, affected: ['db:mysql:main'] },
    { name: 'JSON that is not an object', args: () => ['secret', 'create', 'app:array', '--data', `["${PASSWORD}"]`], exit: 2, message: /JSON object/, affected: [] },
    { name: 'an unreadable @file', args: () => ['secret', 'create', 'app:nofile', '--data', `@${join(sy.home, 'no-such-file.json')}`], exit: 2, message: /cannot be read/, affected: [] },
    { name: 'an unknown attributes.type', args: () => ['secret', 'create', 'db:oracle', '--data', JSON.stringify(MYSQL_DATA), '--attributes', '{"type": "oracle"}'], exit: 2, message: /oracle/, affected: [] },
    { name: 'a base secret without data.password', args: () => ['secret', 'create', 'db:pg:nopw', '--data', '{"host": "h", "port": 5432, "username": "u"}', '--attributes', '{"type": "postgres"}'], exit: 2, message: /data\.password/, affected: [] },
    { name: 'a base secret without data.host', args: () => ['secret', 'create', 'db:pg:nohost', '--data', JSON.stringify({ port: 5432, username: 'u', password: PASSWORD }), '--attributes', '{"type": "postgresql"}'], exit: 2, message: /data\.host/, affected: [] },
    { name: 'an update that removes data.password', args: () => ['secret', 'update', 'db:mysql:main', '--data', '{"password": null}'], exit: 2, message: /data\.password/, affected: ['db:mysql:main'] },
    { name: 'an --overwrite update without data.host', args: () => ['secret', 'update', 'db:mysql:main', '--overwrite', '--data', JSON.stringify({ port: 1, username: 'u', password: PASSWORD })], exit: 2, message: /data\.host/, affected: ['db:mysql:main'] },
    { name: 'a linkedSecret that does not exist', args: () => ['secret', 'create', 'db:dyn:x1', '--attributes', link('db:postgresql:missing')], exit: 3, message: /db:postgresql:missing/, affected: [] },
    { name: 'a linkedSecret that is a static secret', args: () => ['secret', 'create', 'db:dyn:x2', '--attributes', link('app:config')], exit: 2, message: /app:config/, affected: ['app:config'] },
    { name: 'a linkedSecret that is a dynamic secret', args: () => ['secret', 'create', 'db:dyn:x3', '--attributes', link('db:postgresql:dyn1')], exit: 2, message: /db:postgresql:dyn1/, affected: ['db:postgresql:dyn1'] },
    { name: 'grantPermissions.what "SELECT; DROP TABLE x"', args: () => ['secret', 'create', 'db:dyn:x4', '--attributes', pgDynamic({ what: 'SELECT; DROP TABLE x', where: '*.*' })], exit: 2, message: /grantPermissions\.what/, affected: [] },
    { name: 'grantPermissions.what with a quote', args: () => ['secret', 'create', 'db:dyn:x5', '--attributes', pgDynamic({ what: `SELECT' OR '1'='1`, where: '*.*' })], exit: 2, message: /grantPermissions\.what/, affected: [] },
    { name: 'grantPermissions.what with a backtick', args: () => ['secret', 'create', 'db:dyn:x6', '--attributes', pgDynamic({ what: 'SELECT`', where: '*.*' })], exit: 2, message: /grantPermissions\.what/, affected: [] },
    { name: 'grantPermissions.what with a -- comment', args: () => ['secret', 'create', 'db:dyn:x7', '--attributes', pgDynamic({ what: 'SELECT -- all', where: '*.*' })], exit: 2, message: /grantPermissions\.what/, affected: [] },
    { name: 'grantPermissions.what with a /* */ comment', args: () => ['secret', 'create', 'db:dyn:x8', '--attributes', pgDynamic({ what: 'SELECT /* x */', where: '*.*' })], exit: 2, message: /grantPermissions\.what/, affected: [] },
    { name: 'grantPermissions.what hidden in a list of grants', args: () => ['secret', 'create', 'db:dyn:x9', '--attributes', pgDynamic([{ what: 'SELECT', where: '*.*' }, { what: 'ALL; DROP ROLE postgres', where: '*.*' }])], exit: 2, message: /grantPermissions\.what/, affected: [] },
    { name: 'grantPermissions.where with a double quote', args: () => ['secret', 'create', 'db:dyn:x10', '--attributes', pgDynamic({ what: 'SELECT', where: 'public"; DROP TABLE x; --.*' })], exit: 2, message: /grantPermissions\.where/, affected: [] },
    { name: 'grantPermissions.where with a single quote', args: () => ['secret', 'create', 'db:dyn:x11', '--attributes', pgDynamic({ what: 'SELECT', where: `public.t'` })], exit: 2, message: /grantPermissions\.where/, affected: [] },
    { name: 'grantPermissions.where with backticks', args: () => ['secret', 'create', 'db:dyn:x12', '--attributes', pgDynamic({ what: 'SELECT', where: '`app`.`t`' })], exit: 2, message: /grantPermissions\.where/, affected: [] },
    { name: 'grantPermissions.where with a -- comment', args: () => ['secret', 'create', 'db:dyn:x13', '--attributes', pgDynamic({ what: 'SELECT', where: 'public.users--' })], exit: 2, message: /grantPermissions\.where/, affected: [] },
    { name: 'grantPermissions.where with a spaced -- comment', args: () => ['secret', 'create', 'db:dyn:x14', '--attributes', pgDynamic({ what: 'SELECT', where: 'public.users -- x' })], exit: 2, message: /grantPermissions\.where/, affected: [] },
    { name: 'grantPermissions.where with a /* */ comment', args: () => ['secret', 'create', 'db:dyn:x15', '--attributes', pgDynamic({ what: 'SELECT', where: 'public./**/users' })], exit: 2, message: /grantPermissions\.where/, affected: [] },
    { name: 'a userPrefix with SQL', args: () => ['secret', 'create', 'db:dyn:x16', '--attributes', pgDynamic({ what: 'SELECT', where: '*.*' }, { userPrefix: `x"; DROP ROLE postgres; --` })], exit: 2, message: /userPrefix/, affected: [] },
    { name: 'an invalid path with a space', args: () => ['secret', 'create', 'a b', '--data', '{}'], exit: 2, message: /path/, affected: [] },
    { name: 'an invalid path with an empty segment', args: () => ['secret', 'create', 'a::b', '--data', '{}'], exit: 2, message: /path/, affected: [] },
    { name: 'an invalid path with ..', args: () => ['secret', 'create', '../x', '--data', '{}'], exit: 2, message: /path/, affected: [] },
    { name: 'an invalid path in --body', args: () => ['secret', 'create', '--body', '{"path": "a b", "data": {}}'], exit: 2, message: /path/, affected: [] },
    { name: 'a duplicate path', args: () => ['secret', 'create', '--body', `@${file('base-again.json', SEED_BASE)}`], exit: 2, message: /already exists/, affected: ['db:postgresql:root'] },
    { name: 'a duplicate path in the / spelling', args: () => ['secret', 'create', 'db/mysql/main', '--data', JSON.stringify(MYSQL_DATA), '--attributes', '{"type": "mysql"}'], exit: 2, message: /already exists/, affected: ['db:mysql:main'] },
    { name: 'a missing version on read', args: () => ['secret', 'read', 'db:postgresql:root', '--version', '99'], exit: 3, message: /99/, affected: ['db:postgresql:root'] },
    { name: 'a missing version on rollback', args: () => ['secret', 'rollback', 'app:config', '--version', '99'], exit: 3, message: /99/, affected: ['app:config'] },
    { name: 'a version that is not a number', args: () => ['secret', 'read', 'app:config', '--version', 'latest'], exit: 2, message: /--version/, affected: ['app:config'] },
    { name: 'an unknown secret on read', args: () => ['secret', 'read', 'db:nope'], exit: 3, message: /db:nope/, affected: [] },
    { name: 'an unknown id on read', args: () => ['secret', 'read', '00000000-0000-4000-8000-000000000000'], exit: 3, message: /00000000-0000-4000-8000-000000000000/, affected: [] },
    { name: 'an unknown secret on describe', args: () => ['secret', 'describe', 'db:nope'], exit: 3, message: /db:nope/, affected: [] },
    { name: 'an unknown secret on update', args: () => ['secret', 'update', 'db:nope', '--data', '{"a": 1}'], exit: 3, message: /db:nope/, affected: [] },
    { name: 'an unknown secret on delete', args: () => ['secret', 'delete', 'db:nope'], exit: 3, message: /db:nope/, affected: [] },
    { name: 'an unknown secret on rollback', args: () => ['secret', 'rollback', 'db:nope'], exit: 3, message: /db:nope/, affected: [] },
    { name: 'a --limit out of range', args: () => ['secret', 'search', '--limit', '0'], exit: 2, message: /--limit/, affected: [] },
  ];

  // The state before each case is the state after the previous one, so each command costs
  // one listing (plus the secrets it touches) instead of two.
  let lastListing: unknown;
  const lastContents = new Map<string, unknown>();

  test.each(cases)('$name', async ({ args, input, exit, message, affected }) => {
    lastListing ??= await listing();
    const before = { listing: lastListing, reads: [] as unknown[] };
    for (const path of affected) before.reads.push(lastContents.get(path) ?? (await contents(path)));

    const result = await run(args(), { input });

    const after = await snapshot(affected);
    lastListing = (after as { listing: unknown }).listing;
    affected.forEach((path, i) => lastContents.set(path, (after as { reads: unknown[] }).reads[i]));
    expectFailure(result, exit, message);
    expect(after).toEqual(before);
  });
});
