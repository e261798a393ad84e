/**
 * The lease API end to end, against a real `bin/sy daemon --listen` process on loopback,
 * the machine's PostgreSQL and MariaDB as targets, and the store on SQLite and on the shared
 * PostgreSQL store: the seed's three curl lines as written, the CLI as a client (SY_SERVER,
 * nothing that opens a store), and the attacks of issue 17: forged tokens of each kind, a
 * deleted client, path tricks against the patterns, caps, another client's lease, bodies
 * over 64 KiB, slow clients, a few hundred concurrent requests, and no password in any log,
 * metric or error. TLS, a daemon SIGKILLed mid-create and a store that goes away are in
 * test/e2e/api.faults.test.ts.
 */
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import { generateKeyPairSync } from 'node:crypto';
import { SignJWT, UnsecuredJWT, importPKCS8 } from 'jose';
import { type SyHome, makeHome } from '../helpers/cli.js';
import { myAdminQuery, pgQueryOn, tag } from '../helpers/db.js';
import { createStoreDatabase, type StoreDatabase } from '../helpers/pg-store.js';
import { type ApiDaemon, type RegisteredClient, asClient, call, clientEnv, deleteClient, registerClient, startApiDaemon, tokenFor } from '../helpers/api.js';
import { PG5432, type Setup, createSecrets, dropMyPrefix, dropPgPrefix, mustJson, myUsers, pgExists, pgUsers, waitFor } from '../helpers/revocation.js';

const T = tag(4);
const MY_DB = `sy_api_${T}`;
const API = '/api/sm/v1';

beforeAll(async () => {
  await myAdminQuery(`CREATE DATABASE IF NOT EXISTS \`${MY_DB}\``);
});
afterAll(async () => {
  await myAdminQuery(`DROP DATABASE IF EXISTS \`${MY_DB}\``);
});

describe.each(['sqlite', 'postgresql'] as const)('the lease API on a %s store', (kind) => {
  const PREFIX = `ap${kind[0]}${T}_`;
  let storeDb: StoreDatabase | undefined;
  let sy: SyHome;
  let setup: Setup;
  let daemon: ApiDaemon;
  let app: RegisteredClient;
  let other: RegisteredClient;
  let appEnv: Record<string, string>;
  let otherEnv: Record<string, string>;
  const passwords: string[] = [];

  beforeAll(async () => {
    if (kind === 'postgresql') storeDb = await createStoreDatabase();
    sy = await makeHome({ env: storeDb ? { SY_STORE: storeDb.url } : {} });
    setup = await createSecrets(sy, { pgPrefix: PREFIX, myPrefix: PREFIX, myDatabase: MY_DB, ttl: 300, maxTtl: 3600 });
    await mustJson(sy, ['secret', 'create', 'app:config', '--data', '{"api_key": "static-value-1"}']);
    app = await registerClient(sy, `app${T}`, ['db:postgresql:*', 'app:*']);
    other = await registerClient(sy, `other${T}`, ['db:mariadb:dyn']);
    daemon = await startApiDaemon(sy);
    appEnv = clientEnv(daemon.url, app);
    otherEnv = clientEnv(daemon.url, other);
  }, 120_000);

  afterAll(async () => {
    await daemon?.stop();
    await dropPgPrefix(PREFIX);
    await dropMyPrefix(PREFIX);
    sy?.cleanup();
    await storeDb?.drop();
  });

  test("the seed's three curl lines work as written, with $SM_TOKEN from sy auth token", async () => {
    const recordUid = (await mustJson(sy, ['secret', 'describe', setup.pgDyn])).id;
    const SM_TOKEN = await tokenFor(appEnv);
    const base = daemon.url;
    const sh = (script: string) => execFileSync('sh', ['-c', script], { env: { PATH: process.env.PATH, SM_TOKEN }, encoding: 'utf8' });
    const created = JSON.parse(
      sh(`curl -sS -X POST ${base}/api/sm/v1/dynamic/lease \\
-H "Authorization: Bearer $SM_TOKEN" \\
-H "Content-Type: application/json" \\
-d '{
"record_uid": "${recordUid}",
"ttl_seconds": 3600
}'`),
    );
    passwords.push(created.password);
    expect(created).toMatchObject({ record_uid: recordUid, path: setup.pgDyn, engine: 'postgresql', lease_duration: 3600 });
    expect(created.connection_string).toContain(encodeURIComponent(created.password));
    expect(await pgExists(created.username)).toBe(true);
    const listed = JSON.parse(sh(`curl -sS ${base}/api/sm/v1/dynamic/leases \\
-H "Authorization: Bearer $SM_TOKEN"`));
    expect(listed.data.map((l: { lease_id: string }) => l.lease_id)).toContain(created.lease_id);
    expect(JSON.stringify(listed)).not.toContain(created.password);
    const status = sh(`curl -sS -o /dev/null -w '%{http_code}' -X DELETE ${base}/api/sm/v1/dynamic/leases/${created.lease_id} \\
-H "Authorization: Bearer $SM_TOKEN"`);
    expect(status).toBe('204');
    expect(await pgExists(created.username)).toBe(false);
  });

  test('the CLI as a client: same commands, outputs and exit codes, no store in its environment', async () => {
    expect(Object.keys(appEnv).filter((k) => /STORE|MASTER|PASSPHRASE|SY_HOME/.test(k))).toEqual([]);
    const run = (args: string[], env = appEnv) => asClient(env, args);
    const json = async (args: string[], env = appEnv) => {
      const r = await run([...args, '--format', 'json'], env);
      if (r.exitCode !== 0) throw new Error(`sy ${args.join(' ')} exited ${r.exitCode}: ${r.stderr}`);
      return JSON.parse(r.stdout);
    };
    const lease = await json(['dynamic', 'lease', 'create', '--path', setup.pgDyn, '--ttl', '10m']);
    passwords.push(lease.password);
    expect(lease).toMatchObject({ path: setup.pgDyn, lease_duration: 600, renewable: true });
    expect(await pgExists(lease.username)).toBe(true);
    expect((await json(['dynamic', 'lease', 'list'])).data.map((l: { lease_id: string }) => l.lease_id)).toContain(lease.lease_id);
    const looked = await json(['dynamic', 'lease', 'lookup', lease.lease_id]);
    expect(looked).toMatchObject({ lease_id: lease.lease_id, state: 'active', client: app.name });
    expect(JSON.stringify(looked)).not.toContain(lease.password);
    const renewed = await json(['dynamic', 'lease', 'renew', lease.lease_id, '--increment', '20m']);
    expect(Date.parse(renewed.expires_at)).toBeGreaterThan(Date.parse(lease.expires_at));
    expect(await json(['secret', 'read', 'app:config'])).toMatchObject({ path: 'app:config', data: { api_key: 'static-value-1' } });
    const viaRead = await json(['secret', 'read', setup.pgDyn]);
    passwords.push(viaRead.password);
    expect(viaRead.path).toBe(setup.pgDyn);

    // Another client sees none of app's leases, and cannot act on them: 404, exit 3.
    expect((await json(['dynamic', 'lease', 'list'], otherEnv)).data).toEqual([]);
    for (const args of [['lookup', lease.lease_id], ['renew', lease.lease_id], ['revoke', lease.lease_id]]) {
      const r = await run(['dynamic', 'lease', ...args], otherEnv);
      expect([args[0], r.exitCode, r.stderr]).toEqual([args[0], 3, `sy: No lease with id ${lease.lease_id}.`]);
    }
    expect(await pgExists(lease.username)).toBe(true);

    // Patterns: a path outside them, and a base secret inside them, exit 5.
    const outside = await run(['dynamic', 'lease', 'create', '--path', setup.myDyn]);
    expect([outside.exitCode, outside.stderr]).toEqual([5, `sy: Client ${app.name} is not allowed ${setup.myDyn}.`]);
    const base = await run(['secret', 'read', setup.pgBase]);
    expect(base.exitCode).toBe(5);
    expect(base.stderr).toMatch(/base secret/);
    expect(base.stdout + base.stderr).not.toContain('unused-trust-auth');
    expect((await run(['secret', 'read', 'app:missing'])).exitCode).toBe(3);
    expect((await run(['dynamic', 'lease', 'create', '--path', setup.pgDyn, '--ttl', '25h'])).exitCode).toBe(2);

    // Every other command needs the store, in one sentence, exit 2; nothing is opened.
    for (const args of [['secret', 'create', 'x:y', '--data', '{}'], ['pool', 'list'], ['dynamic', 'sweep'], ['audit', 'list'], ['init']]) {
      const r = await run(args);
      expect([args.join(' '), r.exitCode]).toEqual([args.join(' '), 2]);
      expect(r.stderr).toMatch(/^sy: This command needs the store, and SY_SERVER is set/);
    }

    const revoked = await json(['dynamic', 'lease', 'revoke', lease.lease_id]);
    expect(revoked).toMatchObject({ lease_id: lease.lease_id, state: 'revoked' });
    expect(await pgExists(lease.username)).toBe(false);
    await run(['dynamic', 'lease', 'revoke', viaRead.lease_id]);

    // The audit log names the client as the actor of what the daemon did for it.
    const audit = await mustJson(sy, ['audit', 'list', '--lease', lease.lease_id]);
    const actors = new Set((audit.data ?? audit).map((e: { actor: string }) => e.actor));
    expect([...actors]).toEqual([`client:${app.name}`]);
  });

  test('a wrong key, a wrong CA, a server that is away: exit 4, 4 and 1', async () => {
    const stranger = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const wrongKey = await asClient({ ...appEnv, SY_PRIVATE_KEY: stranger }, ['dynamic', 'lease', 'list']);
    expect([wrongKey.exitCode, wrongKey.stderr]).toEqual([4, "sy: The token was refused: its signature is not the client's key."]);
    const unknown = await asClient({ ...appEnv, SY_CLIENT_ID: `nobody${T}` }, ['dynamic', 'lease', 'list']);
    expect(unknown.exitCode).toBe(4);
    const away = await asClient({ ...appEnv, SY_SERVER: 'http://127.0.0.1:9' }, ['dynamic', 'lease', 'list']);
    expect(away.exitCode).toBe(1);
    expect(away.stderr).toMatch(/could not be reached/);
  });

  test('forged tokens of every kind get 401, and a deleted client is refused from the next request on', async () => {
    const now = Math.floor(Date.now() / 1000);
    const key = await importPKCS8(app.privateKey, 'EdDSA');
    const sign = (claims: Record<string, unknown>, iat = now, exp = now + 60, k = key) =>
      new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA' }).setIssuedAt(iat).setExpirationTime(exp).setJti(`j${Math.random()}`).sign(k);
    const good = { iss: app.name, sub: app.name, aud: daemon.url };
    expect((await call(daemon.url, 'GET', `${API}/dynamic/leases`, { token: await sign(good) })).status).toBe(200);
    const mallory = await importPKCS8(generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 'EdDSA');
    const forged: [string, string | undefined][] = [
      ['no token', undefined],
      ['other audience', await sign({ ...good, aud: 'https://vault.example.com' })],
      ['expired', await sign(good, now - 900, now - 60)],
      ['unsigned', new UnsecuredJWT(good).setIssuedAt().setExpirationTime('1m').setJti('x').encode()],
      ['other key', await sign(good, now, now + 60, mallory)],
      ['too long-lived', await sign(good, now, now + 16 * 60)],
      ['unknown client', await sign({ ...good, iss: `ghost${T}`, sub: `ghost${T}` })],
      ['garbage', 'abc.def.ghi'],
    ];
    for (const [what, token] of forged) {
      const answer = await call(daemon.url, 'GET', `${API}/dynamic/leases`, { token });
      expect([what, answer.status]).toEqual([what, 401]);
      expect(Object.keys(answer.body.error)).toEqual(['code', 'message']);
    }
    // Deleted: its tokens, still within their lifetime, are refused from the next request on.
    const doomed = await registerClient(sy, `doomed${T}`, ['*']);
    const token = await tokenFor(clientEnv(daemon.url, doomed));
    expect((await call(daemon.url, 'GET', `${API}/dynamic/leases`, { token })).status).toBe(200);
    await deleteClient(sy, doomed.name);
    expect((await call(daemon.url, 'GET', `${API}/dynamic/leases`, { token })).status).toBe(401);
  });

  test('path tricks against the patterns: case, separators, dots, segment prefixes, ids', async () => {
    const token = await tokenFor(appEnv);
    const create = (body: unknown) => call(daemon.url, 'POST', `${API}/dynamic/lease`, { token, body: JSON.stringify(body) });
    const get = (path: string) => call(daemon.url, 'GET', `${API}/secrets/${path}`, { token });
    const myUid = (await mustJson(sy, ['secret', 'describe', setup.myDyn])).id;
    const cases: [string, Promise<{ status: number }>, number][] = [
      ['upper case', create({ path: 'DB:POSTGRESQL:dyn' }), 403],
      ['segment prefix', create({ path: 'db:postgresqlx:dyn' }), 403],
      ['short prefix', create({ path: 'db:postgres:dyn' }), 403],
      ['dot segments', create({ path: 'db:postgresql:..:..:db:mariadb:dyn' }), 400],
      ['record_uid outside the patterns', create({ record_uid: myUid }), 403],
      ['both ref fields', create({ path: setup.pgDyn, record_uid: myUid }), 400],
      ['unknown field', create({ path: setup.pgDyn, ttl: 5 }), 400],
      ['string ttl', create({ path: setup.pgDyn, ttl_seconds: '60' }), 400],
      ['ttl over 24 h', create({ path: setup.pgDyn, ttl_seconds: 86401 }), 400],
      ['secret by dots in the URL', get('app/../db/mariadb/root'), 400],
      ['encoded dots', get('app/%2e%2e/db/mariadb/root'), 400],
      ['base secret inside the patterns', get('db/postgresql/root'), 403],
      ['base secret by :', get('db:postgresql:root'), 403],
      ['base secret outside', get('db/mariadb/root'), 403],
      ['static secret, case', get('APP/config'), 403],
    ];
    for (const [what, answer, status] of cases) expect([what, (await answer).status]).toEqual([what, status]);
    const alias = await create({ path: 'db/postgresql/dyn', ttl_seconds: 60 });
    expect(alias.status).toBe(201);
    passwords.push((alias as { body: { password: string } }).body.password);
    expect((await call(daemon.url, 'DELETE', `${API}/dynamic/leases/${(alias as { body: { lease_id: string } }).body.lease_id}`, { token })).status).toBe(204);
  });

  test('caps: a TTL over the client max TTL, and a lease over its max leases, are 403 (exit 5) and create nothing', async () => {
    const capped = await registerClient(sy, `capped${T}`, ['db:mariadb:*'], { maxTtl: '2m', maxLeases: 2 });
    const env = clientEnv(daemon.url, capped);
    const before = await myUsers(PREFIX);
    const long = await asClient(env, ['dynamic', 'lease', 'create', '--path', setup.myDyn, '--ttl', '3m']);
    expect([long.exitCode, long.stderr]).toEqual([5, `sy: A TTL of 180 seconds is above client ${capped.name}'s max TTL of 120 seconds.`]);
    const leases = [];
    for (let i = 0; i < 2; i++) {
      const r = await asClient(env, ['dynamic', 'lease', 'create', '--path', setup.myDyn]);
      expect(r.exitCode).toBe(0);
      leases.push(JSON.parse(r.stdout));
    }
    passwords.push(...leases.map((l) => l.password));
    // The recipe's ttl (300 s) is cut to the client's cap when none is asked for.
    expect(leases[0].lease_duration).toBe(120);
    const third = await asClient(env, ['dynamic', 'lease', 'create', '--path', setup.myDyn]);
    expect(third.exitCode).toBe(5);
    expect(third.stderr).toMatch(/already holds 2 active leases/);
    expect((await myUsers(PREFIX)).length).toBe(before.length + 2);
    for (const lease of leases) expect((await asClient(env, ['dynamic', 'lease', 'revoke', lease.lease_id])).exitCode).toBe(0);
    expect(await myUsers(PREFIX)).toEqual(before);
  });

  test('a body over 64 KiB is 413; slow clients that never finish are cut off while others are served', async () => {
    const token = await tokenFor(appEnv);
    const big = JSON.stringify({ path: setup.pgDyn, pad: 'x'.repeat(70 * 1024) });
    const tooBig = await call(daemon.url, 'POST', `${API}/dynamic/lease`, { token, body: big });
    expect([tooBig.status, tooBig.body.error.code]).toEqual([413, 'body_too_large']);

    const { port } = new URL(daemon.url);
    const slow = Array.from({ length: 20 }, (_v, i) => {
      const socket = net.connect(Number(port), '127.0.0.1');
      socket.on('error', () => undefined);
      const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
      socket.write(i % 2 === 0
        ? `POST ${API}/dynamic/lease HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n`
        : `POST ${API}/dynamic/lease HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"path":`);
      return { socket, closed };
    });
    // Served meanwhile.
    expect((await call(daemon.url, 'GET', '/livez')).status).toBe(200);
    expect((await call(daemon.url, 'GET', `${API}/dynamic/leases`, { token })).status).toBe(200);
    const cut = await Promise.all(slow.map(async (s) => {
      await s.closed;
      return 'closed';
    }));
    expect(cut).toEqual(Array(20).fill('closed'));
  }, 60_000);

  test('a few hundred concurrent requests are all answered; concurrent creates give distinct users', async () => {
    const token = await tokenFor(appEnv);
    const lists = await Promise.all(Array.from({ length: 300 }, () => call(daemon.url, 'GET', `${API}/dynamic/leases`, { token })));
    expect(lists.filter((a) => a.status !== 200).map((a) => a.status)).toEqual([]);
    const creates = await Promise.all(Array.from({ length: 20 }, () => call(daemon.url, 'POST', `${API}/dynamic/lease`, { token, body: JSON.stringify({ path: setup.pgDyn, ttl_seconds: 120 }) })));
    expect(creates.map((a) => a.status)).toEqual(Array(20).fill(201));
    passwords.push(...creates.map((a) => a.body.password));
    expect(new Set(creates.map((a) => a.body.username)).size).toBe(20);
    const deletes = await Promise.all(creates.map((a) => call(daemon.url, 'DELETE', `${API}/dynamic/leases/${a.body.lease_id}`, { token })));
    expect(deletes.map((a) => a.status)).toEqual(Array(20).fill(204));
    for (const a of creates) expect(await pgExists(a.body.username)).toBe(false);
  }, 120_000);

  test('creates reuse a warm admin connection; one the server ended while it was idle is replaced, and the create still succeeds', async () => {
    const token = await tokenFor(appEnv);
    const create = async () => {
      const made = await call(daemon.url, 'POST', `${API}/dynamic/lease`, { token, body: JSON.stringify({ path: setup.pgDyn, ttl_seconds: 120 }) });
      expect(made.status).toBe(201);
      passwords.push(made.body.password);
      return made.body as { lease_id: string; username: string };
    };
    /** The target's backends (database postgres) behind this daemon's own TCP connections. */
    const daemonBackends = async () => {
      const ports = [...execFileSync('ss', ['-tnpH'], { encoding: 'utf8' }).matchAll(/127\.0\.0\.1:(\d+)\s+127\.0\.0\.1:5432\s+users:\(\("[^"]*",pid=(\d+)/g)]
        .filter((m) => Number(m[2]) === daemon.child.pid)
        .map((m) => Number(m[1]));
      if (ports.length === 0) return [];
      const rows = await pgQueryOn<{ pid: number }>(
        PG5432,
        "SELECT pid FROM pg_stat_activity WHERE datname = 'postgres' AND client_port = ANY($1::int[])",
        [ports],
      );
      return rows.map((r) => r.pid).sort();
    };
    const made: { lease_id: string; username: string }[] = [];
    try {
      made.push(await create());
      // Earlier tests' bursts may have left several warm connections: none is opened anew.
      const warm = await daemonBackends();
      expect(warm.length).toBeGreaterThanOrEqual(1);
      made.push(await create());
      const reused = await daemonBackends();
      expect(reused.length).toBeGreaterThanOrEqual(1);
      expect(reused.filter((pid) => !warm.includes(pid))).toEqual([]);

      await pgQueryOn(PG5432, 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = ANY($1::int[])', [reused]);
      made.push(await create());
      const replaced = await daemonBackends();
      expect(replaced).toHaveLength(1);
      expect(reused).not.toContain(replaced[0]);
    } finally {
      for (const lease of made) {
        expect((await call(daemon.url, 'DELETE', `${API}/dynamic/leases/${lease.lease_id}`, { token })).status).toBe(204);
        expect(await pgExists(lease.username)).toBe(false);
      }
    }
  }, 60_000);

  test('health and metrics need no token and say nothing of secrets; no password in any log, metric or error', async () => {
    expect((await call(daemon.url, 'GET', '/livez')).status).toBe(200);
    await waitFor('ready', async () => (await call(daemon.url, 'GET', '/readyz')).status === 200);
    const metrics = await call(daemon.url, 'GET', '/metrics');
    expect(metrics.status).toBe(200);
    for (const name of ['sy_leases', 'sy_leases_created_total', 'sy_revocations_total', 'sy_revocation_delay_seconds', 'sy_http_requests_total', 'sy_daemons_live']) {
      expect(metrics.text).toContain(`# TYPE ${name} `);
    }
    expect(metrics.text.split('\n').filter((l) => l && !l.startsWith('#') && !l.startsWith('sy_'))).toEqual([]);
    const everything = [metrics.text, daemon.stderr(), JSON.stringify(daemon.events)].join('\n');
    expect(passwords.length).toBeGreaterThan(0);
    for (const secret of [...passwords, 'unused-trust-auth', 'static-value-1', app.privateKey.split('\n')[1]]) expect(everything).not.toContain(secret);
    expect(everything).not.toContain('db:postgresql:root');
    expect(await pgUsers(PREFIX)).toEqual([]);
  });
});
