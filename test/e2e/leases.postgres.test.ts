/**
 * End-to-end tests of dynamic leases on PostgreSQL, through the built bin/sy, against the
 * throwaway SCRAM cluster of the jest global setup (it checks passwords and speaks TLS).
 * Every credential sy prints is tried for real: with `pg`, with psql, through a shell.
 */
import { randomUUID } from 'node:crypto';
import { lstatSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { SEED_DYNAMIC } from '../helpers/seeds.js';
import { makeHome, SY_BIN, type Lease, type SyHome, leaseRunner, LEASE_KEYS } from '../helpers/cli.js';
import {
  createPgDatabase,
  dropPgDatabase,
  dropPgRoles,
  ms,
  pgConnect,
  pgLoginError,
  pgManagedRoles,
  pgRoleExists,
  pgAdminQuery,
  pgValidUntil,
  psql,
  scramCluster,
  SY_MARKER,
  tag,
  expectExit,
} from '../helpers/db.js';

const T = tag();
const DB = `sy_e2e_pg_${T}`;
/** userPrefix of the recipes made here: every role this file creates (but the seed's) starts with one. */
const PREFIX = `e${T}_`;
const CONC_PREFIX = `c${T}_`;
const KILL_PREFIX = `k${T}_`;
const PREFIXES = [PREFIX, CONC_PREFIX, KILL_PREFIX];



const admin = scramCluster();
let sy: SyHome;
const ids: Record<string, string> = {};

/** Every lease printed in this file (their passwords must never reach the audit log or stderr). */
const { run, ok, stderrs, issued, passwords, remember, create, listed } = leaseRunner(() => sy);

const dynamicAttributes = (extra: Record<string, unknown>) =>
  JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: 'db:postgresql:root' }, grantPermissions: { what: 'SELECT', where: '*.*' }, ...extra });

beforeAll(async () => {
  await createPgDatabase(DB, [
    'CREATE TABLE public.items (id int PRIMARY KEY, name text)',
    "INSERT INTO public.items VALUES (1, 'one'), (2, 'two')",
    'CREATE SCHEMA app',
    'CREATE TABLE app.orders (id int)',
    'INSERT INTO app.orders VALUES (10)',
  ]);
  sy = await makeHome();
  // The seed's base secret, its data pointed at the SCRAM cluster; the password goes by stdin.
  const base = await ok(['secret', 'create', '--body', '-'], {
    input: JSON.stringify({
      path: 'db:postgresql:root',
      attributes: { type: 'postgresql' },
      description: 'postgresql root credentials',
      data: { host: '127.0.0.1', password: admin.password, port: admin.port, username: admin.user, database: DB },
    }),
  });
  ids.root = base.id;
  writeFileSync(join(sy.home, 'dyn1.json'), SEED_DYNAMIC);
  ids.dyn1 = (await ok(['secret', 'create', '--body', `@${join(sy.home, 'dyn1.json')}`])).id;
  await ok(['secret', 'create', 'db:postgresql:e2e', '--attributes', dynamicAttributes({ userPrefix: PREFIX, ttl: 600 })]);
  await ok(['secret', 'create', 'db:postgresql:conc', '--attributes', dynamicAttributes({ userPrefix: CONC_PREFIX, ttl: 600 })]);
  await ok(['secret', 'create', 'db:postgresql:kill', '--attributes', dynamicAttributes({ userPrefix: KILL_PREFIX, ttl: 600 })]);
  await ok(['secret', 'create', 'db:postgresql:short', '--attributes', dynamicAttributes({ userPrefix: PREFIX, ttl: 30, maxTtl: 60 })]);
});

afterAll(async () => {
  if (sy) {
    await sy.run(['dynamic', 'lease', 'revoke', '--prefix', 'db', '--yes', '--force']).catch(() => undefined);
    sy.cleanup();
  }
  await dropPgDatabase(DB).catch(() => undefined);
  const leftovers = new Set(issued.map((l) => l.username));
  for (const prefix of PREFIXES) for (const role of await pgManagedRoles(prefix).catch(() => [])) leftovers.add(role);
  await dropPgRoles([...leftovers]);
});

describe('sy dynamic leases on PostgreSQL (SCRAM cluster)', () => {
  let revokedLease: Lease;

  test('the seed secrets issue SELECT-only credentials that log in through pg and psql', async () => {
    const lease = remember(await ok<Lease>(['secret', 'read', 'db:postgresql:dyn1']));
    expect(Object.keys(lease).sort()).toEqual(LEASE_KEYS);
    expect(lease).toMatchObject({
      record_uid: ids.dyn1,
      path: 'db:postgresql:dyn1',
      engine: 'postgresql',
      host: '127.0.0.1',
      port: admin.port,
      database: DB,
      lease_duration: 1000,
      renewable: true,
    });
    expect(lease.username).toMatch(SY_MARKER);
    expect(ms(lease.expires_at) - ms(lease.created_at)).toBe(1000_000);
    // The role carries the lease's end on the target too.
    const validUntil = await pgValidUntil(lease.username);
    expect(Math.abs(validUntil!.getTime() - ms(lease.expires_at))).toBeLessThan(1500);

    const client = await pgConnect(lease.connection_string);
    try {
      expect((await client.query('SELECT current_user AS u, current_database() AS d')).rows[0]).toEqual({ u: lease.username, d: DB });
      expect((await client.query('SELECT count(*)::int AS n FROM public.items')).rows[0].n).toBe(2);
      // `*.*` covers every non-system schema of the database.
      expect((await client.query('SELECT id FROM app.orders')).rows).toEqual([{ id: 10 }]);
      await expect(client.query("INSERT INTO public.items VALUES (3, 'three')")).rejects.toMatchObject({ code: '42501' });
    } finally {
      await client.end();
    }
    const viaPsql = await psql([lease.connection_string, '-tAc', 'select current_user']);
    expect(viaPsql).toMatchObject({ exitCode: 0, stdout: lease.username });
    expectExit(await psql([lease.connection_string, '-c', 'select 1']), 0);

    // The same recipe by id, and lookup never shows a password.
    const byId = remember(await ok<Lease>(['dynamic', 'lease', 'create', '--record-uid', ids.dyn1]));
    expect(byId).toMatchObject({ record_uid: ids.dyn1, path: 'db:postgresql:dyn1' });
    expect(byId.username).not.toBe(lease.username);
    expect(await pgLoginError(byId.connection_string)).toBeUndefined();
    const lookup = await ok(['dynamic', 'lease', 'lookup', lease.lease_id]);
    expect(lookup).toMatchObject({ lease_id: lease.lease_id, username: lease.username, state: 'active', engine: 'postgresql' });
    expect(lookup.target).toContain(`127.0.0.1:${admin.port}`);
    expect(JSON.stringify(lookup)).not.toContain(lease.password);
    expect(lookup).not.toHaveProperty('password');
  });

  test('revoke ends an open session, blocks new logins and drops the role; revoking twice succeeds', async () => {
    const lease = (revokedLease = await create('db:postgresql:e2e'));
    const session = await pgConnect(lease.connection_string);
    expect((await session.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);

    const revoke = await run(['dynamic', 'lease', 'revoke', lease.lease_id]);
    expectExit(revoke, 0);
    await expect(session.query('SELECT 1')).rejects.toThrow();
    await session.end().catch(() => undefined);
    expect(await pgLoginError(lease.connection_string)).toMatch(/^28/);
    expect(await pgRoleExists(lease.username)).toBe(false);

    expectExit(await run(['dynamic', 'lease', 'revoke', lease.lease_id]), 0);
    const lookup = await ok(['dynamic', 'lease', 'lookup', lease.lease_id]);
    expect(lookup).toMatchObject({ lease_id: lease.lease_id, state: 'revoked' });
    expect(lookup.ended_at).toEqual(expect.any(String));
    expect((await listed()).map((l) => l.lease_id)).not.toContain(lease.lease_id);
    expect(await listed(['--all'])).toContainEqual(expect.objectContaining({ lease_id: lease.lease_id, state: 'revoked', username: lease.username }));
  });

  test('passwords full of URL-special characters still give working connection strings', async () => {
    const leases: Lease[] = [];
    for (let i = 0; i < 6; i++) leases.push(await create('db:postgresql:e2e'));
    for (const lease of leases) {
      const url = new URL(lease.connection_string);
      expect(url.protocol).toBe('postgresql:');
      expect(decodeURIComponent(url.username)).toBe(lease.username);
      expect(decodeURIComponent(url.password)).toBe(lease.password);
      expect({ host: url.hostname, port: url.port, path: url.pathname }).toEqual({ host: '127.0.0.1', port: String(admin.port), path: `/${DB}` });
      expect(await pgLoginError(lease.connection_string)).toBeUndefined();
      expect(await psql([lease.connection_string, '-tAc', 'select current_user'])).toMatchObject({ exitCode: 0, stdout: lease.username });
    }
    // The generator's alphabet includes # % @ : ? = + : across these leases some must show up.
    expect(passwords.join('')).toMatch(/[#%@:?=+]/);
    expect(leases.some((l) => /%[0-9A-F]{2}/.test(new URL(l.connection_string).password))).toBe(true);
  });

  test('20 concurrent creates: 20 distinct working users and 20 active leases', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, () => run(['dynamic', 'lease', 'create', '--path', 'db:postgresql:conc'])));
    const leases = results.filter((r) => r.exitCode === 0).map((r) => remember(JSON.parse(r.stdout) as Lease));
    // Whatever happened, the target and the ledger agree: no untracked role, no lease without its role.
    const ledger = await listed(['--path', 'db:postgresql:conc']);
    expect(ledger.map((l) => l.state)).toEqual(Array(ledger.length).fill('active'));
    expect(await pgManagedRoles(CONC_PREFIX)).toEqual(ledger.map((l) => l.username).sort());

    expect(results.filter((r) => r.exitCode !== 0).map((r) => `exit ${r.exitCode}: ${r.stderr}`)).toEqual([]);
    const usernames = leases.map((l) => l.username).sort();
    expect(new Set(usernames).size).toBe(20);
    expect(await Promise.all(leases.map((l) => pgLoginError(l.connection_string)))).toEqual(Array(20).fill(undefined));
    expect(ledger).toHaveLength(20);
    expect(ledger.map((l) => l.username).sort()).toEqual(usernames);

    const revoke = await run(['dynamic', 'lease', 'revoke', '--prefix', 'db:postgresql:conc', '--yes']);
    expectExit(revoke, 0);
    expect(await pgManagedRoles(CONC_PREFIX)).toEqual([]);
  });

  test('SIGKILL at random points during 20 creates, then a sweep: the target holds exactly the active leases', async () => {
    // How long one create takes here: the kill points are spread over 0..max(400 ms, 1.2 x that),
    // so they fall before, during and after the work. Waves of two, because twenty processes
    // at once on a small machine would all die while Node starts up.
    const started = Date.now();
    await create('db:postgresql:kill');
    const window = Math.max(400, Math.round(1.2 * (Date.now() - started)));
    const results = [];
    for (let wave = 0; wave < 10; wave++) {
      const children = Array.from({ length: 2 }, () => {
        const child = execa(SY_BIN, ['dynamic', 'lease', 'create', '--path', 'db:postgresql:kill'], {
          env: { PATH: process.env.PATH, ...sy.env },
          extendEnv: false,
          reject: false,
          stdin: 'ignore',
          timeout: 60_000,
        });
        const timer = setTimeout(() => child.kill('SIGKILL'), Math.floor(Math.random() * window));
        return child.finally(() => clearTimeout(timer));
      });
      results.push(...(await Promise.all(children)));
    }
    const completed = results.filter((r) => r.exitCode === 0).map((r) => remember(JSON.parse(String(r.stdout)) as Lease));
    for (const r of results) stderrs.push(String(r.stderr ?? ''));
    // Not an assertion: how many were cut short (the point is that the sweep copes with any mix).
    const pending = (await listed(['--path', 'db:postgresql:kill'])).filter((l) => l.state !== 'active').length;
    const rolesBefore = (await pgManagedRoles(KILL_PREFIX)).length;
    console.info(`SIGKILL: ${completed.length}/20 completed, ${results.filter((r) => r.signal === 'SIGKILL').length} killed; before the sweep ${pending} unfinished leases, ${rolesBefore} roles`);

    const sweep = await run(['dynamic', 'sweep'], { env: { SY_NO_SWEEP: '0' } });
    expectExit(sweep, 0);
    expect(JSON.parse(sweep.stdout)).toMatchObject({ failed: 0, irrevocable: 0 });

    const live = await listed(['--path', 'db:postgresql:kill']);
    expect(live.filter((l) => l.state !== 'active')).toEqual([]);
    const roles = await pgManagedRoles(KILL_PREFIX);
    expect(roles).toEqual(live.map((l) => l.username).sort());
    for (const lease of completed) expect(roles).toContain(lease.username);
  });

  test('TTL: over 24 h or over maxTtl is refused and creates nothing; durations parse; renew moves VALID UNTIL and is capped', async () => {
    const rolesBefore = await pgManagedRoles(PREFIX);
    const ledgerBefore = await listed(['--all']);
    const tooLong = await run(['dynamic', 'lease', 'create', '--path', 'db:postgresql:e2e', '--ttl', '86401']);
    expectExit(tooLong, 2);
    expect(tooLong.stderr).toMatch(/86400/);
    const overMax = await run(['dynamic', 'lease', 'create', '--path', 'db:postgresql:short', '--ttl', '61']);
    expectExit(overMax, 2);
    expect(overMax.stderr).toMatch(/60/);
    expect(await pgManagedRoles(PREFIX)).toEqual(rolesBefore);
    expect(await listed(['--all'])).toEqual(ledgerBefore);

    const l90 = await create('db:postgresql:e2e', ['--ttl', '90s']);
    expect(l90.lease_duration).toBe(90);
    expect(ms(l90.expires_at) - ms(l90.created_at)).toBe(90_000);
    const l5400 = await create('db:postgresql:e2e', ['--ttl', '1h30m']);
    expect(l5400.lease_duration).toBe(5400);
    expect(ms(l5400.expires_at) - ms(l5400.created_at)).toBe(5400_000);
    expect(Math.abs((await pgValidUntil(l5400.username))!.getTime() - ms(l5400.expires_at))).toBeLessThan(1500);

    // Renew: from now, on the ledger and on the target's VALID UNTIL.
    const before = Date.now();
    const renewed = await ok(['dynamic', 'lease', 'renew', l90.lease_id, '--increment', '2h']);
    const after = Date.now();
    expect(ms(renewed.expires_at)).toBeGreaterThanOrEqual(before + 7200_000 - 1000);
    expect(ms(renewed.expires_at)).toBeLessThanOrEqual(after + 7200_000);
    expect(Math.abs((await pgValidUntil(l90.username))!.getTime() - ms(renewed.expires_at))).toBeLessThan(1500);
    expect((await ok(['dynamic', 'lease', 'lookup', l90.lease_id])).expires_at).toBe(renewed.expires_at);
    expect(await pgLoginError(l90.connection_string)).toBeUndefined();

    // Capped at the max TTL fixed when the lease was issued.
    const short = await create('db:postgresql:short');
    expect(short.lease_duration).toBe(30);
    const capped = await run(['dynamic', 'lease', 'renew', short.lease_id, '--increment', '1h']);
    expectExit(capped, 0);
    expect(capped.stderr).toMatch(/max(imum)? TTL/i);
    const cappedLease = JSON.parse(capped.stdout);
    expect(ms(cappedLease.expires_at)).toBeLessThanOrEqual(ms(short.created_at) + 60_000);
    expect(ms(cappedLease.expires_at)).toBeGreaterThan(ms(short.expires_at));
    expect((await pgValidUntil(short.username))!.getTime()).toBeLessThanOrEqual(ms(short.created_at) + 61_000);
  });

  test('--output writes the lease to a 0600 JSON file whose password works', async () => {
    const creds = join(sy.home, 'creds.json');
    const written = await run(['dynamic', 'lease', 'create', '--path', 'db:postgresql:e2e', '--output', creds]);
    expectExit(written, 0);
    expect(statSync(creds).mode & 0o777).toBe(0o600);
    const fromFile = remember(JSON.parse(readFileSync(creds, 'utf8')) as Lease);
    expect(fromFile.username).toMatch(SY_MARKER);
    expect(written.stdout).not.toContain(fromFile.password);
    expect(await pgLoginError({ host: fromFile.host, port: fromFile.port, user: fromFile.username, password: fromFile.password, database: fromFile.database })).toBeUndefined();
  });

  test('--output through a symlink is refused (2): the link target is untouched and no live user is left behind', async () => {
    const victim = join(sy.home, 'victim.txt');
    const link = join(sy.home, 'link.json');
    writeFileSync(victim, 'untouched\n');
    symlinkSync(victim, link);
    const rolesBefore = await pgManagedRoles(PREFIX);
    const liveBefore = (await listed()).map((l) => l.lease_id);
    const viaLink = await run(['dynamic', 'lease', 'create', '--path', 'db:postgresql:e2e', '--output', link]);
    expectExit(viaLink, 2);
    expect(viaLink.stderr).toMatch(/link/i);
    expect(readFileSync(victim, 'utf8')).toBe('untouched\n');
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(await pgManagedRoles(PREFIX)).toEqual(rolesBefore);
    expect((await listed()).map((l) => l.lease_id)).toEqual(liveBefore);
  });

  test('--format env is eval-able by sh and psql logs in with the PG* variables', async () => {
    const env = await run(['dynamic', 'lease', 'create', '--path', 'db:postgresql:e2e', '--format', 'env']);
    expectExit(env, 0);
    const names = env.stdout.trimEnd().split('\n').map((line) => line.replace(/^export /, '').split('=')[0]);
    expect(names.sort()).toEqual(['DATABASE_URL', 'PGDATABASE', 'PGHOST', 'PGPASSWORD', 'PGPORT', 'PGUSER', 'SY_LEASE_ID']);
    writeFileSync(join(sy.home, 'env'), env.stdout);
    const shell = await execa('sh', ['-c', 'eval "$(cat env)"; printf "%s\\n%s\\n%s" "$PGUSER" "$PGPASSWORD" "$DATABASE_URL"'], {
      cwd: sy.home, env: { PATH: process.env.PATH }, extendEnv: false, reject: false,
    });
    expectExit({ exitCode: shell.exitCode ?? -1, stderr: String(shell.stderr) }, 0);
    const [envUser, envPassword, envUrl] = String(shell.stdout).split('\n');
    passwords.push(envPassword);
    expect(envUser).toMatch(SY_MARKER);
    expect(decodeURIComponent(new URL(envUrl).password)).toBe(envPassword);
    // The lines are `export KEY='value'` (PRODUCT.md): psql sees them with nothing more.
    const viaShell = await execa('sh', ['-c', 'eval "$(cat env)"; psql -X -tAc "select current_user, inet_server_port()"'], {
      cwd: sy.home, env: { PATH: process.env.PATH }, extendEnv: false, reject: false,
    });
    expect({ exitCode: viaShell.exitCode, stdout: String(viaShell.stdout), stderr: String(viaShell.stderr) }).toEqual({
      exitCode: 0, stdout: `${envUser}|${admin.port}`, stderr: '',
    });
  });

  test('--filter password prints the raw password of the new lease, nothing else', async () => {
    const before = new Set((await listed(['--all'])).map((l) => l.lease_id));
    const filtered = await run(['dynamic', 'lease', 'create', '--path', 'db:postgresql:e2e', '--filter', 'password']);
    expectExit(filtered, 0);
    const password = filtered.stdout.replace(/\n$/, '');
    passwords.push(password);
    expect(password).not.toMatch(/[\s"{}]/);
    expect(password.length).toBeGreaterThanOrEqual(16);
    const fresh = (await listed(['--all'])).filter((l) => !before.has(l.lease_id));
    expect(fresh).toHaveLength(1);
    expect(await pgLoginError({ host: '127.0.0.1', port: admin.port, user: fresh[0].username, password, database: DB })).toBeUndefined();
  });

  test('injection attempts in a dynamic secret are refused (2); unknown lease or record ids are not found (3)', async () => {
    const attempts: Record<string, unknown>[] = [
      { grantPermissions: { what: 'SELECT; DROP TABLE public.items', where: '*.*' } },
      { grantPermissions: { what: 'SELECT', where: "public.items'; DROP TABLE public.items; --" } },
      { grantPermissions: { what: 'SELECT', where: 'public."items"' } },
      { grantPermissions: { what: 'SELECT', where: 'public.`items`' } },
      { grantPermissions: { what: 'SELECT', where: 'public.items /* c */' } },
      { grantPermissions: { what: 'SELECT', where: 'public.items -- c' } },
      { grantPermissions: { what: 'SELECT', where: '*.*' }, userPrefix: 'x; drop' },
      { grantPermissions: { what: 'SELECT', where: '*.*' }, userPrefix: "x'--" },
    ];
    for (const [i, extra] of attempts.entries()) {
      const path = `db:postgresql:inj${i}`;
      const result = await run(['secret', 'create', path, '--attributes', dynamicAttributes(extra)]);
      expect({ extra, exitCode: result.exitCode }).toEqual({ extra, exitCode: 2 });
      expect(result.stderr.length).toBeGreaterThan(0);
      expectExit(await run(['secret', 'describe', path]), 3);
    }
    expect((await pgAdminQuery('SELECT count(*)::int AS n FROM public.items', [], DB))[0].n).toBe(2);

    const unknown = randomUUID();
    for (const args of [['lookup', unknown], ['renew', unknown], ['revoke', unknown], ['create', '--record-uid', randomUUID()]]) {
      const result = await run(['dynamic', 'lease', ...args]);
      expect({ args, exitCode: result.exitCode, stderr: result.stderr }).toEqual({ args, exitCode: 3, stderr: expect.stringMatching(/not found|no lease|no secret/i) });
    }
  });

  test('the audit log records creates and revokes by lease id and user, and no password is in it or in any stderr', async () => {
    const text = readFileSync(join(sy.env.SY_HOME, 'audit.log'), 'utf8');
    const lines = text.split('\n').filter(Boolean).map((line) => JSON.parse(line));
    for (const lease of issued) {
      expect(lines).toContainEqual(expect.objectContaining({ action: 'lease.create', lease_id: lease.lease_id, db_user: lease.username, outcome: 'success' }));
    }
    expect(lines).toContainEqual(expect.objectContaining({ action: 'lease.revoke', lease_id: revokedLease.lease_id, db_user: revokedLease.username, outcome: 'success' }));
    expect(lines).toContainEqual(expect.objectContaining({ action: 'lease.renew' }));
    expect(passwords.length).toBeGreaterThan(10);
    for (const password of [...passwords, admin.password]) {
      expect(text.includes(password)).toBe(false);
      for (const stderr of stderrs) expect(stderr.includes(password)).toBe(false);
    }
  });
});
