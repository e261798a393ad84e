/**
 * The lease API when things go wrong, against the real daemon process: TLS with a test CA
 * (and a client that does not trust it), plain HTTP refused off loopback, a daemon SIGKILLed
 * in the middle of a create (the client gets an error; the intent machinery leaves no
 * untracked user), and the shared store going away (503 on /readyz and on requests, then
 * recovery without a restart).
 */
import { rmSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { makeHome, type SyHome } from '../helpers/cli.js';
import { LOCAL_PG, localPgQuery, myAdminQuery, pgConnect, tag } from '../helpers/db.js';
import { createStoreDatabase, type StoreDatabase } from '../helpers/pg-store.js';
import { startProxy, type Proxy } from '../helpers/proxy.js';
import { type ApiDaemon, type TestCa, asClient, call, clientEnv, makeTestCa, registerClient, startApiDaemon, tokenFor } from '../helpers/api.js';
import { createSecrets, dropMyPrefix, dropPgPrefix, mustJson, myExists, pgUsers, startDaemon, waitFor } from '../helpers/revocation.js';

const T = tag(4);
const PREFIX = `af${T}_`;
const MY_DB = `sy_apf_${T}`;
const PG_DB = `sy_apf_${T}`;
const API = '/api/sm/v1';
const homes: SyHome[] = [];
const daemons: ApiDaemon[] = [];
const proxies: Proxy[] = [];
const stores: StoreDatabase[] = [];
let ca: TestCa;

beforeAll(async () => {
  await myAdminQuery(`CREATE DATABASE IF NOT EXISTS \`${MY_DB}\``);
  ca = makeTestCa();
});
afterAll(async () => {
  for (const d of daemons) await d.stop('SIGKILL');
  for (const p of proxies) await p.close();
  await dropPgPrefix(PREFIX);
  await dropMyPrefix(PREFIX);
  await myAdminQuery(`DROP DATABASE IF EXISTS \`${MY_DB}\``);
  await localPgQuery(`DROP DATABASE IF EXISTS ${PG_DB} WITH (FORCE)`).catch(() => undefined);
  for (const h of homes) h.cleanup();
  for (const s of stores) await s.drop();
  rmSync(ca.dir, { recursive: true, force: true });
});

async function home(env: Record<string, string> = {}): Promise<SyHome> {
  const sy = await makeHome({ env });
  homes.push(sy);
  return sy;
}

async function daemon(sy: SyHome, options: Parameters<typeof startApiDaemon>[1] = {}): Promise<ApiDaemon> {
  const d = await startApiDaemon(sy, options);
  daemons.push(d);
  return d;
}

test('over TLS with a test CA: the CLI as a client trusts SY_CA_CERT, and refuses a certificate it cannot check (exit 4)', async () => {
  const sy = await home();
  const setup = await createSecrets(sy, { pgPrefix: PREFIX, myPrefix: PREFIX, myDatabase: MY_DB, ttl: 300 });
  const client = await registerClient(sy, `tls${T}`, ['db:mariadb:*']);
  const d = await daemon(sy, { tls: ca });
  expect(d.url).toMatch(/^https:\/\/localhost:\d+$/);
  const env = clientEnv(d.url, client, ca);
  const created = await asClient(env, ['dynamic', 'lease', 'create', '--path', setup.myDyn, '--format', 'json']);
  expect(created.exitCode).toBe(0);
  const lease = JSON.parse(created.stdout);
  expect(await myExists(lease.username)).toBe(true);
  const token = await tokenFor(env);
  expect((await call(d.url, 'GET', `${API}/dynamic/leases`, { token, ca })).body.data.map((l: { lease_id: string }) => l.lease_id)).toEqual([lease.lease_id]);
  // A token for the plain-HTTP origin is for another audience.
  const plainToken = await tokenFor({ ...env, SY_SERVER: d.url.replace('https:', 'http:') });
  expect((await call(d.url, 'GET', `${API}/dynamic/leases`, { token: plainToken, ca })).status).toBe(401);

  const untrusted = await asClient({ ...env, SY_CA_CERT: '' }, ['dynamic', 'lease', 'list']);
  expect(untrusted.exitCode).toBe(4);
  expect(untrusted.stderr).toMatch(/certificate of https:\/\/localhost:\d+ was refused/);
  expect((await asClient(env, ['dynamic', 'lease', 'revoke', lease.lease_id])).exitCode).toBe(0);
  expect(await myExists(lease.username)).toBe(false);
});

test('--listen without TLS takes only a loopback address (exit 2); TLS without --listen is a usage error too', async () => {
  const sy = await home();
  for (const args of [['--listen', '0.0.0.0:0'], ['--listen', '10.1.2.3:8200'], ['--tls-cert', ca.certFile, '--tls-key', ca.keyFile], ['--listen', '127.0.0.1:0', '--tls-cert', ca.certFile]]) {
    const r = await sy.run(['daemon', ...args]);
    expect([args.join(' '), r.exitCode]).toEqual([args.join(' '), 2]);
    expect(r.stderr.split('\n').length).toBeLessThanOrEqual(2);
  }
});

test('--listen on an address already in use: one sentence, exit 1', async () => {
  const sy = await home();
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = taken.address() as AddressInfo;
    const r = await sy.run(['daemon', '--listen', `127.0.0.1:${port}`]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim()).toBe(`sy: Could not listen on 127.0.0.1:${port}: the address is in use.`);
  } finally {
    await new Promise((resolve) => taken.close(resolve));
  }
});

test('a daemon SIGKILLed in the middle of a create: the client gets an error, and the intent leaves no untracked user', async () => {
  // The create waits inside, its intent recorded: another session holds the database's
  // catalog row (an open GRANT on it), so the lease's GRANT CONNECT waits (up to the admin's
  // 5 s lock_timeout).
  await localPgQuery(`CREATE DATABASE ${PG_DB}`);
  const sy = await home();
  const setup = await createSecrets(sy, { pgPrefix: PREFIX, myPrefix: PREFIX, myDatabase: MY_DB, ttl: 300, pgDatabase: PG_DB });
  const client = await registerClient(sy, `kill${T}`, ['db:postgresql:*']);
  const d = await daemon(sy);
  const locker = await pgConnect({ ...LOCAL_PG, database: PG_DB });
  try {
    await locker.query(`BEGIN; GRANT CONNECT ON DATABASE ${PG_DB} TO PUBLIC`);
    const pending = asClient(clientEnv(d.url, client), ['dynamic', 'lease', 'create', '--path', setup.pgDyn]);
    await waitFor('the intent', async () => (await mustJson(sy, ['dynamic', 'lease', 'list', '--all', '--format', 'json'])).data.some((l: { state: string }) => l.state === 'intent'), 20_000, 50);
    d.child.kill('SIGKILL');
    const answer = await pending;
    expect(answer.exitCode).toBe(1);
    expect(answer.stdout).toBe('');
  } finally {
    await locker.query('ROLLBACK').catch(() => undefined);
    await locker.end().catch(() => undefined);
  }
  // The next sweep on the store resolves the dead daemon's intent; no user is left behind.
  const swept = await sy.run(['dynamic', 'sweep', '--format', 'json']);
  expect(swept.exitCode).toBe(0);
  const leases = (await mustJson(sy, ['dynamic', 'lease', 'list', '--all', '--format', 'json'])).data;
  expect(leases.map((l: { state: string }) => l.state)).toEqual(['revoked']);
  expect(await pgUsers(PREFIX)).toEqual([]);
}, 90_000);

test('the shared store goes away: /readyz and requests answer 503, and both recover when it is back', async () => {
  const db = await createStoreDatabase();
  stores.push(db);
  const storeProxy = await startProxy(5432);
  proxies.push(storeProxy);
  const url = db.url.replace(':5432/', `:${storeProxy.port}/`);
  const sy = await home({ SY_STORE: url });
  await createSecrets(sy, { pgPrefix: PREFIX, myPrefix: PREFIX, myDatabase: MY_DB, ttl: 300 });
  const client = await registerClient(sy, `away${T}`, ['*']);
  const d = await daemon(sy, { args: ['--interval', '2s'] });
  const token = await tokenFor(clientEnv(d.url, client));
  await waitFor('ready', async () => (await call(d.url, 'GET', '/readyz')).status === 200);
  expect((await call(d.url, 'GET', `${API}/dynamic/leases`, { token })).status).toBe(200);

  await storeProxy.down();
  await waitFor('not ready', async () => (await call(d.url, 'GET', '/readyz')).status === 503);
  const during = await call(d.url, 'GET', `${API}/dynamic/leases`, { token });
  expect([during.status, Object.keys(during.body.error)]).toEqual([503, ['code', 'message']]);
  expect(during.text).not.toContain(url);
  expect((await call(d.url, 'GET', '/livez')).status).toBe(200);

  await storeProxy.up();
  await waitFor('ready again', async () => (await call(d.url, 'GET', '/readyz')).status === 200, 30_000);
  expect((await call(d.url, 'GET', `${API}/dynamic/leases`, { token })).status).toBe(200);
  expect(d.child.exitCode).toBe(null);
}, 90_000);

test('a daemon whose shared store is away at start listens anyway: /livez 200, /readyz and requests 503, until the store comes', async () => {
  const db = await createStoreDatabase();
  stores.push(db);
  const storeProxy = await startProxy(5432);
  proxies.push(storeProxy);
  const url = db.url.replace(':5432/', `:${storeProxy.port}/`);
  const sy = await home({ SY_STORE: url });
  await createSecrets(sy, { pgPrefix: PREFIX, myPrefix: PREFIX, myDatabase: MY_DB, ttl: 300 });
  const client = await registerClient(sy, `late${T}`, ['*']);
  await storeProxy.down();
  const d = startDaemon(sy, ['--listen', '127.0.0.1:0']);
  daemons.push(Object.assign(d, { url: '' }));
  const listening = (await d.waitForEvent((e) => e.event === 'listening')) as unknown as { url: string };
  await d.waitForEvent((e) => e.event === 'store_unreachable');
  expect((await call(listening.url, 'GET', '/livez')).status).toBe(200);
  expect((await call(listening.url, 'GET', '/readyz')).status).toBe(503);
  const token = await tokenFor(clientEnv(listening.url, client));
  expect((await call(listening.url, 'GET', `${API}/dynamic/leases`, { token })).status).toBe(503);
  await storeProxy.up();
  await waitFor('ready', async () => (await call(listening.url, 'GET', '/readyz')).status === 200, 30_000);
  expect((await call(listening.url, 'GET', `${API}/dynamic/leases`, { token })).status).toBe(200);
}, 90_000);
