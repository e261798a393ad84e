/**
 * `sy run`: a lease for the life of one command. The command gets the engine's variables
 * and DATABASE_URL and uses them for real (psql against the SCRAM cluster of the jest
 * global setup, which checks passwords and VALID UNTIL; the mariadb client against the
 * local MariaDB); sy renews while it runs, forwards signals, passes its status through,
 * and revokes when it ends. A crash of sy itself leaves a lease that the sweep revokes.
 * The command never gets a variable that opens the store, and psql, mysql and mariadb
 * connect as the lease user with no flags (MySQL clients through a private option file
 * named by MYSQL_HOME, removed when sy run ends, by a signal too).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { makeHome, SY_BIN, type SyHome } from '../helpers/cli.js';
import {
  createMyDatabase,
  createPgDatabase,
  dropMyDatabase,
  dropMyUsers,
  dropPgDatabase,
  dropPgRoles,
  MARIADB,
  ms,
  myManagedUsers,
  myUserExists,
  pgLoginError,
  pgManagedRoles,
  pgRoleExists,
  pgValidUntil,
  scramCluster,
  tag,
} from '../helpers/db.js';

const T = tag();
const DB = `sy_e2e_run_${T}`;
const PREFIX = `r${T}_`;
const PG = 'db:postgresql:run';
const MY = 'db:mariadb:run';
const admin = scramCluster();

let sy: SyHome;

/** Fails with the command's stderr in the message when the exit status is not `code`. */
function expectStatus(result: { exitCode?: number; stderr: unknown }, code: number): void {
  if (result.exitCode !== code) throw new Error(`exit status ${result.exitCode}, expected ${code}; stderr:\n${String(result.stderr)}`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until<T>(what: string, probe: () => Promise<T | undefined | false | null> | T | undefined | false | null, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** `sy run` as a child process of the test (no terminal), with extra variables for the command. */
const running = new Set<ReturnType<typeof execa>>();
function startRun(args: string[], env: Record<string, string> = {}) {
  const child = execa(SY_BIN, ['run', ...args], {
    env: { PATH: process.env.PATH, ...sy.env, ...env },
    extendEnv: false,
    reject: false,
    stdin: 'ignore',
    timeout: 60_000,
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  return child;
}

interface LeaseRow {
  lease_id: string;
  path: string;
  username: string;
  state: string;
  created_at: string;
  expires_at: string;
}

const leases = async (path: string): Promise<LeaseRow[]> => (await sy.json<{ data: LeaseRow[] }>(['dynamic', 'lease', 'list', '--all', '--path', path, '--limit', '1000'])).data;
const leaseIds = async (path: string) => new Set((await leases(path)).map((l) => l.lease_id));

/** The one lease of `path` that is not in `before`. */
async function newLease(path: string, before: Set<string>): Promise<LeaseRow> {
  const fresh = (await leases(path)).filter((l) => !before.has(l.lease_id));
  expect(fresh).toHaveLength(1);
  return fresh[0];
}

beforeAll(async () => {
  await createPgDatabase(DB, ['CREATE TABLE t (x int)', 'INSERT INTO t VALUES (1), (2), (3)']);
  await createMyDatabase(DB, ['CREATE TABLE {{db}}.t (x int)', 'INSERT INTO {{db}}.t VALUES (1), (2), (3)']);
  sy = await makeHome();
  const secrets: [string, object, object][] = [
    ['db:postgresql:root', { type: 'postgresql' }, { host: admin.host, port: admin.port, username: admin.user, password: admin.password, database: DB }],
    ['db:mariadb:root', { type: 'mariadb' }, { host: MARIADB.host, port: MARIADB.port, username: MARIADB.user, password: MARIADB.password, database: DB }],
    [PG, { linkConfig: { linkType: 'dynamic', linkedSecret: 'db:postgresql:root' }, grantPermissions: { what: 'SELECT', where: '*.*' }, ttl: 600, userPrefix: PREFIX }, {}],
    [MY, { linkConfig: { linkType: 'dynamic', linkedSecret: 'db:mariadb:root' }, grantPermissions: { what: 'SELECT', where: `${DB}.*` }, ttl: 600, userPrefix: PREFIX }, {}],
  ];
  for (const [path, attributes, data] of secrets) {
    const created = await sy.run(['secret', 'create', path, '--attributes', JSON.stringify(attributes), '--data', JSON.stringify(data)]);
    if (created.exitCode !== 0) throw new Error(`creating ${path}: ${created.stderr}`);
  }
});

afterAll(async () => {
  // A failed test may leave a `sy run` behind: SIGTERM reaches its command too.
  for (const child of running) child.kill('SIGTERM');
  await Promise.all([...running].map((child) => child.catch(() => undefined)));
  if (sy) {
    await sy.run(['dynamic', 'lease', 'revoke', '--prefix', 'db', '--yes']).catch(() => undefined);
    sy.cleanup();
  }
  await dropPgRoles(await pgManagedRoles(PREFIX), [DB]);
  await dropMyUsers(await myManagedUsers(PREFIX));
  await dropPgDatabase(DB);
  await dropMyDatabase(DB);
});

describe('sy run', () => {
  test('PostgreSQL: the command gets PG* and DATABASE_URL, logs in as a user that exists while it runs and is gone after', async () => {
    const before = await leaseIds(PG);
    const script = [
      'echo "user=$PGUSER host=$PGHOST port=$PGPORT db=$PGDATABASE url=${DATABASE_URL%%://*}"',
      'psql -X -v ON_ERROR_STOP=1 -Atc "select current_user, (select count(*) from pg_roles where rolname = \'$PGUSER\'), (select count(*) from t)"',
    ].join('\n');
    const result = await startRun(['--path', PG, '--', 'sh', '-c', script]);
    expectStatus(result, 0);
    const lease = await newLease(PG, before);
    const lines = String(result.stdout).trim().split('\n');
    expect(lines[0]).toBe(`user=${lease.username} host=127.0.0.1 port=${admin.port} db=${DB} url=postgresql`);
    expect(lines[1]).toBe(`${lease.username}|1|3`);
    // Right after sy exits: revoked in the ledger and on the server.
    expect(lease.state).toBe('revoked');
    expect(await pgRoleExists(lease.username)).toBe(false);
  });

  test("the command's exit status is passed through, and the lease is revoked", async () => {
    const before = await leaseIds(PG);
    const result = await startRun(['--path', PG, '--', 'sh', '-c', 'exit 7']);
    expect(result.exitCode).toBe(7);
    const lease = await newLease(PG, before);
    expect(lease.state).toBe('revoked');
    expect(await pgRoleExists(lease.username)).toBe(false);
  });

  test('MariaDB: the command gets MYSQL_* and DATABASE_URL, and the mariadb client logs in with them', async () => {
    const before = await leaseIds(MY);
    const script = [
      'echo "user=$MYSQL_USER host=$MYSQL_HOST port=$MYSQL_TCP_PORT db=$MYSQL_DATABASE url=${DATABASE_URL%%://*}"',
      'mariadb -N -B -u "$MYSQL_USER" "$MYSQL_DATABASE" -e "select current_user(), (select count(*) from t)"',
    ].join('\n');
    const result = await startRun(['--path', MY, '--', 'sh', '-c', script]);
    expectStatus(result, 0);
    const lease = await newLease(MY, before);
    const lines = String(result.stdout).trim().split('\n');
    expect(lines[0]).toBe(`user=${lease.username} host=127.0.0.1 port=3306 db=${DB} url=mysql`);
    expect(lines[1]).toMatch(new RegExp(`^${lease.username}@\\S+\\t3$`));
    expect(lease.state).toBe('revoked');
    expect(await myUserExists(lease.username)).toBe(false);
  });

  test('SIGTERM to sy run reaches the command; sy exits 143 and the user is gone', async () => {
    const dir = join(sy.home, 'sigterm');
    const before = await leaseIds(PG);
    const script = `mkdir -p "$DIR"; trap 'kill $p; echo term > "$DIR/got"; exit 143' TERM; sleep 30 & p=$!; echo "$PGUSER" > "$DIR/ready"; wait $p`;
    const child = startRun(['--path', PG, '--', 'sh', '-c', script], { DIR: dir });
    const username = await until('the command to start', () => existsSync(join(dir, 'ready')) && readFileSync(join(dir, 'ready'), 'utf8').trim());
    expect(await pgRoleExists(username)).toBe(true);
    child.kill('SIGTERM');
    const result = await child;
    expect(result.exitCode).toBe(143);
    expect(readFileSync(join(dir, 'got'), 'utf8').trim()).toBe('term');
    const lease = await newLease(PG, before);
    expect(lease).toMatchObject({ username, state: 'revoked' });
    expect(await pgRoleExists(username)).toBe(false);
  });

  test('a 3 s lease is renewed while a 6 s command runs: at second 5 it still logs in', async () => {
    const before = await leaseIds(PG);
    const script = [
      'sleep 5',
      'psql -X -Atc "select current_user" 2>&1; echo "login=$?"',
      'sleep 1',
    ].join('\n');
    const started = Date.now();
    const child = startRun(['--path', PG, '--ttl', '3', '--', 'sh', '-c', script]);
    const first = await until('the lease to be active', async () => (await leases(PG)).find((l) => !before.has(l.lease_id) && l.state === 'active'));
    const firstUntil = await until('the role', () => pgValidUntil(first.username));
    expect(Math.abs(firstUntil.getTime() - ms(first.expires_at))).toBeLessThan(1000);
    expect(ms(first.expires_at) - ms(first.created_at)).toBe(3000);
    // Around second 4.5, the lease and VALID UNTIL have both moved past the first expiry.
    await sleep(Math.max(0, 4500 - (Date.now() - started)));
    const later = (await leases(PG)).find((l) => l.lease_id === first.lease_id)!;
    expect(later.state).toBe('active');
    expect(ms(later.expires_at)).toBeGreaterThan(ms(first.expires_at));
    const laterUntil = await pgValidUntil(first.username);
    expect(laterUntil!.getTime()).toBeGreaterThan(firstUntil.getTime());
    expect(laterUntil!.getTime()).toBeGreaterThan(Date.now());

    const result = await child;
    expectStatus(result, 0);
    expect(String(result.stdout).trim().split('\n')).toEqual([first.username, 'login=0']);
    const audit = await sy.json<{ data: { action: string; outcome: string }[] }>(['audit', 'list', '--lease', first.lease_id, '--format', 'json']);
    const actions = audit.data.map((e) => e.action);
    expect(actions.filter((a) => a === 'lease.renew').length).toBeGreaterThanOrEqual(2);
    expect(actions).toContain('lease.revoke');
    expect(await pgRoleExists(first.username)).toBe(false);
  });

  test('a crash of sy run (SIGKILL) leaves a lease that expires on the server and that a later sweep revokes', async () => {
    const dir = join(sy.home, 'crash');
    const before = await leaseIds(PG);
    const script = 'mkdir -p "$DIR"; printf %s "$PGPASSWORD" > "$DIR/password"; echo "$PGUSER" > "$DIR/user"; echo $$ > "$DIR/pid.tmp"; mv "$DIR/pid.tmp" "$DIR/pid"; exec sleep 30';
    const child = startRun(['--path', PG, '--ttl', '3', '--', 'sh', '-c', script], { DIR: dir });
    const pid = await until('the command to start', () => existsSync(join(dir, 'pid')) && Number(readFileSync(join(dir, 'pid'), 'utf8')));
    const username = readFileSync(join(dir, 'user'), 'utf8').trim();
    const password = readFileSync(join(dir, 'password'), 'utf8');
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    process.kill(pid, 'SIGKILL'); // the orphaned command (started by this test through sy) still holds the pipes
    await child;

    const lease = await newLease(PG, before);
    expect(lease).toMatchObject({ username, state: 'active' });
    expect(await pgRoleExists(username)).toBe(true);
    await sleep(Math.max(0, ms(lease.expires_at) - Date.now() + 1200));
    // Past its expiry the orphan no longer logs in (VALID UNTIL), even before any sweep.
    expect(await pgLoginError({ host: admin.host, port: admin.port, user: username, password, database: DB })).toBe('28P01');
    // With the sweep left on, the next sy command revokes it.
    const next = await sy.run(['dynamic', 'lease', 'list', '--all', '--path', PG], { env: { SY_NO_SWEEP: '0' } });
    expect(next.exitCode).toBe(0);
    expect((await leases(PG)).find((l) => l.lease_id === lease.lease_id)).toMatchObject({ state: 'revoked' });
    expect(await pgRoleExists(username)).toBe(false);
  });

  test('a command that does not exist: exit 127, and the lease is revoked', async () => {
    const before = await leaseIds(PG);
    const result = await startRun(['--path', PG, '--', `no-such-command-${T}`, '--flag']);
    expect(result.exitCode).toBe(127);
    expect(String(result.stderr)).toMatch(/not found/);
    const lease = await newLease(PG, before);
    expect(lease.state).toBe('revoked');
    expect(await pgRoleExists(lease.username)).toBe(false);
  });
});

describe('what the command gets', () => {
  /** Every variable that opens the store, or says where it is. */
  const STORE_VARIABLES = ['SY_HOME', 'SY_MASTER_KEY', 'SY_MASTER_KEY_FILE', 'SY_PASSPHRASE', 'SY_NEW_MASTER_KEY', 'SY_NEW_MASTER_KEY_FILE', 'SY_NEW_PASSPHRASE'];

  test('no variable that opens the store reaches the command; the others do', async () => {
    const keyFile = join(sy.home, 'key');
    writeFileSync(keyFile, sy.env.SY_MASTER_KEY, { mode: 0o600 });
    const extra = {
      SY_MASTER_KEY_FILE: keyFile,
      SY_PASSPHRASE: `passphrase-${T}`,
      SY_NEW_MASTER_KEY: sy.env.SY_MASTER_KEY,
      SY_NEW_MASTER_KEY_FILE: keyFile,
      SY_NEW_PASSPHRASE: `new-passphrase-${T}`,
      KEEP_ME: `kept-${T}`,
    };
    const result = await startRun(['--path', PG, '--', 'env'], extra);
    expectStatus(result, 0);
    const names = String(result.stdout).split('\n').map((line) => line.split('=')[0]);
    expect(names).toEqual(expect.arrayContaining(['PGUSER', 'PGPASSWORD', 'DATABASE_URL', 'KEEP_ME', 'PATH']));
    expect(names.filter((name) => STORE_VARIABLES.includes(name))).toEqual([]);
    for (const value of [sy.env.SY_MASTER_KEY, sy.env.SY_HOME, keyFile, extra.SY_PASSPHRASE, extra.SY_NEW_PASSPHRASE]) {
      expect(String(result.stdout)).not.toContain(value);
    }
  });

  test('psql with no flags connects as the lease user (the SCRAM cluster checks the password)', async () => {
    const before = await leaseIds(PG);
    const result = await startRun(['--path', PG, '--', 'psql', '-X', '-Atc', 'select current_user, current_database()']);
    expectStatus(result, 0);
    const lease = await newLease(PG, before);
    expect(String(result.stdout).trim()).toBe(`${lease.username}|${DB}`);
  });

  test('a PGSERVICE of the caller does not override the lease', async () => {
    const dir = join(sy.home, 'pgservice');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'pg_service.conf'), `[other]\nhost=127.0.0.1\nport=${admin.port}\nuser=${admin.user}\ndbname=postgres\n`);
    const before = await leaseIds(PG);
    const result = await startRun(['--path', PG, '--', 'psql', '-X', '-Atc', 'select current_user'], { PGSERVICE: 'other', PGSERVICEFILE: join(dir, 'pg_service.conf') });
    expectStatus(result, 0);
    const lease = await newLease(PG, before);
    expect(String(result.stdout).trim()).toBe(lease.username);
  });

  for (const client of ['mariadb', 'mysql']) {
    test(`${client} with no flags connects as the lease user, to its database`, async () => {
      const before = await leaseIds(MY);
      const result = await startRun(['--path', MY, '--', client, '-N', '-B', '-e', 'select current_user(), database(), (select count(*) from t)']);
      expectStatus(result, 0);
      const lease = await newLease(MY, before);
      expect(String(result.stdout).trim()).toBe(`${lease.username}@%\t${DB}\t3`);
      expect(lease.state).toBe('revoked');
    });
  }

  test('the option file alone carries the credentials; mariadb-admin and mysqldump read it too', async () => {
    const script = [
      'unset MYSQL_PWD MYSQL_HOST MYSQL_TCP_PORT MYSQL_USER MYSQL_DATABASE',
      'mariadb -N -B -e "select current_user()"',
      'mariadb-admin ping',
      'mysqldump --skip-lock-tables --no-data "$0" t | grep -c "CREATE TABLE"',
    ].join('\n');
    const before = await leaseIds(MY);
    const result = await startRun(['--path', MY, '--', 'sh', '-c', script, DB]);
    expectStatus(result, 0);
    const lease = await newLease(MY, before);
    expect(String(result.stdout).trim().split('\n')).toEqual([`${lease.username}@%`, 'mysqld is alive', '1']);
  });

  test('the option file is private (0700 directory, 0600 file) and gone once sy run exits', async () => {
    const result = await startRun(['--path', MY, '--', 'sh', '-c', 'echo "$MYSQL_HOME"; stat -c %a "$MYSQL_HOME" "$MYSQL_HOME/my.cnf"']);
    expectStatus(result, 0);
    const [dir, dirMode, fileMode] = String(result.stdout).trim().split('\n');
    expect([dirMode, fileMode]).toEqual(['700', '600']);
    expect(dir).toMatch(/^\//);
    expect(existsSync(dir)).toBe(false);
  });

  test('a ~/.my.cnf that would override the lease is named in a warning', async () => {
    const home = join(sy.home, 'mycnf-home');
    mkdirSync(home, { recursive: true });
    const quiet = await startRun(['--path', MY, '--', 'true'], { HOME: home });
    expectStatus(quiet, 0);
    expect(String(quiet.stderr)).toBe('');
    writeFileSync(join(home, '.my.cnf'), '[client]\nuser = root\n');
    const warned = await startRun(['--path', MY, '--', 'true'], { HOME: home });
    expectStatus(warned, 0);
    expect(String(warned.stderr)).toMatch(/^warning: ~\/\.my\.cnf sets connection options[^\n]*$/);
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    test(`the option file is removed when sy run gets ${signal}`, async () => {
      const marks = join(sy.home, `optfile-${signal}`);
      const script = `mkdir -p "$DIR"; trap 'kill $p; exit 1' TERM INT; sleep 30 & p=$!; echo "$MYSQL_HOME" > "$DIR/home"; wait $p`;
      const child = startRun(['--path', MY, '--', 'sh', '-c', script], { DIR: marks });
      const dir = await until('the command to start', () => existsSync(join(marks, 'home')) && readFileSync(join(marks, 'home'), 'utf8').trim());
      expect(existsSync(join(dir, 'my.cnf'))).toBe(true);
      child.kill(signal);
      await child;
      expect(existsSync(dir)).toBe(false);
    });
  }
});
