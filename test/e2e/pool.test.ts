/**
 * End-to-end tests of pools on a shared store, through the built bin/sy: SY_STORE names a
 * database of its own on the machine's PostgreSQL 15; the leases' targets are that server
 * (127.0.0.1:5432) and the local MariaDB. An init container (`env -i` with PATH, SY_STORE and
 * SY_MASTER_KEY only) issues leases that another machine lists and a daemon of their pool
 * revokes on time; a pool with no live daemon makes `lease create` warn and `sy pool list`
 * flag it; the JSON of `sy pool list`; `--ready-file`; a store made before pools existed.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, freshKey } from '../helpers/cli.js';
import { myAdminQuery, tag } from '../helpers/db.js';
import { auditLog, cleanupMachines, initContainer, machine, revocationsByLease } from '../helpers/fleet.js';
import { type StoreDatabase, asOlderPgStore, createStoreDatabase } from '../helpers/pg-store.js';
import {
  type Daemon,
  createSecrets,
  dropMyPrefix,
  dropPgPrefix,
  myExists,
  myUsers,
  pgExists,
  pgUsers,
  sleep,
  startDaemon,
  waitFor,
} from '../helpers/revocation.js';

const T = tag(4);
const PREFIX = `po${T}_`;
const MY_DB = `sy_pool_${T}`;
const POOL = `blue${T}`;
const LONELY = `lonely${T}`;
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

const KEY = freshKey();
let database: StoreDatabase;
const daemons: Daemon[] = [];
const scratch = mkdtempSync(join(tmpdir(), 'sy-pool-test-'));

/** The operator's laptop: made the store and the secrets. */
const laptop = () => machine(database.url, KEY, 'laptop', { SY_NO_SWEEP: '1' });

function daemon(name: string, args: string[]): Daemon {
  const d = startDaemon(machine(database.url, KEY, name), ['--log-format', 'json', ...args]);
  daemons.push(d);
  return d;
}

beforeAll(async () => {
  await myAdminQuery(`CREATE DATABASE IF NOT EXISTS \`${MY_DB}\``);
  await myAdminQuery(`CREATE TABLE IF NOT EXISTS \`${MY_DB}\`.t (id INT)`);
  database = await createStoreDatabase();
  const init = await initContainer(['init'], database.url, KEY);
  // Only the next step a new store needs, as a notice.
  expect({ exitCode: init.exitCode, stderr: init.stderr }).toEqual({ exitCode: 0, stderr: expect.stringMatching(/^Next: [^\n]+$/) });
  const admin = laptop();
  await createSecrets(admin, { pgPrefix: PREFIX, myPrefix: PREFIX, myDatabase: MY_DB, pool: POOL, ttl: 3 });
  await createSecrets(admin, { pgPrefix: PREFIX, myPrefix: PREFIX, myDatabase: MY_DB, pool: LONELY, ttl: 600, suffix: 'lonely' });
});

afterAll(async () => {
  for (const d of daemons) if (d.child.exitCode === null && d.child.signalCode === null) await d.stop('SIGKILL');
  await dropPgPrefix(PREFIX);
  await dropMyPrefix(PREFIX);
  await myAdminQuery(`DROP DATABASE IF EXISTS \`${MY_DB}\``);
  await database?.drop();
  cleanupMachines();
  rmSync(scratch, { recursive: true, force: true });
});

test('an init container issues leases that another machine lists and a daemon of the pool revokes within 2 s of expiry', async () => {
  const readyFile = join(scratch, 'ready');
  const d = daemon('daemon-a', ['--pool', POOL, '--ready-file', readyFile]);
  await d.waitForEvent((e) => e.event === 'start');
  await waitFor('the ready file', () => existsSync(readyFile), 10_000, 100);

  // As the seed's CronJob: by record uid, to a file, nothing but the three variables.
  const ids = await laptop().json<{ id: string }>(['secret', 'describe', 'db:postgresql:dyn']);
  const out = join(scratch, 'db-creds.json');
  const [pgCreate, myCreate] = await Promise.all([
    initContainer(['dynamic', 'lease', 'create', '--record-uid', ids.id, '--output', out], database.url, KEY),
    initContainer(['dynamic', 'lease', 'create', '--path', 'db:mariadb:dyn'], database.url, KEY),
  ]);
  expect({ exitCode: pgCreate.exitCode, stdout: pgCreate.stdout, stderr: pgCreate.stderr }).toEqual({ exitCode: 0, stdout: '', stderr: `Wrote ${out}` });
  expect({ exitCode: myCreate.exitCode, stderr: myCreate.stderr }).toEqual({ exitCode: 0, stderr: '' });
  expect(statSync(out).mode & 0o777).toBe(0o600);
  const pgLease = JSON.parse(readFileSync(out, 'utf8'));
  const myLease = JSON.parse(myCreate.stdout);
  expect(await pgExists(pgLease.username)).toBe(true);
  expect(await myExists(myLease.username)).toBe(true);

  // Another machine sees both, and which pool serves them.
  const other = machine(database.url, KEY, 'other-machine', { SY_NO_SWEEP: '1' });
  const listed = (await other.json<{ data: { lease_id: string; state: string }[] }>(['dynamic', 'lease', 'list'])).data;
  expect(listed.filter((l) => [pgLease.lease_id, myLease.lease_id].includes(l.lease_id)).map((l) => l.state)).toEqual(['active', 'active']);
  expect(await other.json(['dynamic', 'lease', 'lookup', pgLease.lease_id])).toMatchObject({ pool: POOL, state: 'active' });

  // Nothing else runs: only the daemon can drop them, within 2 s of expires_at.
  const gone: Record<string, number> = {};
  const deadline = Date.now() + 15_000;
  while ((gone.pg === undefined || gone.my === undefined) && Date.now() < deadline) {
    const [pgThere, myThere] = await Promise.all([pgExists(pgLease.username), myExists(myLease.username)]);
    if (!pgThere) gone.pg ??= Date.now();
    if (!myThere) gone.my ??= Date.now();
    await sleep(100);
  }
  const lag = { pg: gone.pg - Date.parse(pgLease.expires_at), my: gone.my - Date.parse(myLease.expires_at) };
  expect(lag.pg).toBeGreaterThanOrEqual(0);
  expect(lag.my).toBeGreaterThanOrEqual(0);
  expect(lag.pg).toBeLessThan(2000);
  expect(lag.my).toBeLessThan(2000);

  // One audit log for the fleet: the container's creates and the daemon's revocations, once each.
  const entries = await auditLog(other);
  const creates = entries.filter((e) => e.action === 'lease.create' && [pgLease.lease_id, myLease.lease_id].includes(e.lease_id!));
  expect(creates.map((e) => e.outcome)).toEqual(['success', 'success']);
  const revocations = revocationsByLease(entries);
  expect([revocations.get(pgLease.lease_id)?.length, revocations.get(myLease.lease_id)?.length]).toEqual([1, 1]);
  expect(revocations.get(pgLease.lease_id)![0].actor).toBe('daemon-a');

  // Ready while it runs (touched again and again), gone once it stops; it leaves the registry.
  const touched = statSync(readyFile).mtimeMs;
  await sleep(6000);
  expect(statSync(readyFile).mtimeMs).toBeGreaterThan(touched);
  const stopped = await d.stop('SIGTERM');
  expect({ code: stopped.code, stderr: d.stderr() }).toEqual({ code: 0, stderr: '' });
  expect(existsSync(readyFile)).toBe(false);
  const pools = (await other.json<{ data: { pool: string; daemons: unknown[] }[] }>(['pool', 'list'])).data;
  expect(pools.find((p) => p.pool === POOL)?.daemons).toEqual([]);
});

test('a pool with no live daemon: lease create warns on stderr, sy pool list flags it', async () => {
  const create = await initContainer(['dynamic', 'lease', 'create', '--path', 'db:postgresql:dynlonely'], database.url, KEY);
  expect(create.exitCode).toBe(0);
  const lease = JSON.parse(create.stdout);
  expect(create.stderr.split('\n').filter((line) => line !== '')).toEqual([expect.stringMatching(new RegExp(`^warning: no live daemon serves pool ${LONELY}\\b`))]);

  const sy = laptop();
  const pools = (await sy.json<{ data: { pool: string }[] }>(['pool', 'list', '--format', 'json'])).data;
  expect(pools.find((p) => p.pool === LONELY)).toEqual({ pool: LONELY, daemons: [], active_leases: 1, next_expiry: lease.expires_at });
  const table = await sy.run(['pool', 'list', '--format', 'table']);
  expect(table.exitCode).toBe(0);
  const row = table.stdout.split('\n').find((line) => line.startsWith(`${LONELY} `));
  expect(row).toMatch(/NO LIVE DAEMON$/);
  expect(table.stdout.split('\n')[0]).toMatch(/^POOL\s+DAEMONS\s+ACTIVE LEASES\s+NEXT EXPIRY\s+STATUS$/);

  // A daemon that serves every pool makes it served: no warning, no flag.
  const d = daemon('daemon-all', []);
  await d.waitForEvent((e) => e.event === 'start');
  await waitFor('the daemon to join', async () => ((await sy.json<{ data: { pool: string; daemons: unknown[] }[] }>(['pool', 'list'])).data.find((p) => p.pool === LONELY)?.daemons.length ?? 0) > 0, 10_000, 200);
  const served = await initContainer(['dynamic', 'lease', 'create', '--path', 'db:postgresql:dynlonely'], database.url, KEY);
  expect({ exitCode: served.exitCode, stderr: served.stderr }).toEqual({ exitCode: 0, stderr: '' });
  await d.stop('SIGTERM');
  for (const id of [lease.lease_id, JSON.parse(served.stdout).lease_id]) expect((await sy.run(['dynamic', 'lease', 'revoke', id])).exitCode).toBe(0);
});

test('sy pool list --format json: the documented keys, each live daemon under the pools it serves', async () => {
  const sy = laptop();
  const blue = daemon('daemon-blue', ['--pool', POOL]);
  const every = daemon('daemon-every', []);
  await Promise.all([blue.waitForEvent((e) => e.event === 'start'), every.waitForEvent((e) => e.event === 'start')]);
  type Listed = { pool: string; daemons: Record<string, unknown>[]; active_leases: number; next_expiry: string | null };
  const pids = [blue.child.pid, every.child.pid].sort();
  const listed = (await waitFor('both daemons to join', async () => {
    const result = await sy.json<{ data: Listed[] }>(['pool', 'list', '--format', 'json']);
    const seen = result.data.find((p) => p.pool === POOL)?.daemons.map((m) => m.pid).sort();
    return JSON.stringify(seen) === JSON.stringify(pids) ? result : undefined;
  }, 10_000, 200))!;
  expect(Object.keys(listed)).toEqual(['data']);
  for (const entry of listed.data) {
    expect(Object.keys(entry).sort()).toEqual(['active_leases', 'daemons', 'next_expiry', 'pool']);
    for (const member of entry.daemons) expect(Object.keys(member).sort()).toEqual(['host', 'last_seen', 'pid', 'started_at', 'version']);
  }
  const names = listed.data.map((p) => p.pool);
  expect(names).toEqual([...names].sort());
  expect(names).toEqual(expect.arrayContaining([POOL, LONELY]));
  const bluePool = listed.data.find((p) => p.pool === POOL)!;
  expect(bluePool.daemons.map((m) => m.pid).sort()).toEqual(pids);
  for (const member of bluePool.daemons) {
    expect(member).toEqual({ host: hostname(), pid: expect.any(Number), version: VERSION, started_at: expect.stringMatching(ISO), last_seen: expect.stringMatching(ISO) });
  }
  // The daemon without a pool serves the lonely pool too; the blue one does not.
  expect(listed.data.find((p) => p.pool === LONELY)!.daemons.map((m) => m.pid)).toEqual([every.child.pid]);
  await Promise.all([blue.stop('SIGTERM'), every.stop('SIGTERM')]);
  expect(await pgUsers(PREFIX)).toEqual([]);
  expect(await myUsers(PREFIX)).toEqual([]);
});

test('a store made before pools (schema 1): commands ask for sy init, which adds the registry and keeps every record', async () => {
  const old = await createStoreDatabase();
  try {
    expect((await initContainer(['init'], old.url, KEY)).exitCode).toBe(0);
    const sy = machine(old.url, KEY, 'upgrader', { SY_NO_SWEEP: '1' });
    await sy.json(['secret', 'create', 'app:kept', '--data', '{"v": 1}']);
    await asOlderPgStore(old, KEY, 1);
    const refused = await sy.run(['pool', 'list']);
    expect({ exitCode: refused.exitCode, stdout: refused.stdout }).toEqual({ exitCode: 4, stdout: '' });
    expect(refused.stderr).toMatch(/schema 1; this sy needs schema 4[\s\S]*sy init/);
    const init = await sy.json(['init']);
    expect(init).toMatchObject({ created: false, schema_version: 4 });
    expect(await sy.json(['secret', 'read', 'app:kept'])).toMatchObject({ data: { v: 1 } });
    expect((await sy.json<{ data: unknown[] }>(['pool', 'list'])).data).toEqual([]);
  } finally {
    await old.drop();
  }
});
