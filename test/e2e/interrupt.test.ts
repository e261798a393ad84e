/**
 * Interrupting `sy dynamic lease create` through the built bin/sy, and what the commands
 * after it say: SIGINT (Ctrl-C) while the server is slow to answer ends the command with one
 * line, `sy: Interrupted.`, exit 130, and leaves no lease for later sweeps to retry and warn
 * about; a lease whose server is really gone is named with `revoke --force` once it has
 * failed a few times. Target: the machine's PostgreSQL (127.0.0.1:5432, trust) behind a
 * proxy of the test's, which can hold new connections or refuse them.
 */
import { execa } from 'execa';
import { createServer, connect, type Server, type Socket } from 'node:net';
import pg from 'pg';
import { makeHome, SY_BIN, type SyHome } from '../helpers/cli.js';
import { expectExit, LOCAL_PG, localPgQuery, tag } from '../helpers/db.js';

const T = tag();
const PREFIX = `i${T}_`;
const DB = `sy_e2e_int_${T}`;

/** What the proxy does with a new connection: pass it on, hold it (a server that does not answer), or refuse it. */
let mode: 'pass' | 'hold' = 'pass';
let proxy: Server;
let proxyPort = 0;
const sockets = new Set<Socket>();
let sy: SyHome;

const roleExists = async (name: string) => (await localPgQuery('SELECT 1 FROM pg_roles WHERE rolname = $1', [name])).length === 1;
const leases = async () => (await sy.json<{ data: { lease_id: string; username: string; state: string; path: string }[] }>(['dynamic', 'lease', 'list', '--all'])).data;

function startProxy(port = 0): Promise<number> {
  proxy = createServer((client) => {
    sockets.add(client);
    client.on('error', () => undefined);
    if (mode === 'hold') return;
    const upstream = connect(LOCAL_PG.port, LOCAL_PG.host);
    sockets.add(upstream);
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve) => proxy.listen(port, '127.0.0.1', () => resolve((proxy.address() as { port: number }).port)));
}

async function stopProxy(): Promise<void> {
  for (const socket of sockets) socket.destroy();
  sockets.clear();
  await new Promise((resolve) => proxy.close(resolve));
}

beforeAll(async () => {
  await localPgQuery(`CREATE DATABASE ${pg.escapeIdentifier(DB)}`);
  proxyPort = await startProxy();
  sy = await makeHome();
  await sy.json(['secret', 'create', 'db:pg:proxied', '--attributes', '{"type":"postgresql"}', '--data', JSON.stringify({ host: '127.0.0.1', port: proxyPort, username: 'postgres', password: 'x', database: DB })]);
  await sy.json([
    'secret', 'create', 'db:pg:dyn', '--no-verify', '--attributes',
    JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: 'db:pg:proxied' }, grantPermissions: { what: 'SELECT', where: '*.*' }, ttl: 600, userPrefix: PREFIX }),
  ]);
});

afterAll(async () => {
  mode = 'pass';
  if (sy) {
    await sy.run(['dynamic', 'lease', 'revoke', '--prefix', 'db', '--yes', '--force']).catch(() => undefined);
    sy.cleanup();
  }
  await stopProxy().catch(() => undefined);
  for (const { rolname } of await localPgQuery<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)', [PREFIX])) {
    await localPgQuery(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(rolname)}`).catch(() => undefined);
  }
  await localPgQuery(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(DB)} WITH (FORCE)`);
});

test('SIGINT while the server does not answer: one line, exit 130; nothing was recorded, and the next commands sweep nothing and warn about nothing', async () => {
  mode = 'hold';
  const before = sockets.size;
  const child = execa(SY_BIN, ['dynamic', 'lease', 'create', '--path', 'db:pg:dyn'], {
    env: { PATH: process.env.PATH, ...sy.env, SY_NO_SWEEP: '0' }, extendEnv: false, reject: false, stdin: 'ignore', detached: true,
  });
  // Wait until sy is connecting (the proxy holds the connection), then press Ctrl-C.
  while (sockets.size === before) await new Promise((r) => setTimeout(r, 20));
  child.kill('SIGINT');
  const result = await child;
  expect({ exitCode: result.exitCode, stdout: result.stdout, stderr: result.stderr }).toEqual({ exitCode: 130, stdout: '', stderr: 'sy: Interrupted.' });
  mode = 'pass';

  // The server's clock is read before anything is recorded: interrupted while connecting, sy
  // recorded no lease, so no user can exist and there is nothing for a sweep to check.
  const before2 = await leases();
  expect(before2).toEqual([]);
  expect(await localPgQuery('SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)', [PREFIX])).toEqual([]);
  // The next command sweeps first (SY_NO_SWEEP off): nothing is due, nothing is said.
  const next = await sy.run(['dynamic', 'lease', 'list'], { env: { SY_NO_SWEEP: '0' } });
  expectExit(next, 0);
  expect(next.stderr).toBe('');
  expect(await sy.json(['dynamic', 'sweep', '--no-reap'])).toMatchObject({ revoked: 0, failed: 0, errors: [] });
  expect(await leases()).toEqual([]);
});

test('a lease whose server is gone: the warning names `revoke --force` once it has failed three times, and not before', async () => {
  const lease = await sy.json<{ lease_id: string; username: string }>(['dynamic', 'lease', 'create', '--path', 'db:pg:dyn', '--ttl', '1']);
  await stopProxy(); // the port now refuses: the server is gone
  const warnings: string[] = [];
  // Each command sweeps what is due; the failed revocation is retried after 5 s, then 10 s.
  for (let attempt = 0; warnings.length < 3; ) {
    const run = await sy.run(['secret', 'search'], { env: { SY_NO_SWEEP: '0' } });
    expectExit(run, 0);
    if (run.stderr !== '') {
      attempt++;
      warnings.push(run.stderr);
    }
    await new Promise((r) => setTimeout(r, 500));
    if (attempt > 3) break;
  }
  expect(warnings[0]).toMatch(/^sy: 1 expired lease could not be revoked yet \(127\.0\.0\.1:\d+\/.*\); retrying later\.$/);
  expect(warnings[0]).not.toContain('--force');
  expect(warnings[1]).not.toContain('--force');
  expect(warnings[2]).toContain(`Lease ${lease.lease_id} has failed 3 times: if 127.0.0.1:${proxyPort}/${DB} is gone for good, \`sy dynamic lease revoke ${lease.lease_id} --force\` forgets it`);

  // Back again: the role is dropped and the warnings stop.
  proxyPort = await startProxy(proxyPort);
  expectExit(await sy.run(['dynamic', 'lease', 'revoke', lease.lease_id]), 0);
  expect(await roleExists(lease.username)).toBe(false);
}, 60_000);

test('a PostgreSQL base on port 3306, as in a seed, reaches MariaDB: the failure says which port is whose, and leaves no lease to retry', async () => {
  await sy.json(['secret', 'create', 'db:pg:seedport', '--attributes', '{"type":"postgresql"}', '--data', JSON.stringify({ host: '127.0.0.1', port: 3306, username: 'postgres', password: 'x' })]);
  await sy.json([
    'secret', 'create', 'db:pg:seeddyn', '--no-verify', '--attributes',
    JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: 'db:pg:seedport' }, grantPermissions: { what: 'SELECT', where: '*.*' }, ttl: '5m', userPrefix: PREFIX }),
  ]);
  const created = await sy.run(['dynamic', 'lease', 'create', '--path', 'db:pg:seeddyn']);
  expectExit(created, 1);
  expect(created.stderr).toMatch(/^sy: Could not connect to PostgreSQL at 127\.0\.0\.1:3306: .*\.\nPort 3306 is MySQL\/MariaDB's default port; PostgreSQL's is 5432: check the base secret's port\.$/);
  expect((await leases()).filter((l) => l.path === 'db:pg:seeddyn').map((l) => l.state)).toEqual(['revoked']);
  const next = await sy.run(['dynamic', 'lease', 'list'], { env: { SY_NO_SWEEP: '0' } });
  expect(next.stderr).toBe('');
});
