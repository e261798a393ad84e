/**
 * Input that sy must refuse with exit 2 and one plain sentence, leaving the store as it
 * was, through the built bin/sy without a terminal: a few refusals through real pipes
 * and the bundled command tree (the whole table of refused input, and SY_HOME as a file,
 * run in-process in test/unit/cli/refused-input.test.ts), stdin that never ends, and what
 * is still accepted.
 */
import { execa } from 'execa';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { makeHome, SY_BIN, type SyHome, type SyResult } from '../helpers/cli.js';

const PASSWORD = 'Inp-S3cret-Value!';
const MiB = 1024 * 1024;

let sy: SyHome;

/** Exit 2, nothing on stdout, one line `sy: ...` ending a sentence, no stack, no secret. */
function expectUsageError(result: SyResult, message: RegExp): void {
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
  const search = await sy.run(['secret', 'search', '--limit', '1000']);
  expect(search.exitCode).toBe(0);
  return JSON.parse(search.stdout).data.map((s: { path: string; version: number; attributes: unknown }) => [s.path, s.version, s.attributes]);
}

function file(name: string, content: string | Buffer): string {
  const path = join(sy.home, name);
  writeFileSync(path, content);
  return path;
}

const nestedObjects = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;

const PG_BASE = { type: 'postgresql' };
const PG_DATA = { host: '127.0.0.1', port: 5432, username: 'postgres', password: PASSWORD };
beforeAll(async () => {
  sy = await makeHome();
  const created = await sy.run(['secret', 'create', 'db:pg:root', '--attributes', JSON.stringify(PG_BASE), '--data', '-'], { input: JSON.stringify(PG_DATA) });
  if (created.exitCode !== 0) throw new Error(created.stderr);
});

afterAll(() => sy?.cleanup());

describe('refused input: exit 2, one sentence, the store unchanged', () => {
  interface Case {
    name: string;
    args: () => string[];
    input?: string;
    message: RegExp;
  }
  const cases: Case[] = [
    { name: '10 MB on stdin', args: () => ['secret', 'create', 'app:big3', '--body', '-'], input: JSON.stringify({ path: 'app:big3', data: { a: 'x'.repeat(10_000_000) } }), message: /--body.*larger than 1 MiB/ },
    { name: 'a near-miss option', args: () => ['secret', 'create', 'app:x', '--dat', '{}'], message: /unknown option '--dat'.*did you mean --data\?/i },
  ];

  test.each(cases)('$name', async ({ args, input, message }) => {
    const before = await listing();
    const result = await sy.run(args(), { input });
    expectUsageError(result, message);
    expect(await listing()).toEqual(before);
  });

  test('stdin that never ends is refused once 1 MiB has been read, not buffered whole', async () => {
    const before = await listing();
    let sent = 0;
    const chunk = Buffer.from(`"${'x'.repeat(64 * 1024 - 2)}"`);
    const endless = new Readable({
      read() {
        sent += chunk.length;
        this.push(sent === chunk.length ? Buffer.concat([Buffer.from('{"a":'), chunk]) : chunk);
      },
    });
    const child = execa(SY_BIN, ['secret', 'create', 'app:endless', '--data', '-'], {
      env: { PATH: process.env.PATH, ...sy.env },
      extendEnv: false,
      reject: false,
      input: endless,
      timeout: 30_000,
    });
    const result = await child;
    expectUsageError({ exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) }, /--data.*larger than 1 MiB/);
    // It stopped reading soon after the limit: a pipe buffer or two beyond it at most.
    expect(sent).toBeLessThan(8 * MiB);
    endless.destroy();
    expect(await listing()).toEqual(before);
  });
});

describe('what is still accepted', () => {
  test('JSON nested 64 deep, brackets inside strings, and just under 1 MiB', async () => {
    // 64 levels in all: the --data object itself and 63 below it.
    const deep = await sy.run(['secret', 'create', 'app:deep64', '--data', nestedObjects(64)]);
    expect({ exitCode: deep.exitCode, stderr: deep.stderr }).toEqual({ exitCode: 0, stderr: '' });
    const brackets = '[{'.repeat(5000);
    const inString = await sy.run(['secret', 'create', 'app:brackets', '--data', '-'], { input: JSON.stringify({ a: brackets, 'b\\"[': 1 }) });
    expect({ exitCode: inString.exitCode, stderr: inString.stderr }).toEqual({ exitCode: 0, stderr: '' });
    const read = await sy.json(['secret', 'read', 'app:brackets']);
    expect(read.data).toEqual({ a: brackets, 'b\\"[': 1 });
    const almost = await sy.run(['secret', 'create', 'app:almost', '--data', `@${file('almost.json', JSON.stringify({ a: 'x'.repeat(MiB - 16) }))}`]);
    expect({ exitCode: almost.exitCode, stderr: almost.stderr }).toEqual({ exitCode: 0, stderr: '' });
  });

  test('a static secret keeps free-form attributes, as in DSV', async () => {
    const created = await sy.json(['secret', 'create', 'app:free', '--attributes', '{"owner": "team-a", "tape": 1, "ttl": 30}', '--data', '{"k": "v"}']);
    expect(created.attributes).toEqual({ owner: 'team-a', tape: 1, ttl: 30 });
  });

  test('an id still names the secret it belongs to; a path holding an id is refused', async () => {
    const first = await sy.json(['secret', 'create', 'app:first', '--data', '{"who": "first"}']);
    const refused = await sy.run(['secret', 'create', first.id, '--data', '{"who": "impostor"}']);
    expectUsageError(refused, /\bid\b/);
    expect((await sy.json(['secret', 'read', first.id])).data).toEqual({ who: 'first' });
    // A longer path that merely contains an id is a path like any other.
    const nested = await sy.json(['secret', 'create', `app:${first.id}`, '--data', '{"who": "nested"}']);
    expect(nested.path).toBe(`app:${first.id}`);
    expect((await sy.json(['secret', 'read', `app:${first.id}`])).data).toEqual({ who: 'nested' });
  });

  test('a SY_HOME directory that does not exist yet is created by init', async () => {
    const dir = join(sy.home, 'later');
    mkdirSync(dir);
    const init = await sy.run(['init'], { env: { SY_HOME: join(dir, 'store') } });
    // Nothing on stderr but the next step.
    expect({ exitCode: init.exitCode, stderr: init.stderr }).toEqual({ exitCode: 0, stderr: expect.stringMatching(/^Next: [^\n]+$/) });
  });
});
