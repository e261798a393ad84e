/**
 * End-to-end tests of leases when things go wrong, through the built bin/sy, against the
 * throwaway SCRAM PostgreSQL cluster: closed ports, wrong admin passwords, missing tables,
 * a target that disappears before revocation, expiry swept by an unrelated command, a
 * non-superuser (CREATEROLE) admin, and TLS with and without certificate verification.
 */
import { startProxy, type Proxy } from '../helpers/proxy.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { makeHome, type Lease, type SyHome, type SyResult, leaseRunner } from '../helpers/cli.js';
import {
  createPgDatabase,
  dropPgDatabase,
  dropPgRoles,
  ms,
  pgAdminQuery,
  pgConnect,
  pgLoginError,
  pgManagedRoles,
  pgRoleExists,
  pgValidUntil,
  psql,
  scramCluster,
  tag,
  expectExit,
} from '../helpers/db.js';

const T = tag();
const DB = `sy_e2e_flt_${T}`;
const PREFIX = `f${T}_`;
const ADMIN_ROLE = `sy_e2e_adm_${T}`;
const ADMIN_PASSWORD = `Adm1n#${tag(12)}@:?`;
/** Distinctive admin passwords of the broken base secrets: they must never be printed. */
const CLOSED_PASSWORD = `Cl0sed-${tag(12)}!`;
const WRONG_PASSWORD = `Wr0ng-${tag(12)}!`;


const cluster = scramCluster();
const TARGET = `127.0.0.1:${cluster.port}`;
let flaky: Proxy;
const CLOSED = /127\.0\.0\.1:1(?!\d)/;
let sy: SyHome;
const failedCreateUsers: string[] = [];

const { run, ok, stderrs, issued, create, listed } = leaseRunner(() => sy);

async function base(path: string, data: Record<string, unknown>): Promise<void> {
  await ok(['secret', 'create', path, '--attributes', '{"type": "postgresql"}', '--data', '-'], {
    input: JSON.stringify({ host: '127.0.0.1', port: cluster.port, username: cluster.user, password: cluster.password, database: DB, ...data }),
  });
}

async function dynamic(path: string, linked: string, where = 'public.items', extra: Record<string, unknown> = {}, flags: string[] = []): Promise<void> {
  await ok(['secret', 'create', path, ...flags, '--attributes', JSON.stringify({
    linkConfig: { linkType: 'dynamic', linkedSecret: linked },
    grantPermissions: { what: 'SELECT', where },
    userPrefix: PREFIX,
    ttl: 600,
    ...extra,
  })]);
}

/** A failed create: exit 1, one short message, no stack, none of the admin passwords. */
function expectTargetFailure(result: SyResult, names: RegExp): void {
  expect({ exitCode: result.exitCode, stdout: result.stdout }).toEqual({ exitCode: 1, stdout: '' });
  expect(result.stderr).toMatch(names);
  expect(result.stderr).not.toMatch(/^\s+at /m);
  expect(result.stderr.trimEnd().split('\n').length).toBeLessThanOrEqual(2);
  for (const secret of [cluster.password, CLOSED_PASSWORD, WRONG_PASSWORD, ADMIN_PASSWORD]) expect(result.stderr).not.toContain(secret);
  const user = /user "?([a-z0-9_]+_sy[0-9a-z]{7})/.exec(result.stderr)?.[1];
  if (user) failedCreateUsers.push(user);
}

beforeAll(async () => {
  await createPgDatabase(DB, [
    'CREATE TABLE public.items (id int PRIMARY KEY, name text)',
    "INSERT INTO public.items VALUES (1, 'one'), (2, 'two')",
    'CREATE TABLE public.secret_stuff (id int)',
  ]);
  // A non-superuser admin: CREATEROLE, CONNECT and SELECT on the test table, all grantable.
  await pgAdminQuery(`CREATE ROLE ${pg.escapeIdentifier(ADMIN_ROLE)} LOGIN CREATEROLE PASSWORD ${pg.escapeLiteral(ADMIN_PASSWORD)}`);
  await pgAdminQuery(`GRANT CONNECT ON DATABASE ${pg.escapeIdentifier(DB)} TO ${pg.escapeIdentifier(ADMIN_ROLE)} WITH GRANT OPTION`);
  await pgAdminQuery(`GRANT USAGE ON SCHEMA public TO ${pg.escapeIdentifier(ADMIN_ROLE)} WITH GRANT OPTION`, [], DB);
  await pgAdminQuery(`GRANT SELECT ON public.items TO ${pg.escapeIdentifier(ADMIN_ROLE)} WITH GRANT OPTION`, [], DB);

  sy = await makeHome();
  await base('db:pg:root', {});
  await dynamic('db:pg:ro', 'db:pg:root');
  // Stored unchecked (secret create would refuse it): what a lease does when the table is missing.
  await dynamic('db:pg:nosuch', 'db:pg:root', 'public.no_such_table', {}, ['--no-verify']);
  await base('db:pg:closed', { port: 1, password: CLOSED_PASSWORD });
  await dynamic('db:pg:closed-ro', 'db:pg:closed');
  await base('db:pg:wrongpw', { password: WRONG_PASSWORD });
  await dynamic('db:pg:wrongpw-ro', 'db:pg:wrongpw');
  // Revocation goes to the address sealed with the lease: the flaky target is a forwarder that can go down.
  flaky = await startProxy(cluster.port);
  await base('db:pg:flaky', { port: flaky.port });
  await dynamic('db:pg:flaky-ro', 'db:pg:flaky');
  await base('db:pg:limited', { username: ADMIN_ROLE, password: ADMIN_PASSWORD });
  await dynamic('db:pg:limited-ro', 'db:pg:limited');
  await base('db:pg:tls', { ssl: { rejectUnauthorized: false } });
  await dynamic('db:pg:tls-ro', 'db:pg:tls');
  await base('db:pg:tlsverify', { ssl: true });
  await dynamic('db:pg:tlsverify-ro', 'db:pg:tlsverify');
});

afterAll(async () => {
  await flaky?.up();
  if (sy) {
    await sy.run(['dynamic', 'lease', 'revoke', '--prefix', 'db', '--yes', '--force']).catch(() => undefined);
    sy.cleanup();
  }
  await dropPgDatabase(DB).catch(() => undefined);
  const leftovers = new Set([...issued.map((l) => l.username), ...failedCreateUsers, ...(await pgManagedRoles(PREFIX).catch(() => []))]);
  await dropPgRoles([...leftovers]);
  await pgAdminQuery(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(ADMIN_ROLE)}`).catch(() => undefined);
  await flaky?.close();
});

describe('sy dynamic leases when the target misbehaves (SCRAM cluster)', () => {
  test('a closed port: exit 1 within 15 s naming 127.0.0.1:1, no password, no active lease', async () => {
    const started = Date.now();
    const result = await run(['dynamic', 'lease', 'create', '--path', 'db:pg:closed-ro']);
    expect(Date.now() - started).toBeLessThan(15_000);
    expectTargetFailure(result, CLOSED);
    expect(await listed(['--path', 'db:pg:closed-ro'])).toEqual([]);
    expect((await listed(['--all', '--path', 'db:pg:closed-ro'])).filter((l) => l.state === 'active')).toEqual([]);
  });

  test('a wrong admin password: exit 1 naming host:port, no sy user left', async () => {
    const rolesBefore = await pgManagedRoles(PREFIX);
    const result = await run(['dynamic', 'lease', 'create', '--path', 'db:pg:wrongpw-ro']);
    expectTargetFailure(result, new RegExp(TARGET.replace(/\./g, '\\.')));
    expect(await pgManagedRoles(PREFIX)).toEqual(rolesBefore);
    expect(await listed(['--path', 'db:pg:wrongpw-ro'])).toEqual([]);
  });

  test('a grant on a table that does not exist: a clear error, exit 1, no sy user left', async () => {
    const rolesBefore = await pgManagedRoles(PREFIX);
    const result = await run(['dynamic', 'lease', 'create', '--path', 'db:pg:nosuch']);
    expectTargetFailure(result, /no_such_table/);
    expect(result.stderr).toMatch(/does not exist/);
    expect(await pgManagedRoles(PREFIX)).toEqual(rolesBefore);
    expect(await listed(['--path', 'db:pg:nosuch'])).toEqual([]);
  });

  test('revoke of a lease whose target went away: exit 1 and kept; --force forgets it with a warning', async () => {
    const lease = await create('db:pg:flaky-ro');
    await flaky.down();

    const revoke = await run(['dynamic', 'lease', 'revoke', lease.lease_id]);
    expectTargetFailure(revoke, new RegExp(`127\\.0\\.0\\.1:${flaky.port}.*refused`));
    const kept = await ok(['dynamic', 'lease', 'lookup', lease.lease_id]);
    expect(['revoked', 'forgotten']).not.toContain(kept.state);
    expect((await listed()).map((l) => l.lease_id)).toContain(lease.lease_id);
    expect(await pgRoleExists(lease.username)).toBe(true);

    const forced = await run(['dynamic', 'lease', 'revoke', lease.lease_id, '--force', '--yes']);
    expectExit(forced, 0);
    expect(forced.stderr).toMatch(/may remain/);
    expect(forced.stderr).toContain(lease.username);
    expect((await ok(['dynamic', 'lease', 'lookup', lease.lease_id])).state).toBe('forgotten');

    // Back online: a sweep leaves the forgotten lease alone (its user is the reaper's business).
    await flaky.up();
    // (--no-reap: this store also holds base secrets of servers that are down on purpose.)
    const sweep = await run(['dynamic', 'sweep', '--no-reap'], { env: { SY_NO_SWEEP: '0' } });
    expectExit(sweep, 0);
    expect((await ok(['dynamic', 'lease', 'lookup', lease.lease_id])).state).toBe('forgotten');
    expect(await listed()).not.toContainEqual(expect.objectContaining({ lease_id: lease.lease_id }));
  });

  test('an expired lease is revoked by the sweep of an unrelated command', async () => {
    const lease = await create('db:pg:ro', ['--ttl', '2']);
    expect(await pgLoginError(lease.connection_string)).toBeUndefined();
    await new Promise((resolve) => setTimeout(resolve, 3000));
    // Nothing but sy's sweep removes the role: it is still there, only past VALID UNTIL.
    expect(await pgRoleExists(lease.username)).toBe(true);
    const search = await run(['secret', 'search'], { env: { SY_NO_SWEEP: '0' } });
    expectExit(search, 0);
    expect(await pgRoleExists(lease.username)).toBe(false);
    expect((await ok(['dynamic', 'lease', 'lookup', lease.lease_id])).state).toBe('revoked');
  });

  test('a non-superuser CREATEROLE admin issues, renews and revokes (ending an open session)', async () => {
    const lease = await create('db:pg:limited-ro');
    const session = await pgConnect(lease.connection_string);
    expect((await session.query('SELECT count(*)::int AS n FROM public.items')).rows[0].n).toBe(2);
    await expect(session.query('SELECT * FROM public.secret_stuff')).rejects.toMatchObject({ code: '42501' });
    await expect(session.query("INSERT INTO public.items VALUES (3, 'x')")).rejects.toMatchObject({ code: '42501' });

    const renewed = await ok(['dynamic', 'lease', 'renew', lease.lease_id, '--increment', '2h']);
    expect(ms(renewed.expires_at)).toBeGreaterThan(ms(lease.expires_at) + 3600_000);
    expect(Math.abs((await pgValidUntil(lease.username))!.getTime() - ms(renewed.expires_at))).toBeLessThan(1500);

    const revoke = await run(['dynamic', 'lease', 'revoke', lease.lease_id]);
    expect({ exitCode: revoke.exitCode, stderr: revoke.stderr }).toEqual({ exitCode: 0, stderr: expect.any(String) });
    await expect(session.query('SELECT 1')).rejects.toThrow();
    await session.end().catch(() => undefined);
    expect(await pgRoleExists(lease.username)).toBe(false);
    expect(await pgLoginError(lease.connection_string)).toMatch(/^28/);
    expect((await ok(['dynamic', 'lease', 'lookup', lease.lease_id])).state).toBe('revoked');
  });

  test('TLS: rejectUnauthorized false gives sslmode=require and works; ssl true fails on the self-signed certificate', async () => {
    const lease = await create('db:pg:tls-ro');
    expect(new URL(lease.connection_string).searchParams.get('sslmode')).toBe('require');
    const check = await psql([lease.connection_string, '-tAc', 'SELECT current_user || \'|\' || ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()']);
    expect(check).toMatchObject({ exitCode: 0, stdout: `${lease.username}|true` });
    expectExit(await run(['dynamic', 'lease', 'revoke', lease.lease_id]), 0);
    expect(await pgRoleExists(lease.username)).toBe(false);

    const rolesBefore = await pgManagedRoles(PREFIX);
    const verify = await run(['dynamic', 'lease', 'create', '--path', 'db:pg:tlsverify-ro']);
    expectTargetFailure(verify, new RegExp(TARGET.replace(/\./g, '\\.')));
    expect(verify.stderr).toMatch(/certificate|TLS/i);
    expect(await pgManagedRoles(PREFIX)).toEqual(rolesBefore);
  });

  test('the audit log has the creates and revokes, failures included, and no password anywhere', async () => {
    const text = readFileSync(join(sy.env.SY_HOME, 'audit.log'), 'utf8');
    const lines = text.split('\n').filter(Boolean).map((line) => JSON.parse(line));
    for (const lease of issued) {
      expect(lines).toContainEqual(expect.objectContaining({ action: 'lease.create', lease_id: lease.lease_id, db_user: lease.username, outcome: 'success' }));
    }
    expect(lines).toContainEqual(expect.objectContaining({ action: 'lease.create', outcome: 'failure', target: expect.stringContaining('127.0.0.1:1/') }));
    const forgotten = issued[0];
    expect(lines).toContainEqual(expect.objectContaining({ action: 'lease.revoke', lease_id: forgotten.lease_id, db_user: forgotten.username, outcome: 'failure' }));
    expect(lines.some((l) => (l.action === 'lease.revoke' || l.action === 'sweep.revoke') && l.outcome === 'success')).toBe(true);
    for (const secret of [...issued.map((l) => l.password), cluster.password, CLOSED_PASSWORD, WRONG_PASSWORD, ADMIN_PASSWORD]) {
      expect(text.includes(secret)).toBe(false);
      for (const stderr of stderrs) expect(stderr.includes(secret)).toBe(false);
    }
  });
});
