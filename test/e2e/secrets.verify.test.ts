/**
 * A dynamic secret's recipe is checked against its server when it is created or its
 * attributes are updated, through the built bin/sy: what is missing fails with exit 2 and
 * stores nothing, `--no-verify` skips the check, and a server that cannot be reached (or
 * refuses the login) only costs a one-line warning. Runs against the SCRAM PostgreSQL
 * cluster and the local MariaDB, in this file's own database, roles and SY_HOME.
 */
import pg from 'pg';
import { makeHome, recordingRunner, type SyHome, type SyResult } from '../helpers/cli.js';
import { createMyDatabase, createPgDatabase, dropMyDatabase, dropPgDatabase, expectExit, MARIADB, pgAdminQuery, scramCluster, tag } from '../helpers/db.js';

const T = tag();
const DB = `sy_e2e_vfy_${T}`;
const MY_DB = `sy_e2e_vfy_${T}`;
const LIMITED = `sy_e2e_vfy_adm_${T}`;
const LIMITED_PASSWORD = `Vfy-${tag(16)}!`;
const WRONG_PASSWORD = `Wr0ng-${tag(16)}!`;
const cluster = scramCluster();
const LABEL = `127.0.0.1:${cluster.port}/${DB}`;

let sy: SyHome;
const { run, ok, stderrs } = recordingRunner(() => sy);

const dynamic = (linkedSecret: string, where: string, what = 'SELECT') =>
  JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret }, grantPermissions: { what, where }, ttl: 600 });

async function base(path: string, type: string, data: Record<string, unknown>): Promise<void> {
  await ok(['secret', 'create', path, '--attributes', JSON.stringify({ type }), '--data', '-'], { input: JSON.stringify(data) });
}

/** The paths the store holds under `db:`. */
async function stored(): Promise<string[]> {
  return (await ok<{ data: { path: string }[] }>(['secret', 'search', '--query', 'db', '--limit', '100'])).data.map((s) => s.path).sort();
}

/** A refused recipe: exit 2, nothing on stdout, the problem on the first line and the way out on the second. */
function expectRefused(result: SyResult, problem: string): void {
  expectExit(result, 2);
  expect(result.stdout).toBe('');
  const lines = result.stderr.trimEnd().split('\n');
  expect(lines[0]).toBe(`sy: ${problem}`);
  expect(lines).toHaveLength(2);
  expect(lines[1]).toMatch(/nothing was stored.*--no-verify/i);
}

beforeAll(async () => {
  await createPgDatabase(DB, [
    'CREATE SCHEMA app',
    'CREATE TABLE app.items (id int)',
    'CREATE TABLE app.secrets (x int)',
    `CREATE ROLE ${LIMITED} LOGIN CREATEROLE PASSWORD ${pg.escapeLiteral(LIMITED_PASSWORD)}`,
    `GRANT USAGE ON SCHEMA app TO ${LIMITED} WITH GRANT OPTION`,
    `GRANT SELECT ON app.items TO ${LIMITED} WITH GRANT OPTION`,
    `GRANT SELECT ON app.secrets TO ${LIMITED}`,
  ]);
  await createMyDatabase(MY_DB, ['CREATE TABLE {{db}}.items (id INT)']);
  sy = await makeHome();
  const pgData = { host: '127.0.0.1', port: cluster.port, username: cluster.user, password: cluster.password, database: DB };
  await base('db:pg:root', 'postgresql', pgData);
  await base('db:pg:limited', 'postgresql', { ...pgData, username: LIMITED, password: LIMITED_PASSWORD });
  await base('db:pg:closed', 'postgresql', { ...pgData, port: 1 });
  await base('db:pg:wrongpw', 'postgresql', { ...pgData, password: WRONG_PASSWORD });
  await base('db:my:root', 'mariadb', { host: MARIADB.host, port: MARIADB.port, username: MARIADB.user, password: MARIADB.password });
});

afterAll(async () => {
  sy?.cleanup();
  await dropPgDatabase(DB).catch(() => undefined);
  await pgAdminQuery(`DROP ROLE IF EXISTS ${LIMITED}`).catch(() => undefined);
  await dropMyDatabase(MY_DB).catch(() => undefined);
});

describe('sy secret create/update check a dynamic recipe against its server', () => {
  test('a table that does not exist: exit 2 naming it, and nothing stored', async () => {
    const before = await stored();
    expectRefused(await run(['secret', 'create', 'db:pg:nope', '--attributes', dynamic('db:pg:root', 'app.nope')]), `grantPermissions: table app.nope does not exist on ${LABEL}.`);
    expectRefused(await run(['secret', 'create', 'db:pg:nope', '--attributes', dynamic('db:pg:root', 'nope.*')]), `grantPermissions: schema nope does not exist on ${LABEL}.`);
    expectRefused(
      await run(['secret', 'create', 'db:my:nope', '--attributes', dynamic('db:my:root', `${MY_DB}.nope`)]),
      `grantPermissions: table ${MY_DB}.nope does not exist on ${MARIADB.host}:${MARIADB.port}.`,
    );
    expect(await stored()).toEqual(before);
    expect((await ok(['secret', 'search', '--query', 'nope'])).data).toEqual([]);
  });

  test('a privilege the admin cannot grant: exit 2 naming the admin, and nothing stored', async () => {
    expectRefused(
      await run(['secret', 'create', 'db:pg:lim-secrets', '--attributes', dynamic('db:pg:limited', 'app.secrets')]),
      `grantPermissions: the admin ${LIMITED} does not hold SELECT on app.secrets WITH GRANT OPTION.`,
    );
    expect((await ok(['secret', 'search', '--query', 'lim-secrets'])).data).toEqual([]);
  });

  test('a recipe the server can fulfil is stored without a word on stderr', async () => {
    const result = await run(['secret', 'create', 'db:pg:items', '--attributes', dynamic('db:pg:limited', 'app.items')]);
    expect({ exitCode: result.exitCode, stderr: result.stderr }).toEqual({ exitCode: 0, stderr: '' });
    expect(JSON.parse(result.stdout)).toMatchObject({ path: 'db:pg:items', version: 1 });
    const mysql = await run(['secret', 'create', 'db:my:items', '--attributes', dynamic('db:my:root', `${MY_DB}.*`)]);
    expect({ exitCode: mysql.exitCode, stderr: mysql.stderr }).toEqual({ exitCode: 0, stderr: '' });
  });

  test('--no-verify stores a recipe naming a missing table, as given', async () => {
    const result = await run(['secret', 'create', 'db:pg:unchecked', '--no-verify', '--attributes', dynamic('db:pg:root', 'app.nope')]);
    expect({ exitCode: result.exitCode, stderr: result.stderr }).toEqual({ exitCode: 0, stderr: '' });
    expect((await ok(['secret', 'describe', 'db:pg:unchecked'])).attributes.grantPermissions).toEqual({ what: 'SELECT', where: 'app.nope' });
  });

  test('an unreachable server or a refused login only warns, in one line, and the secret is stored', async () => {
    for (const [path, linked, why] of [
      ['db:pg:closed-ro', 'db:pg:closed', /127\.0\.0\.1:1\b/],
      ['db:pg:wrongpw-ro', 'db:pg:wrongpw', /password authentication failed/],
    ] as const) {
      const started = Date.now();
      const result = await run(['secret', 'create', path, '--attributes', dynamic(linked, 'app.nope')]);
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(result.exitCode).toBe(0);
      expect(JSON.parse(result.stdout)).toMatchObject({ path, version: 1 });
      const lines = result.stderr.trimEnd().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(new RegExp(`^warning: ${path} was stored without checking its recipe: .+\\.$`));
      expect(lines[0]).toMatch(why);
    }
    expect(await stored()).toEqual(expect.arrayContaining(['db:pg:closed-ro', 'db:pg:wrongpw-ro']));
  });

  test('update checks the attributes it changes: a missing table keeps the old version, --no-verify writes it', async () => {
    expectRefused(
      await run(['secret', 'update', 'db:pg:items', '--attributes', JSON.stringify({ grantPermissions: { what: 'SELECT', where: 'app.gone' } })]),
      `grantPermissions: table app.gone does not exist on ${LABEL}.`,
    );
    expect(await ok(['secret', 'describe', 'db:pg:items'])).toMatchObject({ version: 1, attributes: { grantPermissions: { what: 'SELECT', where: 'app.items' } } });

    // A description alone is not a change of the recipe: no check, no connection needed.
    await ok(['secret', 'update', 'db:pg:closed-ro', '--desc', 'unreachable']);
    expect(stderrs[stderrs.length - 1]).toBe('');

    const written = await run(['secret', 'update', 'db:pg:items', '--no-verify', '--attributes', JSON.stringify({ grantPermissions: { what: 'SELECT', where: 'app.gone' } })]);
    expect({ exitCode: written.exitCode, stderr: written.stderr }).toEqual({ exitCode: 0, stderr: '' });
    expect(await ok(['secret', 'describe', 'db:pg:items'])).toMatchObject({ version: 2, attributes: { grantPermissions: { where: 'app.gone' } } });
  });

  test('no stderr ever held an admin password', () => {
    for (const stderr of stderrs) {
      for (const secret of [cluster.password, LIMITED_PASSWORD, WRONG_PASSWORD]) expect(stderr).not.toContain(secret);
    }
  });
});
