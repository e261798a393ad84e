/**
 * Input that sy must refuse with exit 2 and one plain sentence, leaving the store as it
 * was: JSON nested too deep or too large (inline, @file, stdin), a SY_HOME that is a file,
 * a path that could be mistaken for an id, attribute names sy does not know (with the
 * nearest known one as a hint), and commander's own usage errors. Moved down from
 * test/e2e/input.test.ts: the same main() that bin/sy runs, in this process (runMain), with
 * the same arguments and environment; the e2e file keeps real pipes and a few of these
 * through the built bin/sy.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type MainResult, runMain, testHome, type TestHome } from '../../helpers/context.js';

const PASSWORD = 'Inp-S3cret-Value!';

let home: TestHome;
const sy = (args: string[], input?: string): Promise<MainResult> => runMain(args, home.env, { stdin: input });

/** Exit 2, nothing on stdout, one line `sy: ...` ending a sentence, no stack, no secret. */
function expectUsageError(result: MainResult, message: RegExp): void {
  expect({ exitCode: result.exitCode, stdout: result.stdout }).toEqual({ exitCode: 2, stdout: '' });
  const lines = result.stderr.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^sy: \S.*[.?]$/);
  expect(lines[0]).toMatch(message);
  expect(result.stderr).not.toMatch(/unexpected error|^error:|\bat .*\.js:\d+/im);
  expect(result.stderr).not.toContain(PASSWORD);
}

/** Every secret with its version: any create or update shows here. */
async function listing(): Promise<unknown> {
  const search = await sy(['secret', 'search', '--limit', '1000']);
  expect(search.exitCode).toBe(0);
  return JSON.parse(search.stdout).data.map((s: { path: string; version: number; attributes: unknown }) => [s.path, s.version, s.attributes]);
}

function file(name: string, content: string | Buffer): string {
  const path = join(home.dir, name);
  writeFileSync(path, content);
  return path;
}

const nestedObjects = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
const nestedArrays = (depth: number) => `{"a":${'['.repeat(depth - 1)}${']'.repeat(depth - 1)}}`;

const PG_BASE = { type: 'postgresql' };
const PG_DATA = { host: '127.0.0.1', port: 5432, username: 'postgres', password: PASSWORD };
const dynamic = (extra: Record<string, unknown> = {}) => ({
  linkConfig: { linkType: 'dynamic', linkedSecret: 'db:pg:root' },
  grantPermissions: { what: 'SELECT', where: '*.*' },
  ttl: 600,
  ...extra,
});

beforeAll(async () => {
  home = testHome();
  const init = await sy(['init']);
  if (init.exitCode !== 0) throw new Error(init.stderr);
  const created = await sy(['secret', 'create', 'db:pg:root', '--attributes', JSON.stringify(PG_BASE), '--data', '-'], JSON.stringify(PG_DATA));
  if (created.exitCode !== 0) throw new Error(created.stderr);
});

afterAll(() => home?.cleanup());

describe('refused input: exit 2, one sentence, the store unchanged', () => {
  interface Case {
    name: string;
    args: () => string[];
    input?: string;
    message: RegExp;
  }
  const cases: Case[] = [
    { name: '5,000 nested objects inline', args: () => ['secret', 'create', 'app:deep1', '--data', nestedObjects(5000)], message: /--data.*nested more than 64 levels/ },
    { name: '5,000 nested arrays in an @file', args: () => ['secret', 'create', 'app:deep2', '--data', `@${file('deep.json', nestedArrays(5000))}`], message: /--data.*nested more than 64 levels/ },
    { name: '5,000 nested objects on stdin', args: () => ['secret', 'create', 'app:deep3', '--attributes', '-'], input: nestedObjects(5000), message: /--attributes.*nested more than 64 levels/ },
    { name: 'a --body nested 65 deep', args: () => ['secret', 'create', '--body', JSON.stringify({ path: 'app:deep4', data: JSON.parse(nestedObjects(64)) })], message: /--body.*nested more than 64 levels/ },
    { name: 'an @file of 10 MB', args: () => ['secret', 'create', 'app:big2', '--data', `@${file('big.json', JSON.stringify({ a: 'x'.repeat(10_000_000) }))}`], message: /--data.*larger than 1 MiB/ },
    { name: '@/dev/zero, which never ends', args: () => ['secret', 'create', 'app:big4', '--data', '@/dev/zero'], message: /--data.*larger than 1 MiB/ },
    { name: 'a path shaped like an id', args: () => ['secret', 'create', '0c81aaa1-45a0-4fc3-8536-8e6fd0989c5e', '--data', '{"k": "v"}'], message: /0c81aaa1-45a0-4fc3-8536-8e6fd0989c5e.*\bid\b/ },
    { name: 'an upper-case path shaped like an id, in --body', args: () => ['secret', 'create', '--body', '{"path": "0C81AAA1-45A0-4FC3-8536-8E6FD0989C5E", "data": {}}'], message: /\bid\b/ },
    { name: 'a misspelt ttl', args: () => ['secret', 'create', 'db:pg:tll', '--attributes', JSON.stringify(dynamic({ tll: 600 }))], message: /attributes\.tll .*did you mean ttl\?/ },
    { name: 'maxttl in the wrong case', args: () => ['secret', 'create', 'db:pg:maxttl', '--attributes', JSON.stringify(dynamic({ maxttl: 600 }))], message: /attributes\.maxttl .*did you mean maxTtl\?/ },
    { name: 'a name no dynamic secret has', args: () => ['secret', 'create', 'db:pg:foo', '--attributes', JSON.stringify(dynamic({ colour: 'red' }))], message: /attributes\.colour .*linkConfig, grantPermissions, ttl/ },
    { name: 'a misspelt linkedSecret', args: () => ['secret', 'create', 'db:pg:link', '--attributes', JSON.stringify({ ...dynamic(), linkConfig: { linkType: 'dynamic', linkedSecret: 'db:pg:root', linkedSecrt: 'x' } })], message: /attributes\.linkConfig\.linkedSecrt .*did you mean linkedSecret\?/ },
    { name: 'a misspelt where in a list of grants', args: () => ['secret', 'create', 'db:pg:grants', '--attributes', JSON.stringify(dynamic({ grantPermissions: [{ what: 'SELECT', where: '*.*' }, { what: 'SELECT', wher: '*.*' }] }))], message: /grantPermissions\[1\]\.wher .*did you mean where\?/ },
    { name: 'a misspelt linkConfig, which would make a static secret', args: () => ['secret', 'create', 'db:pg:static', '--attributes', JSON.stringify({ linkConfg: { linkType: 'dynamic', linkedSecret: 'db:pg:root' }, grantPermissions: { what: 'SELECT', where: '*.*' } })], message: /attributes\.linkConfg .*did you mean linkConfig\?/ },
    { name: 'a misspelt type naming a database', args: () => ['secret', 'create', 'db:pg:tpye', '--attributes', '{"tpye": "postgresql"}', '--data', JSON.stringify(PG_DATA)], message: /attributes\.tpye .*did you mean type\?/ },
    { name: 'a dynamic attribute on a base secret', args: () => ['secret', 'create', 'db:pg:base2', '--attributes', '{"type": "postgresql", "pool": "p1"}', '--data', JSON.stringify(PG_DATA)], message: /attributes\.pool is not an attribute of a base secret/ },
    { name: 'a misspelt host in a base secret', args: () => ['secret', 'create', 'db:pg:hots', '--attributes', JSON.stringify(PG_BASE), '--data', JSON.stringify({ ...PG_DATA, host: undefined, hots: 'h' })], message: /data\.hots .*did you mean host\?/ },
    { name: 'a misspelt password in an update', args: () => ['secret', 'update', 'db:pg:root', '--data', JSON.stringify({ passwrd: PASSWORD })], message: /data\.passwrd .*did you mean password\?/ },
    { name: 'an unknown option', args: () => ['secret', 'create', 'app:x', '--bogus'], message: /unknown option '--bogus'/i },
    { name: 'an unknown command', args: () => ['secret', 'craete'], message: /unknown command 'craete'.*did you mean create\?/i },
    { name: 'a missing argument', args: () => ['dynamic', 'lease', 'lookup'], message: /missing required argument 'lease_id'/i },
    { name: 'a --format that does not exist', args: () => ['secret', 'search', '--format', 'xml'], message: /--format.*xml.*json, yaml, table/ },
  ];

  test.each(cases)('$name', async ({ args, input, message }) => {
    const before = await listing();
    expectUsageError(await sy(args(), input), message);
    expect(await listing()).toEqual(before);
  });

  test('SY_HOME that is a file, or inside one, is named in one sentence for every command', async () => {
    const notADir = file('home-is-a-file', 'x');
    for (const args of [['init'], ['secret', 'search'], ['secret', 'read', 'db:pg:root']]) {
      const result = await runMain(args, { ...home.env, SY_HOME: notADir });
      expectUsageError(result, new RegExp(`^sy: SY_HOME \\(${notADir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\) is a file, not a directory\\.$`));
      const below = await runMain(args, { ...home.env, SY_HOME: join(notADir, 'store') });
      expectUsageError(below, /SY_HOME .* is inside a file .*home-is-a-file/);
    }
  });
});
