/**
 * End-to-end tests of dynamic leases on MariaDB (127.0.0.1:3306, root without password,
 * which checks passwords), through the built bin/sy. Every credential sy prints is tried
 * for real with mysql2 and the mariadb client.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { makeHome, SY_BIN, type Lease, type SyHome, leaseRunner, LEASE_KEYS } from '../helpers/cli.js';
import {
  createMyDatabase,
  dropMyDatabase,
  dropMyUsers,
  MARIADB,
  ms,
  myAdminQuery,
  myConnect,
  myLoginError,
  myManagedUsers,
  myUserExists,
  SY_MARKER,
  tag,
  expectExit,
} from '../helpers/db.js';

const T = tag();
const DB = `sy_e2e_my_${T}`;
/** A second database the leases must not reach. */
const OTHER_DB = `sy_e2e_my2_${T}`;
const PREFIX = `e${T}_`;
const CONC_PREFIX = `c${T}_`;
const KILL_PREFIX = `k${T}_`;
const PREFIXES = [PREFIX, CONC_PREFIX, KILL_PREFIX];


let sy: SyHome;
const ids: Record<string, string> = {};

const { run, ok, stderrs, issued, passwords, remember, create, listed } = leaseRunner(() => sy);

const dynamicAttributes = (extra: Record<string, unknown>) =>
  JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: 'db:mariadb:root' }, grantPermissions: { what: 'SELECT', where: `${DB}.*` }, ...extra });

/** The mariadb client with nothing from the test's environment but PATH and `env`. */
async function mariadbCli(args: string[], env: Record<string, string> = {}) {
  const result = await execa('mariadb', ['--protocol=tcp', '-N', '-B', ...args], {
    env: { PATH: process.env.PATH, ...env }, extendEnv: false, reject: false, stdin: 'ignore', timeout: 30_000,
  });
  return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
}

beforeAll(async () => {
  await createMyDatabase(DB, [
    'CREATE TABLE {{db}}.items (id INT PRIMARY KEY, name VARCHAR(20))',
    "INSERT INTO {{db}}.items VALUES (1, 'one'), (2, 'two')",
  ]);
  await createMyDatabase(OTHER_DB, ['CREATE TABLE {{db}}.private (id INT)']);
  sy = await makeHome();
  // The seed's pair (seeds/002) on MariaDB: same shape, where `<db>.*`.
  ids.root = (await ok(['secret', 'create', '--body', '-'], {
    input: JSON.stringify({
      path: 'db:mariadb:root',
      attributes: { type: 'mariadb' },
      description: 'mariadb root credentials',
      data: { host: MARIADB.host, password: MARIADB.password, port: MARIADB.port, username: MARIADB.user },
    }),
  })).id;
  ids.dyn1 = (await ok(['secret', 'create', '--body', '-'], {
    input: `{
    "path": "db:mariadb:dyn1",
    "attributes": {
        "grantPermissions": {
            "what": "SELECT",
            "where": "${DB}.*"
        },
        "linkConfig": {
            "linkType": "dynamic",
            "linkedSecret": "db:mariadb:root"
        },
        "pool": "pool1",
        "ttl": 1000
    },
    "data": {},
}`,
  })).id;
  await ok(['secret', 'create', 'db:mariadb:e2e', '--attributes', dynamicAttributes({ userPrefix: PREFIX, ttl: 600 })]);
  await ok(['secret', 'create', 'db:mariadb:conc', '--attributes', dynamicAttributes({ userPrefix: CONC_PREFIX, ttl: 600 })]);
  await ok(['secret', 'create', 'db:mariadb:kill', '--attributes', dynamicAttributes({ userPrefix: KILL_PREFIX, ttl: 600 })]);
  await ok(['secret', 'create', 'db:mariadb:short', '--attributes', dynamicAttributes({ userPrefix: PREFIX, ttl: 30, maxTtl: 60 })]);
  // Stored unchecked (secret create would refuse it): what a lease does when the table is missing.
  await ok(['secret', 'create', 'db:mariadb:nosuch', '--no-verify', '--attributes', dynamicAttributes({ userPrefix: PREFIX, grantPermissions: { what: 'SELECT', where: `${DB}.no_such_table` } })]);
});

afterAll(async () => {
  if (sy) {
    await sy.run(['dynamic', 'lease', 'revoke', '--prefix', 'db', '--yes', '--force']).catch(() => undefined);
    sy.cleanup();
  }
  await dropMyDatabase(DB).catch(() => undefined);
  await dropMyDatabase(OTHER_DB).catch(() => undefined);
  const leftovers = new Set(issued.map((l) => l.username));
  for (const prefix of PREFIXES) for (const user of await myManagedUsers(prefix).catch(() => [])) leftovers.add(user);
  await dropMyUsers([...leftovers]).catch(() => undefined);
});

describe('sy dynamic leases on MariaDB', () => {
  let revokedLease: Lease;

  test('the seed-shaped secrets issue SELECT-only credentials on <db>.* that log in through mysql2 and mariadb', async () => {
    const lease = remember(await ok<Lease>(['secret', 'read', 'db:mariadb:dyn1']));
    expect(Object.keys(lease).sort()).toEqual(LEASE_KEYS);
    expect(lease).toMatchObject({
      record_uid: ids.dyn1,
      path: 'db:mariadb:dyn1',
      engine: 'mysql',
      host: '127.0.0.1',
      port: 3306,
      database: DB,
      lease_duration: 1000,
      renewable: true,
    });
    expect(lease.username).toMatch(SY_MARKER);
    expect(lease.username.length).toBeLessThanOrEqual(32);
    expect(lease.connection_string.startsWith('mysql://')).toBe(true);
    expect(ms(lease.expires_at) - ms(lease.created_at)).toBe(1000_000);

    const connection = await myConnect(lease.connection_string);
    try {
      const [[who]] = (await connection.query('SELECT CURRENT_USER() AS u, DATABASE() AS d')) as any;
      expect(who).toEqual({ u: `${lease.username}@%`, d: DB });
      const [[count]] = (await connection.query(`SELECT COUNT(*) AS n FROM \`${DB}\`.items`)) as any;
      expect(Number(count.n)).toBe(2);
      await expect(connection.query(`INSERT INTO \`${DB}\`.items VALUES (3, 'three')`)).rejects.toMatchObject({ code: 'ER_TABLEACCESS_DENIED_ERROR' });
      await expect(connection.query(`SELECT * FROM \`${OTHER_DB}\`.private`)).rejects.toMatchObject({ code: 'ER_TABLEACCESS_DENIED_ERROR' });
    } finally {
      await connection.end();
    }
    const cli = await mariadbCli(['-h', lease.host, '-P', String(lease.port), '-u', lease.username, lease.database, '-e', 'SELECT CURRENT_USER()'], { MYSQL_PWD: lease.password });
    expect(cli).toMatchObject({ exitCode: 0, stdout: `${lease.username}@%` });
    expect(await myLoginError({ ...MARIADB, user: lease.username, password: `${lease.password}x` })).toBe('ER_ACCESS_DENIED_ERROR');

    const byId = remember(await ok<Lease>(['dynamic', 'lease', 'create', '--record-uid', ids.dyn1]));
    expect(byId).toMatchObject({ record_uid: ids.dyn1, path: 'db:mariadb:dyn1' });
    expect(await myLoginError(byId.connection_string)).toBeUndefined();
    const lookup = await ok(['dynamic', 'lease', 'lookup', lease.lease_id]);
    expect(lookup).toMatchObject({ lease_id: lease.lease_id, username: lease.username, state: 'active', engine: 'mysql' });
    expect(lookup).not.toHaveProperty('password');
  });

  test('revoke kills an open session, blocks new logins and drops the user; revoking twice succeeds', async () => {
    const lease = (revokedLease = await create('db:mariadb:e2e'));
    const session = await myConnect(lease.connection_string);
    expect((await session.query('SELECT 1 AS one'))[0]).toEqual([{ one: 1 }]);

    expectExit(await run(['dynamic', 'lease', 'revoke', lease.lease_id]), 0);
    await expect(session.query('SELECT 1')).rejects.toThrow();
    session.destroy();
    // For a user that no longer exists MariaDB authenticates against a fake account whose
    // plugin varies, so the refusal comes as either access-denied code.
    expect(await myLoginError(lease.connection_string)).toMatch(/^ER_ACCESS_DENIED(_NO_PASSWORD)?_ERROR$/);
    expect(await myUserExists(lease.username)).toBe(false);

    expectExit(await run(['dynamic', 'lease', 'revoke', lease.lease_id]), 0);
    expect(await ok(['dynamic', 'lease', 'lookup', lease.lease_id])).toMatchObject({ state: 'revoked' });
    expect((await listed()).map((l) => l.lease_id)).not.toContain(lease.lease_id);
    expect(await listed(['--all'])).toContainEqual(expect.objectContaining({ lease_id: lease.lease_id, state: 'revoked' }));
  });

  test('passwords full of URL-special characters still give working connection strings', async () => {
    const leases: Lease[] = [];
    for (let i = 0; i < 6; i++) leases.push(await create('db:mariadb:e2e'));
    for (const lease of leases) {
      const url = new URL(lease.connection_string);
      expect(url.protocol).toBe('mysql:');
      expect(decodeURIComponent(url.username)).toBe(lease.username);
      expect(decodeURIComponent(url.password)).toBe(lease.password);
      expect({ host: url.hostname, port: url.port, path: url.pathname }).toEqual({ host: '127.0.0.1', port: '3306', path: `/${DB}` });
      expect(await myLoginError(lease.connection_string)).toBeUndefined();
    }
    expect(passwords.join('')).toMatch(/[#%@:?=+]/);
  });

  test('20 concurrent creates: 20 distinct working users and 20 active leases', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, () => run(['dynamic', 'lease', 'create', '--path', 'db:mariadb:conc'])));
    const leases = results.filter((r) => r.exitCode === 0).map((r) => remember(JSON.parse(r.stdout) as Lease));
    const ledger = await listed(['--path', 'db:mariadb:conc']);
    expect(ledger.map((l) => l.state)).toEqual(Array(ledger.length).fill('active'));
    expect(await myManagedUsers(CONC_PREFIX)).toEqual(ledger.map((l) => l.username).sort());

    expect(results.filter((r) => r.exitCode !== 0).map((r) => `exit ${r.exitCode}: ${r.stderr}`)).toEqual([]);
    const usernames = leases.map((l) => l.username).sort();
    expect(new Set(usernames).size).toBe(20);
    expect(await Promise.all(leases.map((l) => myLoginError(l.connection_string)))).toEqual(Array(20).fill(undefined));
    expect(ledger).toHaveLength(20);
    expect(ledger.map((l) => l.username).sort()).toEqual(usernames);

    expectExit(await run(['dynamic', 'lease', 'revoke', '--prefix', 'db:mariadb:conc', '--yes']), 0);
    expect(await myManagedUsers(CONC_PREFIX)).toEqual([]);
  });

  test('SIGKILL at random points during 20 creates, then a sweep: the target holds exactly the active leases', async () => {
    const started = Date.now();
    await create('db:mariadb:kill');
    const window = Math.max(400, Math.round(1.2 * (Date.now() - started)));
    const results = [];
    for (let wave = 0; wave < 10; wave++) {
      const children = Array.from({ length: 2 }, () => {
        const child = execa(SY_BIN, ['dynamic', 'lease', 'create', '--path', 'db:mariadb:kill'], {
          env: { PATH: process.env.PATH, ...sy.env }, extendEnv: false, reject: false, stdin: 'ignore', timeout: 60_000,
        });
        const timer = setTimeout(() => child.kill('SIGKILL'), Math.floor(Math.random() * window));
        return child.finally(() => clearTimeout(timer));
      });
      results.push(...(await Promise.all(children)));
    }
    const completed = results.filter((r) => r.exitCode === 0).map((r) => remember(JSON.parse(String(r.stdout)) as Lease));
    for (const r of results) stderrs.push(String(r.stderr ?? ''));
    const pending = (await listed(['--path', 'db:mariadb:kill'])).filter((l) => l.state !== 'active').length;
    console.info(`SIGKILL (MariaDB): ${completed.length}/20 completed; before the sweep ${pending} unfinished leases, ${(await myManagedUsers(KILL_PREFIX)).length} users`);

    const sweep = await run(['dynamic', 'sweep'], { env: { SY_NO_SWEEP: '0' } });
    expectExit(sweep, 0);
    const live = await listed(['--path', 'db:mariadb:kill']);
    expect(live.filter((l) => l.state !== 'active')).toEqual([]);
    const users = await myManagedUsers(KILL_PREFIX);
    expect(users).toEqual(live.map((l) => l.username).sort());
    for (const lease of completed) expect(users).toContain(lease.username);
  });

  test('TTL limits create nothing; durations parse; renew moves expires_at, capped at maxTtl with a warning', async () => {
    const usersBefore = await myManagedUsers(PREFIX);
    const ledgerBefore = await listed(['--all']);
    expectExit(await run(['dynamic', 'lease', 'create', '--path', 'db:mariadb:e2e', '--ttl', '86401']), 2);
    expectExit(await run(['dynamic', 'lease', 'create', '--path', 'db:mariadb:short', '--ttl', '61']), 2);
    expect(await myManagedUsers(PREFIX)).toEqual(usersBefore);
    expect(await listed(['--all'])).toEqual(ledgerBefore);

    const l90 = await create('db:mariadb:e2e', ['--ttl', '90s']);
    expect([l90.lease_duration, ms(l90.expires_at) - ms(l90.created_at)]).toEqual([90, 90_000]);
    const l5400 = await create('db:mariadb:e2e', ['--ttl', '1h30m']);
    expect([l5400.lease_duration, ms(l5400.expires_at) - ms(l5400.created_at)]).toEqual([5400, 5400_000]);

    const before = Date.now();
    const renewed = await ok(['dynamic', 'lease', 'renew', l90.lease_id, '--increment', '2h']);
    expect(ms(renewed.expires_at)).toBeGreaterThanOrEqual(before + 7200_000 - 1000);
    expect(ms(renewed.expires_at)).toBeLessThanOrEqual(Date.now() + 7200_000);

    const short = await create('db:mariadb:short');
    const capped = await run(['dynamic', 'lease', 'renew', short.lease_id, '--increment', '1h']);
    expectExit(capped, 0);
    expect(capped.stderr).toMatch(/max(imum)? TTL/i);
    expect(ms(JSON.parse(capped.stdout).expires_at)).toBeLessThanOrEqual(ms(short.created_at) + 60_000);
  });

  test('--format env gives MYSQL_* variables the mariadb client logs in with; --output is 0600', async () => {
    const env = await run(['dynamic', 'lease', 'create', '--path', 'db:mariadb:e2e', '--format', 'env']);
    expectExit(env, 0);
    const names = env.stdout.trimEnd().split('\n').map((line) => line.replace(/^export /, '').split('=')[0]);
    expect(names.sort()).toEqual(['DATABASE_URL', 'MYSQL_DATABASE', 'MYSQL_HOST', 'MYSQL_PWD', 'MYSQL_TCP_PORT', 'MYSQL_USER', 'SY_LEASE_ID']);
    writeFileSync(join(sy.home, 'env'), env.stdout);
    const shell = await execa('sh', ['-c', 'eval "$(cat env)"; printf "%s\\n%s" "$MYSQL_USER" "$MYSQL_PWD"'], {
      cwd: sy.home, env: { PATH: process.env.PATH }, extendEnv: false, reject: false,
    });
    const [user, password] = String(shell.stdout).split('\n');
    passwords.push(password);
    expect(user).toMatch(SY_MARKER);
    // mariadb reads MYSQL_HOST, MYSQL_TCP_PORT and MYSQL_PWD itself.
    const viaShell = await execa('sh', ['-c', 'eval "$(cat env)"; mariadb --protocol=tcp -N -B -u "$MYSQL_USER" -D "$MYSQL_DATABASE" -e "SELECT CURRENT_USER(), COUNT(*) FROM items"'], {
      cwd: sy.home, env: { PATH: process.env.PATH }, extendEnv: false, reject: false,
    });
    expect({ exitCode: viaShell.exitCode, stdout: String(viaShell.stdout) }).toEqual({ exitCode: 0, stdout: `${user}@%\t2` });

    const creds = join(sy.home, 'creds.json');
    expectExit(await run(['dynamic', 'lease', 'create', '--path', 'db:mariadb:e2e', '--output', creds]), 0);
    expect(statSync(creds).mode & 0o777).toBe(0o600);
    const fromFile = remember(JSON.parse(readFileSync(creds, 'utf8')) as Lease);
    expect(await myLoginError({ host: fromFile.host, port: fromFile.port, user: fromFile.username, password: fromFile.password, database: fromFile.database })).toBeUndefined();
  });

  test('injection attempts are refused at create time (2); a grant on a missing table fails cleanly (1)', async () => {
    const attempts: Record<string, unknown>[] = [
      { grantPermissions: { what: 'SELECT; DROP TABLE items', where: `${DB}.*` } },
      { grantPermissions: { what: 'SELECT', where: `\`${DB}\`.*` } },
      { grantPermissions: { what: 'SELECT', where: `${DB}.items\`; DROP DATABASE ${DB}; --` } },
      { grantPermissions: { what: 'SELECT', where: `${DB}.items' OR '1'='1` } },
      { grantPermissions: { what: 'SELECT', where: `${DB}.items /* c */` } },
      { grantPermissions: { what: 'SELECT', where: `${DB}.* -- c` } },
      { grantPermissions: { what: 'SELECT', where: `${DB}.items#` } },
      { grantPermissions: { what: 'SELECT', where: `${DB}.*` }, userPrefix: 'x; drop' },
      { grantPermissions: { what: 'SELECT', where: `${DB}.*` }, userPrefix: "x'@'%" },
    ];
    for (const [i, extra] of attempts.entries()) {
      const path = `db:mariadb:inj${i}`;
      const result = await run(['secret', 'create', path, '--attributes', dynamicAttributes(extra)]);
      expect({ extra, exitCode: result.exitCode }).toEqual({ extra, exitCode: 2 });
      expectExit(await run(['secret', 'describe', path]), 3);
    }
    expect(Number((await myAdminQuery(`SELECT COUNT(*) AS n FROM \`${DB}\`.items`))[0].n)).toBe(2);

    const usersBefore = await myManagedUsers(PREFIX);
    const missing = await run(['dynamic', 'lease', 'create', '--path', 'db:mariadb:nosuch']);
    expectExit(missing, 1);
    expect(missing.stderr).toMatch(/no_such_table/);
    expect(missing.stderr).toContain('127.0.0.1:3306');
    expect(await myManagedUsers(PREFIX)).toEqual(usersBefore);
    expect(await listed(['--path', 'db:mariadb:nosuch'])).toEqual([]);

    for (const args of [['lookup', randomUUID()], ['renew', randomUUID()], ['revoke', randomUUID()], ['create', '--record-uid', randomUUID()]]) {
      const result = await run(['dynamic', 'lease', ...args]);
      expect({ args, exitCode: result.exitCode, stderr: result.stderr }).toEqual({ args, exitCode: 3, stderr: expect.stringMatching(/not found|no lease|no secret/i) });
    }
  });

  test('the audit log records creates and revokes, and no password is in it or in any stderr', async () => {
    const text = readFileSync(join(sy.env.SY_HOME, 'audit.log'), 'utf8');
    const lines = text.split('\n').filter(Boolean).map((line) => JSON.parse(line));
    for (const lease of issued) {
      expect(lines).toContainEqual(expect.objectContaining({ action: 'lease.create', lease_id: lease.lease_id, db_user: lease.username, outcome: 'success' }));
    }
    expect(lines).toContainEqual(expect.objectContaining({ action: 'lease.revoke', lease_id: revokedLease.lease_id, db_user: revokedLease.username, outcome: 'success' }));
    expect(passwords.length).toBeGreaterThan(10);
    for (const password of passwords) {
      expect(text.includes(password)).toBe(false);
      for (const stderr of stderrs) expect(stderr.includes(password)).toBe(false);
    }
  });
});
