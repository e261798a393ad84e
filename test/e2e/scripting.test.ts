/**
 * sy as a shell script uses it, through the built bin/sy, real shells and real clients:
 * `--format env` lines that sh, bash and zsh `eval` and psql or mariadb then log in with;
 * `--format dotenv` lines read the way Docker's --env-file reads them; `revoke --prefix`
 * by whole path segments (and what bash completion offers for it); `--force` that needs
 * `--yes` without a terminal; renew that never shortens a lease nor revives an expired one.
 * Targets: the SCRAM cluster of the jest global setup (it checks passwords) and the local
 * MariaDB.
 */
import { execa } from 'execa';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { leaseRunner, makeHome, ROOT, type Lease, type SyHome } from '../helpers/cli.js';
import {
  createMyDatabase,
  createPgDatabase,
  dropMyDatabase,
  dropMyUsers,
  dropPgDatabase,
  dropPgRoles,
  expectExit,
  MARIADB,
  ms,
  myManagedUsers,
  pgManagedRoles,
  pgRoleExists,
  pgValidUntil,
  scramCluster,
  SY_MARKER,
  tag,
} from '../helpers/db.js';
import { Pane, shq } from '../helpers/tmux.js';

const T = tag();
const DB = `sy_e2e_scr_${T}`;
const PREFIX = `s${T}_`;
const admin = scramCluster();

let sy: SyHome;
const { run, ok, create, listed, passwords, stderrs } = leaseRunner(() => sy);

/** A dynamic secret on the SCRAM cluster: ttl 10 minutes, at most an hour. */
const pgDynamic = { linkConfig: { linkType: 'dynamic', linkedSecret: 'db:postgresql:root' }, grantPermissions: { what: 'SELECT', where: '*.*' }, ttl: 600, maxTtl: 3600, userPrefix: PREFIX };
const PG_PATHS = ['db:postgresql', 'db:postgresql:dyn1', 'db:postgresqlx:a'];

beforeAll(async () => {
  await createPgDatabase(DB, ['CREATE TABLE t (x int)', 'INSERT INTO t VALUES (1)']);
  await createMyDatabase(DB, ['CREATE TABLE {{db}}.t (x int)']);
  sy = await makeHome();
  const secrets: [string, object, object][] = [
    ['db:postgresql:root', { type: 'postgresql' }, { host: admin.host, port: admin.port, username: admin.user, password: admin.password, database: DB }],
    ...PG_PATHS.map((path): [string, object, object] => [path, pgDynamic, {}]),
    ['db:mariadb:root', { type: 'mariadb' }, { host: MARIADB.host, port: MARIADB.port, username: MARIADB.user, password: MARIADB.password, database: DB }],
    ['db:mariadb:dyn1', { linkConfig: { linkType: 'dynamic', linkedSecret: 'db:mariadb:root' }, grantPermissions: { what: 'SELECT', where: `${DB}.*` }, ttl: 600, userPrefix: PREFIX }, {}],
  ];
  for (const [path, attributes, data] of secrets) {
    await ok(['secret', 'create', path, '--attributes', JSON.stringify(attributes), '--data', JSON.stringify(data)]);
  }
});

afterAll(async () => {
  if (sy) {
    await run(['dynamic', 'lease', 'revoke', '--prefix', 'db', '--yes', '--force']).catch(() => undefined);
    sy.cleanup();
  }
  await dropPgRoles(await pgManagedRoles(PREFIX), [DB]);
  await dropMyUsers(await myManagedUsers(PREFIX));
  await dropPgDatabase(DB);
  await dropMyDatabase(DB);
});

/** A shell with nothing of the test's environment but PATH and the store's variables. */
async function inShell(shell: string, script: string) {
  const flags = shell === 'bash' ? ['--norc', '--noprofile'] : shell === 'zsh' ? ['-f'] : [];
  const result = await execa('env', ['-i', `PATH=${join(ROOT, 'bin')}:${process.env.PATH}`, `HOME=${sy.home}`, ...Object.entries(sy.env).map(([k, v]) => `${k}=${v}`), shell, ...flags, '-c', script], {
    reject: false,
    stdin: 'ignore',
    cwd: sy.home,
    timeout: 60_000,
  });
  return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
}

const activeUsers = async (): Promise<Set<string>> => new Set((await listed()).map((l) => l.username));

describe('--format env: export lines that sh, bash and zsh eval', () => {
  test('every line is export KEY=\'value\'', async () => {
    const env = await run(['dynamic', 'lease', 'create', '--path', 'db:postgresql:dyn1', '--format', 'env']);
    expectExit(env, 0);
    const lines = env.stdout.trimEnd().split('\n');
    for (const line of lines) expect(line).toMatch(/^export [A-Z_][A-Z0-9_]*='[^']*'$/);
    expect(lines.map((line) => line.slice('export '.length).split('=')[0]).sort()).toEqual(['DATABASE_URL', 'PGDATABASE', 'PGHOST', 'PGPASSWORD', 'PGPORT', 'PGUSER', 'SY_LEASE_ID']);
  });

  test('SY_LEASE_ID: a script that evaluated the lines renews and revokes the very lease it got', async () => {
    const result = await inShell(
      'bash',
      [
        'set -e',
        'eval "$(sy dynamic lease create --path db:postgresql:dyn1 --format env)"',
        'psql -X -Atc "select current_user" > user.txt',
        'sy dynamic lease renew "$SY_LEASE_ID" --increment 20m --filter lease_id',
        'sy dynamic lease revoke "$SY_LEASE_ID" > /dev/null',
        'echo "$PGUSER"',
      ].join('\n'),
    );
    expectExit(result, 0);
    const [renewedId, user] = result.stdout.trim().split('\n');
    expect(readFileSync(join(sy.home, 'user.txt'), 'utf8').trim()).toBe(user);
    const lease = (await listed(['--all'])).find((l) => l.username === user)!;
    expect(lease.lease_id).toBe(renewedId);
    expect(lease.state).toBe('revoked');
    expect(await pgRoleExists(user)).toBe(false);
  });

  test('the README\'s script: one --output file, fields read with jq; renew and revoke by its lease_id; --filter data.password works on it', async () => {
    const result = await inShell(
      'bash',
      [
        'set -e',
        'sy dynamic lease create --path db:postgresql:dyn1 --ttl 10m --output creds.json',
        'PGPASSWORD="$(jq -r .password creds.json)" psql -X -Atc "select current_user" "$(jq -r .connection_string creds.json)" > user.txt',
        'sy dynamic lease renew "$(jq -r .lease_id creds.json)" --increment 30m > /dev/null',
        'sy dynamic lease revoke "$(jq -r .lease_id creds.json)" > /dev/null',
        'jq -r .username creds.json',
      ].join('\n'),
    );
    expectExit(result, 0);
    const user = result.stdout.trim();
    expect(readFileSync(join(sy.home, 'user.txt'), 'utf8').trim()).toBe(user);
    expect(user).toMatch(SY_MARKER);
    expect(await pgRoleExists(user)).toBe(false);
    const one = await run(['dynamic', 'lease', 'create', '--path', 'db:postgresql:dyn1', '--filter', 'data.password']);
    expectExit(one, 0);
    expect(one.stdout.trimEnd()).toMatch(/^\S{32}$/);
    passwords.push(one.stdout.trimEnd());
  });

  for (const shell of ['sh', 'bash', 'zsh']) {
    test(`${shell}: after eval, psql with no flags logs in as the lease`, async () => {
      const before = await activeUsers();
      const result = await inShell(shell, 'eval "$(sy dynamic lease create --path db:postgresql:dyn1 --format env)" && psql -X -Atc "select current_user, current_database()"');
      expectExit(result, 0);
      const [user, database] = result.stdout.trim().split('|');
      expect(user).toMatch(SY_MARKER);
      expect(database).toBe(DB);
      expect(before.has(user)).toBe(false);
      expect(await activeUsers()).toContain(user);
    });

    test(`${shell}: after eval, mariadb logs in as the lease with -u "$MYSQL_USER" (it reads MYSQL_HOST, MYSQL_TCP_PORT, MYSQL_PWD)`, async () => {
      const result = await inShell(shell, 'eval "$(sy dynamic lease create --path db:mariadb:dyn1 --format env)" && mariadb -N -B -u "$MYSQL_USER" -e "select current_user()" "$MYSQL_DATABASE"');
      expectExit(result, 0);
      expect(result.stdout.trim()).toMatch(new RegExp(`^${PREFIX}[a-z0-9]{10}_sy[0-9a-z]{7}@%$`));
    });
  }

  test('a value with quotes, $, backticks and a line break comes back verbatim in each shell, and runs nothing', async () => {
    const hostile = `it's "$HOME" $(touch pwned) \`touch pwned\`; #x\nline2 \\n`;
    await ok(['secret', 'create', `app:hostile${T}`, '--data', '-'], { input: JSON.stringify({ token: hostile }) });
    for (const shell of ['sh', 'bash', 'zsh']) {
      const result = await inShell(shell, `eval "$(sy secret read app:hostile${T} --format env)" && printf '%s' "$TOKEN"`);
      expectExit(result, 0);
      expect(result.stdout).toBe(hostile);
    }
    expect((await inShell('sh', 'ls pwned 2>/dev/null || echo none')).stdout).toBe('none');
  });
});

describe('--format dotenv: plain KEY=value lines for env files', () => {
  test('Docker --env-file reading: each line is KEY=value taken literally; psql logs in with them', async () => {
    const file = join(sy.home, 'pg.env');
    expectExit(await run(['dynamic', 'lease', 'create', '--path', 'db:postgresql:dyn1', '--format', 'dotenv', '--output', file]), 0);
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    for (const line of lines) expect(line).toMatch(/^[A-Z_][A-Z0-9_]*=[^'"]/);
    const password = lines.find((line) => line.startsWith('PGPASSWORD='))!.slice('PGPASSWORD='.length);
    passwords.push(password);
    // xargs -d '\n' hands each whole line to env as one KEY=value argument, byte for byte,
    // as Docker's --env-file does: no quote removal, no comments after the value.
    const docker = await execa('xargs', ['-d', '\n', '-a', file, 'sh', '-c', 'exec env -i "PATH=$0" "$@" psql -X -Atc "select current_user"', String(process.env.PATH)], {
      reject: false,
      stdin: 'ignore',
    });
    expect({ exitCode: docker.exitCode, stderr: String(docker.stderr) }).toEqual({ exitCode: 0, stderr: '' });
    expect(String(docker.stdout)).toBe(lines.find((line) => line.startsWith('PGUSER='))!.slice('PGUSER='.length));
  });

  test('values are written as they are ( # and quotes included ); a line break, which a line cannot hold, is refused (exit 2)', async () => {
    await ok(['secret', 'create', `app:dotenv${T}`, '--data', JSON.stringify({ token: `a#b c'd"e=f` })]);
    const full = await run(['secret', 'read', `app:dotenv${T}`, '--format', 'dotenv']);
    expectExit(full, 0);
    expect(full.stdout).toBe(`TOKEN=a#b c'd"e=f`); // execa drops the final newline
    await ok(['secret', 'create', `app:multiline${T}`, '--data', JSON.stringify({ token: 'first-line\nsecond-line' })]);
    const refused = await run(['secret', 'read', `app:multiline${T}`, '--format', 'dotenv']);
    expectExit(refused, 2);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toMatch(/^sy: The value of TOKEN has a line break[^\n]*\.$/);
    expect(refused.stderr).not.toContain('first-line');
  });

  test('every command that prints data takes it', async () => {
    for (const args of [['dynamic', 'lease', 'list'], ['secret', 'search', 'db'], ['audit', 'list', '--limit', '1'], ['config', 'list'], ['secret', 'describe', 'db:postgresql:dyn1']]) {
      const result = await run([...args, '--format', 'dotenv']);
      expectExit(result, 0);
      expect(result.stdout).toMatch(/^[A-Z_][A-Z0-9_]*=/);
    }
    const bad = await run(['dynamic', 'lease', 'list', '--format', 'bogus']);
    expectExit(bad, 2);
    expect(bad.stderr).toContain('dotenv');
  });
});

describe('revoke --prefix: whole path segments, case as written', () => {
  beforeAll(async () => {
    await ok(['dynamic', 'lease', 'revoke', '--prefix', 'db', '--yes']);
  });

  /** One new lease on each of the PostgreSQL dynamic secrets, by path. */
  async function leaseEach(): Promise<Map<string, Lease>> {
    const leases = new Map<string, Lease>();
    for (const path of PG_PATHS) leases.set(path, await create(path, ['--ttl', '10m']));
    return leases;
  }
  const stateOf = async (lease: Lease) => (await ok(['dynamic', 'lease', 'lookup', lease.lease_id])).state as string;

  test('db:post, DB:POSTGRESQL and db:postgresqlx: nothing of db:postgresql is revoked', async () => {
    const leases = await leaseEach();
    for (const prefix of ['db:post', 'DB:POSTGRESQL', 'Db:PostgreSQL:dyn1', 'db:postgresql:dyn']) {
      const result = await run(['dynamic', 'lease', 'revoke', '--prefix', prefix, '--yes']);
      expectExit(result, 0);
      expect(JSON.parse(result.stdout)).toEqual({ data: [] });
      expect(result.stderr).toBe(`No lease to revoke under ${prefix}.`);
    }
    for (const lease of leases.values()) expect(await stateOf(lease)).toBe('active');
    const x = await run(['dynamic', 'lease', 'revoke', '--prefix', 'db:postgresqlx', '--yes']);
    expectExit(x, 0);
    expect(JSON.parse(x.stdout).data.map((l: { lease_id: string }) => l.lease_id)).toEqual([leases.get('db:postgresqlx:a')!.lease_id]);
    expect(await stateOf(leases.get('db:postgresql')!)).toBe('active');
    expect(await stateOf(leases.get('db:postgresql:dyn1')!)).toBe('active');
    await ok(['dynamic', 'lease', 'revoke', '--prefix', 'db:postgresql', '--yes']);
  });

  for (const prefix of ['db:postgresql', 'db:postgresql:', 'db/postgresql/', 'db/postgresql']) {
    test(`${prefix} revokes the leases of db:postgresql and db:postgresql:dyn1, not db:postgresqlx:a`, async () => {
      const leases = await leaseEach();
      const result = await run(['dynamic', 'lease', 'revoke', '--prefix', prefix, '--yes']);
      expectExit(result, 0);
      const revoked = JSON.parse(result.stdout).data.map((l: { lease_id: string; state: string }) => [l.lease_id, l.state]);
      expect(revoked.sort()).toEqual([[leases.get('db:postgresql')!.lease_id, 'revoked'], [leases.get('db:postgresql:dyn1')!.lease_id, 'revoked']].sort());
      expect(await pgRoleExists(leases.get('db:postgresql:dyn1')!.username)).toBe(false);
      expect(await stateOf(leases.get('db:postgresqlx:a')!)).toBe('active');
      expect(await pgRoleExists(leases.get('db:postgresqlx:a')!.username)).toBe(true);
      await ok(['dynamic', 'lease', 'revoke', leases.get('db:postgresqlx:a')!.lease_id]);
    });
  }

  test('a prefix that is not a path is refused (exit 2)', async () => {
    for (const prefix of ['db::postgresql', 'db:post gres', ':', 'db:postgresql::']) {
      const result = await run(['dynamic', 'lease', 'revoke', '--prefix', prefix, '--yes']);
      expectExit(result, 2);
      expect(result.stderr).toMatch(/not a valid secret path|path is required/);
    }
  });

  describe('on a terminal', () => {
    let pane: Pane;
    beforeAll(async () => {
      pane = await Pane.start({ env: { PATH: `${join(ROOT, 'bin')}:${process.env.PATH}`, HOME: sy.home, LANG: 'C.UTF-8', ...sy.env }, cwd: sy.home });
    });
    afterAll(() => pane?.kill());

    test('the confirmation names each lease it will revoke, and only those', async () => {
      const leases = await leaseEach();
      const declined = pane.command('sy dynamic lease revoke --prefix db/postgresql/');
      const screen = await declined.waitFor('Revoke 2 leases under db:postgresql?');
      for (const path of ['db:postgresql', 'db:postgresql:dyn1']) {
        const lease = leases.get(path)!;
        expect(screen).toMatch(new RegExp(`^  ${lease.lease_id}  ${path}  ${lease.username}$`, 'm'));
      }
      expect(screen).not.toContain(leases.get('db:postgresqlx:a')!.lease_id);
      pane.type('n');
      pane.press('Enter');
      expect(await declined.status()).toBe(130);
      for (const lease of leases.values()) expect(await stateOf(lease)).toBe('active');
      await ok(['dynamic', 'lease', 'revoke', '--prefix', 'db', '--yes']);
    });

    test('bash completion of --prefix db:m<TAB> gives a prefix that revoke accepts', async () => {
      const lease = await create('db:mariadb:dyn1');
      expect(await pane.command(`source ${shq(join(ROOT, 'completions/sy.bash'))}`).status()).toBe(0);
      pane.type('sy dynamic lease revoke --yes --format json --prefix db:m');
      pane.press('Tab');
      await pane.waitForScreen(/--prefix db:mariadb:\s*$/m);
      pane.type(' >revoked.json');
      const typed = pane.command('');
      expect(await typed.status()).toBe(0);
      const revoked = JSON.parse(readFileSync(join(sy.home, 'revoked.json'), 'utf8')).data;
      expect(revoked.map((l: { lease_id: string; state: string }) => [l.lease_id, l.state])).toEqual([[lease.lease_id, 'revoked']]);
    });
  });
});

describe('--force without a terminal needs --yes', () => {
  test('revoke <id> --force: exit 2, one sentence naming --yes, the lease untouched; with --yes it revokes', async () => {
    const lease = await create('db:postgresql:dyn1');
    const refused = await run(['dynamic', 'lease', 'revoke', lease.lease_id, '--force']); // stdin: /dev/null
    expectExit(refused, 2);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toMatch(/^sy: [^\n]*--yes[^\n]*\.$/);
    expect((await ok(['dynamic', 'lease', 'lookup', lease.lease_id])).state).toBe('active');
    expect(await pgRoleExists(lease.username)).toBe(true);

    const prefixed = await run(['dynamic', 'lease', 'revoke', '--prefix', 'db:postgresql:dyn1', '--force']);
    expectExit(prefixed, 2);
    expect(prefixed.stderr).toContain('--yes');

    const forced = await run(['dynamic', 'lease', 'revoke', lease.lease_id, '--force', '--yes']);
    expectExit(forced, 0);
    expect(JSON.parse(forced.stdout).state).toBe('revoked');
    expect(await pgRoleExists(lease.username)).toBe(false);
  });
});

describe('renew never shortens a lease, and cannot revive an expired one', () => {
  test('an increment shorter than what is left keeps the expiry (exit 0, a notice, the lease printed)', async () => {
    const lease = await create('db:postgresql:dyn1', ['--ttl', '50m']);
    const untilBefore = await pgValidUntil(lease.username);
    for (const args of [[], ['--increment', '5m']]) {
      const renewed = await run(['dynamic', 'lease', 'renew', lease.lease_id, ...args]);
      expectExit(renewed, 0);
      expect(JSON.parse(renewed.stdout)).toMatchObject({ lease_id: lease.lease_id, expires_at: lease.expires_at, state: 'active' });
      expect(renewed.stderr).toMatch(new RegExp(`^Lease ${lease.lease_id} already runs until ${lease.expires_at}[^\\n]*; its expiry is unchanged\\.$`));
    }
    expect((await ok(['dynamic', 'lease', 'lookup', lease.lease_id])).expires_at).toBe(lease.expires_at);
    expect(await pgValidUntil(lease.username)).toEqual(untilBefore);

    // Longer than what is left: extended from now.
    const longer = await ok(['dynamic', 'lease', 'renew', lease.lease_id, '--increment', '55m']);
    expect(ms(longer.expires_at)).toBeGreaterThan(ms(lease.expires_at));
  });

  test('a lease at its max TTL stays there when renewed without --increment', async () => {
    const lease = await create('db:postgresql:dyn1', ['--ttl', '1h']);
    const renewed = await run(['dynamic', 'lease', 'renew', lease.lease_id]);
    expectExit(renewed, 0);
    expect(JSON.parse(renewed.stdout).expires_at).toBe(lease.expires_at);
    expect(renewed.stderr).toBe(`Lease ${lease.lease_id} already runs until ${lease.expires_at}, its max TTL; its expiry is unchanged.`);
  });

  test('an expired lease: exit 1, one sentence, nothing changed in the ledger or on the server', async () => {
    const lease = await create('db:postgresql:dyn1', ['--ttl', '1']);
    const untilBefore = await pgValidUntil(lease.username);
    // expires_at is printed to the second, rounded down: the ledger's expiry is within 1 s after it.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, ms(lease.expires_at) - Date.now() + 1200)));
    const renewed = await run(['dynamic', 'lease', 'renew', lease.lease_id, '--increment', '10m']);
    expectExit(renewed, 1);
    expect(renewed.stdout).toBe('');
    expect(renewed.stderr).toBe(`sy: Lease ${lease.lease_id} expired at ${lease.expires_at} and cannot be renewed.`);
    expect((await ok(['dynamic', 'lease', 'lookup', lease.lease_id])).expires_at).toBe(lease.expires_at);
    expect(await pgValidUntil(lease.username)).toEqual(untilBefore);
    await ok(['dynamic', 'lease', 'revoke', lease.lease_id]);
  });
});

test('no password of a lease ever reached stderr', () => {
  expect(passwords.length).toBeGreaterThan(5);
  for (const stderr of stderrs) for (const password of passwords) expect(stderr).not.toContain(password);
});
