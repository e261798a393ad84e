/**
 * The test Context: commands called as functions against a temporary store, with their
 * output captured and a fake terminal answering their questions; and the whole CLI run in
 * this process with `runMain`.
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createCommand } from '../../../src/commands/secret/create.js';
import { deleteCommand } from '../../../src/commands/secret/delete.js';
import { readCommand } from '../../../src/commands/secret/read.js';
import { runMain, testContext, type TestContext } from '../../helpers/context.js';

let t: TestContext | undefined;

afterEach(async () => {
  await t?.cleanup();
  t = undefined;
});

test('a command prints JSON on a stdout that is not a terminal, and reads --data - from stdin', async () => {
  t = await testContext({ stdin: '{"token": "from-stdin"}' });
  const created = await createCommand(t.ctx, 'app:one', { data: '-' });
  expect(JSON.parse(t.stdout())).toEqual(created);
  expect(created).toMatchObject({ path: 'app:one', version: 1 });
  expect(t.stderr()).toBe('');

  t.out.chunks.length = 0;
  await readCommand(t.ctx, 'app:one', {});
  expect(JSON.parse(t.stdout())).toMatchObject({ path: 'app:one', data: { token: 'from-stdin' } });
});

test('a table on a terminal, the JSON with --format json', async () => {
  t = await testContext({ stdinTTY: true, stdoutTTY: true, stderrTTY: true, color: false });
  await createCommand(t.ctx, 'app:two', { data: '{"k": "v"}', format: 'json' });
  expect(JSON.parse(t.stdout())).toMatchObject({ path: 'app:two' });
  t.out.chunks.length = 0;
  await readCommand(t.ctx, 'app:two', { format: 'table' });
  expect(t.stdout()).toMatch(/^KEY +VALUE\n(.*\n)*path +app:two\n(.*\n)*data\.k +v\n/);
});

test('--output writes a private file and says so on stderr; stdout stays empty', async () => {
  t = await testContext();
  await createCommand(t.ctx, 'app:out', { data: '{"k": "v"}' });
  t.out.chunks.length = 0;
  const file = join(t.home.dir, 'secret.json');
  await readCommand(t.ctx, 'app:out', { output: file });
  expect(t.stdout()).toBe('');
  expect(t.stderr()).toBe(`Wrote ${file}\n`);
  expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({ data: { k: 'v' } });
  expect(statSync(file).mode & 0o777).toBe(0o600);
});

test('delete --force at a terminal asks first; "no" keeps the secret, "yes" deletes it', async () => {
  t = await testContext({ stdinTTY: true, stdoutTTY: true, stderrTTY: true, answers: [false, true] });
  await createCommand(t.ctx, 'app:gone', { data: '{"k": "v"}', format: 'json' });
  await expect(deleteCommand(t.ctx, 'app:gone', { force: true })).rejects.toMatchObject({ code: 'cancelled', message: 'Nothing was deleted.' });
  await expect(readCommand(t.ctx, 'app:gone', { format: 'json' })).resolves.toBeDefined();
  await deleteCommand(t.ctx, 'app:gone', { force: true });
  expect(t.stderr()).toBe('Deleted app:gone.\n');
  expect(t.prompter.asked.map((q) => [q.message, q.answer])).toEqual([
    ['Delete app:gone even if dynamic secrets or active leases depend on it?', false],
    ['Delete app:gone even if dynamic secrets or active leases depend on it?', true],
  ]);
});

test('the wizard at a fake terminal: each answer checked as it is given, the secret saved on yes', async () => {
  t = await testContext({
    stdinTTY: true,
    stdoutTTY: true,
    stderrTTY: true,
    color: false,
    answers: ['base', 'db:pg:wizard', 'made by the wizard', 'postgresql', '', 'not-a-port', '6432', '', 'admin-pw', '', false, true],
  });
  const created = await createCommand(t.ctx, undefined, { format: 'json' });
  expect(created).toMatchObject({ path: 'db:pg:wizard', description: 'made by the wizard', attributes: { type: 'postgresql' } });
  expect(t.prompter.remaining).toBe(0);
  expect(t.prompter.asked.find((q) => q.message === 'Port:' && q.refused)).toMatchObject({ answer: 'not-a-port', refused: expect.stringMatching(/port/i) });
  // The JSON to be stored is shown on stderr with the password masked.
  expect(t.stderr()).toContain('"password": "********"');
  expect(t.stderr()).not.toContain('admin-pw');
  t.out.chunks.length = 0;
  await readCommand(t.ctx, 'db:pg:wizard', { format: 'json' });
  // The PostgreSQL database is always asked; an empty answer takes its default.
  expect(JSON.parse(t.stdout()).data).toEqual({ host: '127.0.0.1', port: 6432, username: 'postgres', password: 'admin-pw', database: 'postgres' });
});

test('runMain: the CLI in this process, exit code and both streams', async () => {
  t = await testContext();
  const ok = await runMain(['secret', 'create', 'app:main', '--data', '{"k": "v"}'], t.home.env);
  expect(ok.exitCode).toBe(0);
  expect(JSON.parse(ok.stdout)).toMatchObject({ path: 'app:main' });
  const refused = await runMain(['secret', 'create', 'app:main', '--data', '{"k": "v"}'], t.home.env);
  expect(refused).toEqual({ exitCode: 2, stdout: '', stderr: 'sy: A secret already exists at app:main.\nUse `sy secret update` to change it.\n' });
  const unknown = await runMain(['secret', 'craete'], t.home.env);
  expect(unknown.exitCode).toBe(2);
  expect(unknown.stderr).toMatch(/^sy: Unknown command 'craete'; did you mean create\?\n$/);
});
