/**
 * The `client` commands called in-process with a test Context: the confirmation of delete at
 * a (fake) terminal, and what each prints where (the private key on stdout only, notices on
 * stderr). The end-to-end file (test/e2e/clients.test.ts) runs them through bin/sy.
 */
import { createPrivateKey } from 'node:crypto';
import { createClientCommand } from '../../../src/commands/client/create.js';
import { deleteClientCommand } from '../../../src/commands/client/delete.js';
import { listClientsCommand } from '../../../src/commands/client/list.js';
import { type TestContext, testContext } from '../../helpers/context.js';

let t: TestContext;
afterEach(() => t.cleanup());

test('delete at a terminal asks first, naming the client; "no" keeps it (exit 130), "yes" deletes it', async () => {
  t = await testContext({ stdinTTY: true, stdoutTTY: true, stderrTTY: true, answers: [false, true] });
  await createClientCommand(t.ctx, 'asked', { allow: ['app:x'], format: 'json' });
  await expect(deleteClientCommand(t.ctx, 'asked', { format: 'json' })).rejects.toMatchObject({ code: 'cancelled', exitCode: 130, message: 'Nothing was deleted.' });
  expect((await listClientsCommand(t.ctx, { format: 'json' })).map((c) => c.name)).toEqual(['asked']);
  await deleteClientCommand(t.ctx, 'asked', { format: 'json' });
  expect((await listClientsCommand(t.ctx, { format: 'json' })).map((c) => c.name)).toEqual([]);
  expect(t.prompter.asked.map((q) => [q.message, q.answer])).toEqual([
    ['Delete client asked?', false],
    ['Delete client asked?', true],
  ]);
});

test('create prints the private key on stdout only; stderr says it is shown once and never holds it', async () => {
  t = await testContext();
  await createClientCommand(t.ctx, 'printed', { allow: ['*'], format: 'json' });
  const shown = JSON.parse(t.stdout());
  expect(createPrivateKey(shown.private_key).asymmetricKeyType).toBe('ed25519');
  expect(t.stderr()).toBe('This is the only time the private key of printed is shown; sy keeps no copy of it.\n');
  expect(t.stderr()).not.toContain('PRIVATE KEY');
});
