/**
 * `sy agent` as an application uses it: the built bin/sy keeps a lease fresh in a file while
 * an application reconnects with whatever the file holds, several times a second, against
 * the SCRAM cluster of the jest global setup (it checks passwords and VALID UNTIL) and the
 * local MariaDB. Short TTLs make renewals and rotations past the max TTL happen within
 * seconds. The old user stays while it has a session and goes once it closes or the drain
 * deadline passes; SIGTERM leaves nothing; SIGKILL leaves leases the sweep revokes on time.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { execa } from 'execa';
import pg from 'pg';
import { makeHome, SY_BIN, type SyHome } from '../helpers/cli.js';
import {
  createMyDatabase,
  createPgDatabase,
  dropMyDatabase,
  dropMyUsers,
  dropPgDatabase,
  dropPgRoles,
  MARIADB,
  myConnect,
  myManagedUsers,
  myUserExists,
  pgManagedRoles,
  pgRoleExists,
  scramCluster,
  tag,
} from '../helpers/db.js';

const T = tag();
const DB = `sy_e2e_agent_${T}`;
const PREFIX = `a${T}_`;
const PG = 'db:postgresql:agent';
const MY = 'db:mariadb:agent';
const DRAIN = 'db:postgresql:agent-drain';
const admin = scramCluster();

let sy: SyHome;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until<T>(what: string, probe: () => Promise<T | undefined | false | null> | T | undefined | false | null, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

interface FileLease {
  lease_id: string;
  username: string;
  password: string;
  host: string;
  port: number;
  database: string;
  expires_at: string;
}

const running = new Set<ReturnType<typeof execa>>();
function startAgent(args: string[], env: Record<string, string> = {}) {
  const child = execa(SY_BIN, ['agent', ...args], {
    env: { PATH: process.env.PATH, ...sy.env, ...env },
    extendEnv: false,
    reject: false,
    stdin: 'ignore',
    timeout: 90_000,
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  return child;
}

const readLease = (file: string): FileLease | undefined => (existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as FileLease) : undefined);

/** Logs in as whatever the file holds, runs one query, logs out; counts what failed. */
async function application(file: string, engine: 'postgresql' | 'mariadb', stop: () => boolean) {
  const seen = new Set<string>();
  const failures: string[] = [];
  let attempts = 0;
  while (!stop()) {
    const lease = readLease(file)!;
    seen.add(lease.username);
    attempts++;
    try {
      if (engine === 'postgresql') {
        const client = new pg.Client({ host: lease.host, port: lease.port, user: lease.username, password: lease.password, database: lease.database });
        client.on('error', () => undefined);
        await client.connect();
        await client.query('SELECT count(*) FROM t');
        await client.end();
      } else {
        const connection = await myConnect({ host: lease.host, port: lease.port, user: lease.username, password: lease.password, database: lease.database });
        await connection.query('SELECT COUNT(*) FROM t');
        await connection.end();
      }
    } catch (error) {
      failures.push(`${lease.username}: ${(error as Error).message}`);
    }
    await sleep(150);
  }
  return { seen, failures, attempts };
}

const leases = async (path: string) =>
  (await sy.json<{ data: { lease_id: string; username: string; state: string; expires_at: string }[] }>(['dynamic', 'lease', 'list', '--all', '--path', path, '--limit', '1000'])).data;

beforeAll(async () => {
  await createPgDatabase(DB, ['CREATE TABLE t (x int)', 'INSERT INTO t VALUES (1), (2), (3)']);
  await createMyDatabase(DB, ['CREATE TABLE {{db}}.t (x int)', 'INSERT INTO {{db}}.t VALUES (1), (2), (3)']);
  sy = await makeHome();
  const recipe = (base: string, where: string) => ({ linkConfig: { linkType: 'dynamic', linkedSecret: base }, grantPermissions: { what: 'SELECT', where }, ttl: 3, maxTtl: 6, userPrefix: PREFIX });
  const secrets: [string, object, object][] = [
    ['db:postgresql:root', { type: 'postgresql' }, { host: admin.host, port: admin.port, username: admin.user, password: admin.password, database: DB }],
    ['db:mariadb:root', { type: 'mariadb' }, { host: MARIADB.host, port: MARIADB.port, username: MARIADB.user, password: MARIADB.password, database: DB }],
    [PG, recipe('db:postgresql:root', '*.*'), {}],
    [MY, recipe('db:mariadb:root', `${DB}.*`), {}],
    ['db:postgresql:agent-long', { ...recipe('db:postgresql:root', '*.*'), ttl: 60, maxTtl: 600 }, {}],
    // Not renewable: rotated at 8 s, with 4 s left to drain.
    [DRAIN, { ...recipe('db:postgresql:root', '*.*'), ttl: 12, maxTtl: 12 }, {}],
  ];
  for (const [path, attributes, data] of secrets) {
    const created = await sy.run(['secret', 'create', path, '--attributes', JSON.stringify(attributes), '--data', JSON.stringify(data)]);
    if (created.exitCode !== 0) throw new Error(`creating ${path}: ${created.stderr}`);
  }
});

afterAll(async () => {
  for (const child of running) child.kill('SIGKILL');
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

describe.each([
  ['postgresql', PG, (name: string) => pgRoleExists(name)],
  ['mariadb', MY, (name: string) => myUserExists(name)],
] as const)('sy agent on %s', (engine, path, userExists) => {
  test('an application that reconnects several times a second works through renewals and rotations past the max TTL, with zero failures; SIGTERM leaves nothing', async () => {
    const file = join(sy.home, `${engine}-app.json`);
    const execLog = join(sy.home, `${engine}-exec.log`);
    const agent = startAgent(['--path', path, '--output', file, '--log-format', 'json', '--drain', '3s', '--exec', `echo "$(date +%s)" >> ${execLog}`]);
    await until('the first lease in the file', () => readLease(file));
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const started = Date.now();
    const app = await application(file, engine, () => Date.now() - started > 14_000);
    expect(app.failures).toEqual([]);
    expect(app.attempts).toBeGreaterThan(40);
    // A max TTL of 6 s over 14 s: at least two rotations, each seen by the application.
    expect(app.seen.size).toBeGreaterThanOrEqual(3);
    const ours = (await leases(path)).filter((l) => app.seen.has(l.username));
    // Old leases are revoked once drained; only the newest is still active.
    await until('the old leases to be revoked', async () => (await leases(path)).filter((l) => app.seen.has(l.username) && l.state === 'active').length === 1);
    expect(ours.length).toBe(app.seen.size);
    // --exec ran once per lease written.
    expect(readFileSync(execLog, 'utf8').trim().split('\n').length).toBeGreaterThanOrEqual(app.seen.size);

    agent.kill('SIGTERM');
    const result = await agent;
    expect(result.exitCode).toBe(0);
    const lines = String(result.stderr).trim().split('\n').map((line) => JSON.parse(line) as { event: string });
    expect(lines.map((l) => l.event)).toEqual(expect.arrayContaining(['issued', 'written', 'exec', 'renewed', 'rotating', 'revoked', 'stopping', 'stopped']));
    for (const lease of await leases(path)) if (app.seen.has(lease.username)) expect(lease.state).toBe('revoked');
    for (const name of app.seen) expect(await userExists(name)).toBe(false);
    // Never a password on stderr.
    const final = readLease(file)!;
    expect(String(result.stderr)).not.toContain(final.password);
  }, 60_000);
});

test("an open session of the old user delays its revocation until it closes; with a short --drain the deadline ends it", async () => {
  const file = join(sy.home, 'drain.json');
  const agent = startAgent(['--path', DRAIN, '--output', file, '--drain', '30s']);
  const first = await until('the first lease', () => readLease(file));
  const session = new pg.Client({ host: first.host, port: first.port, user: first.username, password: first.password, database: first.database });
  session.on('error', () => undefined);
  await session.connect();
  const second = await until('the next lease', () => readLease(file)?.username !== first.username && readLease(file), 20_000);
  await sleep(2000);
  // Rotated, but its session is still open: the old user stays.
  expect(await pgRoleExists(first.username)).toBe(true);
  await session.end();
  await until('the old user to be dropped once its session closed', async () => !(await pgRoleExists(first.username)), 10_000);
  agent.kill('SIGTERM');
  expect((await agent).exitCode).toBe(0);
  expect(await pgRoleExists(second.username)).toBe(false);

  const shortFile = join(sy.home, 'drain-short.json');
  const short = startAgent(['--path', DRAIN, '--output', shortFile, '--drain', '1s']);
  const held = await until('the first lease', () => readLease(shortFile));
  const stubborn = new pg.Client({ host: held.host, port: held.port, user: held.username, password: held.password, database: held.database });
  stubborn.on('error', () => undefined);
  await stubborn.connect();
  await until('the next lease', () => readLease(shortFile)?.username !== held.username, 20_000);
  await until('the old user to be dropped at the drain deadline', async () => !(await pgRoleExists(held.username)), 10_000);
  // At the drain deadline, before the lease's own expiry 4 s after the rotation.
  expect(Date.parse(held.expires_at) - Date.now()).toBeGreaterThan(0);
  await stubborn.end().catch(() => undefined);
  short.kill('SIGTERM');
  expect((await short).exitCode).toBe(0);
}, 90_000);

test('a lease revoked behind its back is replaced at once, and the file follows', async () => {
  const file = join(sy.home, 'revoked.json');
  const agent = startAgent(['--path', 'db:postgresql:agent-long', '--output', file]);
  const first = await until('the first lease', () => readLease(file));
  const revoked = await sy.run(['dynamic', 'lease', 'revoke', first.lease_id]);
  expect(revoked.exitCode).toBe(0);
  const next = await until('a new lease in the file', () => readLease(file)?.lease_id !== first.lease_id && readLease(file), 15_000);
  expect(await pgRoleExists(next.username)).toBe(true);
  agent.kill('SIGINT');
  const result = await agent;
  expect(result.exitCode).toBe(0);
  expect(String(result.stderr)).toMatch(/rotating lease .*: it is revoked/);
  expect(await pgRoleExists(next.username)).toBe(false);
}, 60_000);

test('an agent killed with SIGKILL leaves a lease that the sweep revokes once it expires', async () => {
  const file = join(sy.home, 'killed.json');
  const agent = startAgent(['--path', PG, '--output', file]);
  const lease = await until('the first lease', () => readLease(file));
  agent.kill('SIGKILL');
  await agent;
  expect(await pgRoleExists(lease.username)).toBe(true);
  const expiry = Date.parse((await leases(PG)).find((l) => l.lease_id === lease.lease_id)!.expires_at);
  // Printed expiries are rounded down to the second.
  await sleep(Math.max(0, expiry - Date.now() + 1200));
  const sweep = await sy.run(['dynamic', 'sweep']);
  expect(sweep.exitCode).toBe(0);
  expect(await pgRoleExists(lease.username)).toBe(false);
}, 60_000);

test('bad flags are one sentence and exit 2, and nothing is issued', async () => {
  const before = (await leases(PG)).length;
  const noOutput = await sy.run(['agent', '--path', PG]);
  expect(noOutput.exitCode).toBe(2);
  expect(noOutput.stderr).toMatch(/--output/);
  const table = await sy.run(['agent', '--path', PG, '--output', join(sy.home, 'x'), '--format', 'table']);
  expect(table.exitCode).toBe(2);
  const drain = await sy.run(['agent', '--path', PG, '--output', join(sy.home, 'x'), '--drain', 'soon']);
  expect(drain.exitCode).toBe(2);
  expect(drain.stderr).toMatch(/--drain/);
  expect((await leases(PG)).length).toBe(before);
});

/** A port nobody listens on now, on loopback. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

test('as a client of a pool: the same command with only SY_SERVER, SY_CLIENT_ID and SY_PRIVATE_KEY keeps an application working through rotations, and SIGTERM leaves nothing', async () => {
  const client = await sy.json<{ private_key: string }>(['client', 'create', `agent-${T}`, '--allow', 'db:postgresql:*', '--format', 'json']);
  const port = await freePort();
  const daemon = execa(SY_BIN, ['daemon', '--listen', `127.0.0.1:${port}`], { env: { PATH: process.env.PATH, ...sy.env }, extendEnv: false, reject: false, stdin: 'ignore' });
  running.add(daemon);
  try {
    const server = `http://127.0.0.1:${port}`;
    await until('the daemon to listen', async () => (await fetch(`${server}/livez`).catch(() => undefined))?.ok, 20_000);
    const file = join(sy.home, 'client-app.json');
    // Nothing that opens the store: only the client's three variables.
    const agent = execa(SY_BIN, ['agent', '--path', PG, '--output', file, '--log-format', 'json'], {
      env: { PATH: process.env.PATH, SY_SERVER: server, SY_CLIENT_ID: `agent-${T}`, SY_PRIVATE_KEY: client.private_key },
      extendEnv: false,
      reject: false,
      stdin: 'ignore',
      timeout: 90_000,
    });
    running.add(agent);
    await until('the first lease in the file', () => readLease(file));
    const started = Date.now();
    const app = await application(file, 'postgresql', () => Date.now() - started > 10_000);
    expect(app.failures).toEqual([]);
    expect(app.seen.size).toBeGreaterThanOrEqual(2);
    agent.kill('SIGTERM');
    const result = await agent;
    expect(result.exitCode).toBe(0);
    for (const name of app.seen) expect(await pgRoleExists(name)).toBe(false);
    // The daemon's ledger names the client as the holder of each lease it issued.
    const mine = (await leases(PG)).filter((l) => app.seen.has(l.username));
    expect(mine.map((l) => l.state)).toEqual(mine.map(() => 'revoked'));
    const lookup = await sy.json<{ client: string | null }>(['dynamic', 'lease', 'lookup', mine[0].lease_id]);
    expect(lookup.client).toBe(`agent-${T}`);
    expect(String(result.stderr)).not.toContain(readLease(file)!.password);
  } finally {
    daemon.kill('SIGTERM');
    await daemon;
  }
}, 90_000);
