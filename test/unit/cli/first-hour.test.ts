/**
 * What made a new user stop and think in their first hour (issue 18's small ones), each as
 * the user met it, through the same main() that bin/sy runs, in this process: a recipe's
 * `"ttl": "5m"`, `renew --ttl`, what `sy init` says next, the wizard's questions, and the
 * hint for a PostgreSQL base on MySQL's port.
 */
import { connectFailed, portHint } from '../../../src/targets/shared.js';
import { type MainResult, runMain, testHome, type TestHome } from '../../helpers/context.js';
import { ScriptedPrompter } from '../../helpers/streams.js';

let home: TestHome;
const sy = (args: string[], options: Parameters<typeof runMain>[2] = {}): Promise<MainResult> => runMain(args, home.env, options);
const ok = async (args: string[], options: Parameters<typeof runMain>[2] = {}) => {
  const result = await sy(args, options);
  if (result.exitCode !== 0) throw new Error(`sy ${args.join(' ')}: ${result.stderr}`);
  return result;
};

beforeAll(() => {
  home = testHome();
});
afterAll(() => home?.cleanup());

test('`sy init` ends with the next step on stderr (and --quiet leaves it out); stdout stays the summary', async () => {
  const init = await ok(['init', '--format', 'json']);
  expect(JSON.parse(init.stdout)).toHaveProperty('store_id');
  expect(init.stderr).toMatch(/^Next: store a database admin as a base secret: `sy secret create db:postgresql:root`/m);
  const other = testHome();
  try {
    const quiet = await runMain(['init', '--quiet'], other.env);
    expect({ exitCode: quiet.exitCode, stderr: quiet.stderr }).toEqual({ exitCode: 0, stderr: '' });
  } finally {
    other.cleanup();
  }
});

describe('with a base secret', () => {
  beforeAll(async () => {
    await ok(['secret', 'create', 'db:postgresql:root', '--attributes', '{"type":"postgresql"}', '--data', '{"host":"db.sy.invalid","port":5432,"username":"admin","password":"pw","database":"appdb"}']);
  });

  test('`"ttl": "5m"` (and `"maxTtl": "2h"`) in a recipe is stored in seconds, on create and on update', async () => {
    const attributes = { linkConfig: { linkType: 'dynamic', linkedSecret: 'db:postgresql:root' }, grantPermissions: { what: 'SELECT', where: '*.*' }, ttl: '5m', maxTtl: '2h' };
    const created = JSON.parse((await ok(['secret', 'create', 'db:postgresql:five', '--no-verify', '--attributes', JSON.stringify(attributes)])).stdout);
    expect(created.attributes).toMatchObject({ ttl: 300, maxTtl: 7200 });
    const described = JSON.parse((await ok(['secret', 'describe', 'db:postgresql:five'])).stdout);
    expect(described.attributes).toMatchObject({ ttl: 300, maxTtl: 7200 });
    await ok(['secret', 'update', 'db:postgresql:five', '--no-verify', '--attributes', '{"ttl": "1h30m"}']);
    expect(JSON.parse((await ok(['secret', 'describe', 'db:postgresql:five'])).stdout).attributes).toMatchObject({ ttl: 5400, maxTtl: 7200 });
    // A duration that is not one is refused, naming the attribute, and nothing is stored.
    const bad = await sy(['secret', 'create', 'db:postgresql:bad', '--no-verify', '--attributes', JSON.stringify({ ...attributes, ttl: '5 minutes' })]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/^sy: attributes\.ttl /);
    // A static secret's free-form attributes are its own.
    const stat = JSON.parse((await ok(['secret', 'create', 'app:static', '--attributes', '{"ttl": "5m"}', '--data', '{"k":"v"}'])).stdout);
    expect(stat.attributes).toEqual({ ttl: '5m' });
  });

  test('`lease renew --ttl` is unknown, and says --increment is the flag', async () => {
    const renew = await sy(['dynamic', 'lease', 'renew', '0c81aaa1-45a0-4fc3-8536-8e6fd0989c5e', '--ttl', '5m']);
    expect({ exitCode: renew.exitCode, stderr: renew.stderr }).toEqual({ exitCode: 2, stderr: "sy: Unknown option '--ttl'; did you mean --increment?\n" });
    // Elsewhere --ttl is what it is, and other unknown options keep commander's own suggestion.
    const create = await sy(['dynamic', 'lease', 'create', '--path', 'db:postgresql:five', '--tll', '5m']);
    expect(create.stderr).toBe("sy: Unknown option '--tll'; did you mean --ttl?\n");
  });

  test('the wizard asks for the PostgreSQL database (postgres by default) and hints a dynamic path for a dynamic secret', async () => {
    const base = new ScriptedPrompter(['base', 'db:postgresql:asked', '', 'postgresql', 'db.sy.invalid', '', '', 'pw', '', false, true]);
    await ok(['secret', 'create', '--no-verify'], { stdinTTY: true, stdoutTTY: true, stderrTTY: true, prompter: base });
    expect(base.asked.map((q) => q.message)).toEqual([
      'What kind of secret?', 'Path (e.g. db:postgresql:root):', 'Description (optional):', 'Database type:', 'Host:', 'Port:', 'Admin user:',
      'Admin password:', 'Database:', 'Test the connection to db.sy.invalid:5432 now?', 'Save this secret?',
    ]);
    const stored = JSON.parse((await ok(['secret', 'read', 'db:postgresql:asked'])).stdout);
    expect(stored.data.database).toBe('postgres');

    const dynamic = new ScriptedPrompter(['dynamic', 'db:postgresql:dynasked', '', 'db:postgresql:root', '', '', '', '', '', '', false, true]);
    await ok(['secret', 'create', '--no-verify'], { stdinTTY: true, stdoutTTY: true, stderrTTY: true, prompter: dynamic });
    const messages = dynamic.asked.map((q) => q.message);
    expect(messages[1]).toBe('Path (e.g. db:postgresql:dyn1):');
    expect(messages).toContain('On (*.*, schema.*, schema.table) in database appdb:');
  });
});

test('a PostgreSQL base on port 3306 (MySQL\'s), or a MySQL base on 5432, gets a hint when it cannot connect', () => {
  expect(portHint({ port: 3306, engine: 'postgresql' })).toBe("Port 3306 is MySQL/MariaDB's default port; PostgreSQL's is 5432: check the base secret's port.");
  expect(portHint({ port: 5432, engine: 'mysql' })).toBe("Port 5432 is PostgreSQL's default port; MySQL/MariaDB's is 3306: check the base secret's port.");
  expect(portHint({ port: 5433, engine: 'postgresql' })).toBeUndefined();
  expect(portHint({ port: 5432, engine: 'postgresql' })).toBeUndefined();
  const error = connectFailed('PostgreSQL', { host: '127.0.0.1', port: 3306, engine: 'postgresql' }, 'target_unreachable', 'the server closed the connection');
  expect({ message: error.message, hint: error.hint, exitCode: error.exitCode }).toEqual({
    message: 'Could not connect to PostgreSQL at 127.0.0.1:3306: the server closed the connection.',
    hint: "Port 3306 is MySQL/MariaDB's default port; PostgreSQL's is 5432: check the base secret's port.",
    exitCode: 1,
  });
});
