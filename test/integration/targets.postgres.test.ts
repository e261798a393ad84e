/**
 * PostgresTarget against real PostgreSQL servers, 13 to 18: the throwaway clusters started by
 * test/global-setup.ts, which check SCRAM passwords, speak TLS and log every statement. The
 * whole file runs once per version.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { jest } from '@jest/globals';
import pg from 'pg';
import { SyError } from '../../src/errors.js';
import type { BaseConnection, GrantPermission } from '../../src/model/secret.js';
import { newPassword, newUserName } from '../../src/targets/names.js';
import { PostgresTarget } from '../../src/targets/postgres.js';
import type { NewUser } from '../../src/targets/target.js';
import { pgMatrix } from '../helpers/db.js';
import { serverLogOf } from '../helpers/pg-cluster.js';

describe.each(pgMatrix())('PostgreSQL $version', (cluster) => {
  const HOST = '127.0.0.1';
  const PORT = cluster.port;
  const SUPER_PASSWORD = cluster.password;
  const CLUSTER_DIR = cluster.dir;
  const RUN = `${cluster.major}_${randomBytes(4).toString('hex')}`;
  const DB = `sy_t_${RUN}`;
  const ADMIN = `sy_admin_${RUN}`;
  const ADMIN_PASSWORD = newPassword();
  const OPTIONS = { connectTimeoutMs: 3000 };

  const superConn: BaseConnection = { engine: 'postgresql', host: HOST, port: PORT, username: 'postgres', password: SUPER_PASSWORD, database: DB };
  const adminConn: BaseConnection = { ...superConn, username: ADMIN, password: ADMIN_PASSWORD };

  let sql: pg.Client; // superuser, for setup and for checking the catalog
  let target: PostgresTarget; // superuser admin
  const created: string[] = [];

  const select = (schema: string, table: string, ...privileges: string[]): GrantPermission => ({
    privileges: privileges.length > 0 ? privileges : ['SELECT'],
    schema,
    table,
  });

  function newUser(grants: GrantPermission[], ttlSeconds = 3600): NewUser {
    const expiresAt = new Date(Math.floor(Date.now() / 1000) * 1000 + ttlSeconds * 1000);
    const username = newUserName('postgresql', expiresAt, 'sy_');
    created.push(username);
    return { username, password: newPassword(), expiresAt, grants };
  }

  async function login(username: string, password: string): Promise<pg.Client> {
    const client = new pg.Client({ host: HOST, port: PORT, user: username, password, database: DB, ssl: false });
    client.on('error', () => undefined);
    await client.connect();
    return client;
  }

  async function roleExists(name: string): Promise<boolean> {
    const { rows } = await sql.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [name]);
    return rows.length === 1;
  }

  async function validUntil(name: string): Promise<Date> {
    const { rows } = await sql.query<{ until: Date }>('SELECT rolvaliduntil AS until FROM pg_roles WHERE rolname = $1', [name]);
    return rows[0].until;
  }

  async function syError(promise: Promise<unknown>): Promise<SyError> {
    try {
      await promise;
    } catch (error) {
      if (error instanceof SyError) return error;
      throw error;
    }
    throw new Error('expected a SyError, but the call succeeded');
  }

  function pgCode(promise: Promise<unknown>): Promise<string | undefined> {
    return promise.then(
      () => 'succeeded',
      (error: { code?: string }) => error.code,
    );
  }

  beforeAll(async () => {
    if (!PORT || !SUPER_PASSWORD) throw new Error('The throwaway PostgreSQL cluster is not running: run jest with test/global-setup.ts.');
    const boot = new pg.Client({ host: HOST, port: PORT, user: 'postgres', password: SUPER_PASSWORD, database: 'postgres' });
    await boot.connect();
    await boot.query(`CREATE DATABASE ${DB}`);
    await boot.end();
    sql = new pg.Client({ host: HOST, port: PORT, user: 'postgres', password: SUPER_PASSWORD, database: DB });
    await sql.connect();
    await sql.query(`
      CREATE SCHEMA app;
      CREATE TABLE app.items (id int PRIMARY KEY, name text);
      INSERT INTO app.items VALUES (1, 'one'), (2, 'two');
      CREATE TABLE app.secrets (x int);
      CREATE SCHEMA other;
      CREATE TABLE other.notes (n text);
      INSERT INTO other.notes VALUES ('note');
      -- Logging in then needs the CONNECT grant sy hands out.
      REVOKE CONNECT ON DATABASE ${DB} FROM PUBLIC;
      -- The least a non-superuser admin needs for SELECT on app.items (see docs/admin-privileges.md).
      CREATE ROLE ${ADMIN} WITH LOGIN CREATEROLE PASSWORD '${ADMIN_PASSWORD}';
      GRANT CONNECT ON DATABASE ${DB} TO ${ADMIN} WITH GRANT OPTION;
      GRANT USAGE ON SCHEMA app TO ${ADMIN} WITH GRANT OPTION;
      GRANT SELECT ON app.items TO ${ADMIN} WITH GRANT OPTION;
      GRANT SELECT ON app.secrets TO ${ADMIN};
    `);
    target = await PostgresTarget.connect(superConn, OPTIONS);
  });

  afterAll(async () => {
    await target?.close();
    if (!sql) return;
    await sql.end();
    const boot = new pg.Client({ host: HOST, port: PORT, user: 'postgres', password: SUPER_PASSWORD, database: 'postgres' });
    await boot.connect();
    await boot.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
    for (const name of [...created, ADMIN]) await boot.query(`DROP ROLE IF EXISTS "${name}"`);
    await boot.end();
  });

  describe('PostgresTarget as superuser', () => {
    test('creates a user that logs in with its password only and holds exactly the granted privileges', async () => {
      const user = newUser([select('app', 'items')]);
      await target.createUser(user);

      const session = await login(user.username, user.password);
      try {
        const { rows } = await session.query('SELECT name FROM app.items ORDER BY id');
        expect(rows.map((r) => r.name)).toEqual(['one', 'two']);
        expect(await pgCode(session.query("INSERT INTO app.items VALUES (3, 'three')"))).toBe('42501');
        expect(await pgCode(session.query('SELECT * FROM app.secrets'))).toBe('42501');
      } finally {
        await session.end();
      }
      expect(await pgCode(login(user.username, `${user.password}x`))).toBe('28P01');

      const { rows } = await sql.query(
        `SELECT a.rolpassword, a.rolcanlogin, a.rolinherit, shobj_description(a.oid, 'pg_authid') AS comment
           FROM pg_authid a WHERE a.rolname = $1`,
        [user.username],
      );
      expect(rows[0].rolpassword).toMatch(/^SCRAM-SHA-256\$4096:/);
      expect(rows[0]).toMatchObject({ rolcanlogin: true, rolinherit: false });
      expect(rows[0].comment).toMatch(/^managed by sy; reap after \d{4}-\d\d-\d\dT/);
      expect((await validUntil(user.username)).getTime()).toBe(user.expiresAt.getTime());
      // log_statement = all: the CREATE ROLE is in the log, the password is not.
      const log = readFileSync(serverLogOf(CLUSTER_DIR), 'utf8');
      expect(log).toContain(`CREATE ROLE "${user.username}"`);
      expect(log).not.toContain(user.password);
    });

    test('*.* reaches every non-system schema, s.* one schema only', async () => {
      const everything = newUser([select('*', '*')]);
      const otherOnly = newUser([select('other', '*')]);
      await target.createUser(everything);
      await target.createUser(otherOnly);

      const a = await login(everything.username, everything.password);
      const b = await login(otherOnly.username, otherOnly.password);
      try {
        expect((await a.query('SELECT count(*)::int AS n FROM app.items')).rows[0].n).toBe(2);
        expect((await a.query('SELECT n FROM other.notes')).rows).toEqual([{ n: 'note' }]);
        expect((await b.query('SELECT n FROM other.notes')).rows).toEqual([{ n: 'note' }]);
        expect(await pgCode(b.query('SELECT * FROM app.items'))).toBe('42501');
      } finally {
        await a.end();
        await b.end();
      }
    });

    test('renew moves VALID UNTIL; renewing a dropped role says it no longer exists', async () => {
      const user = newUser([select('app', 'items')], 600);
      await target.createUser(user);
      const later = new Date(user.expiresAt.getTime() + 3600_000);
      await target.renewUser(user.username, later);
      expect((await validUntil(user.username)).getTime()).toBe(later.getTime());

      await target.revokeUsers([user.username]);
      const error = await syError(target.renewUser(user.username, later));
      expect(error.code).toBe('user_not_found');
      expect(error.message).toContain('no longer exists');
    });

    test('revoke terminates an open session, blocks new logins and drops the role', async () => {
      const user = newUser([select('app', 'items')]);
      await target.createUser(user);
      const session = await login(user.username, user.password);
      await session.query('SELECT 1');

      await target.revokeUsers([user.username]);

      await expect(session.query('SELECT 1')).rejects.toThrow();
      await session.end().catch(() => undefined);
      expect(await pgCode(login(user.username, user.password))).toBe('28P01');
      expect(await roleExists(user.username)).toBe(false);
    });

    test('revoking twice, unknown names or nothing succeeds', async () => {
      const user = newUser([select('app', 'items')]);
      await target.createUser(user);
      await expect(target.revokeUsers([user.username])).resolves.toEqual({ dropped: [user.username], absent: [], failed: [] });
      await expect(target.revokeUsers([user.username])).resolves.toEqual({ dropped: [], absent: [user.username], failed: [] });
      const unknown = newUserName('postgresql', new Date());
      await expect(target.revokeUsers([unknown, user.username])).resolves.toEqual({ dropped: [], absent: [unknown, user.username], failed: [] });
      await expect(target.revokeUsers([])).resolves.toEqual({ dropped: [], absent: [], failed: [] });
      expect(await roleExists(user.username)).toBe(false);
    });

    test('revokes a batch in a number of round trips that does not grow with its size', async () => {
      const client = (target as unknown as { client: pg.Client }).client;
      const revokeCountingQueries = async (users: NewUser[]): Promise<number> => {
        for (const user of users) await target.createUser(user);
        const sessions = await Promise.all(users.map((u) => login(u.username, u.password)));
        const spy = jest.spyOn(client, 'query');
        try {
          await target.revokeUsers(users.map((u) => u.username));
        } finally {
          spy.mockRestore();
        }
        for (const session of sessions) {
          await expect(session.query('SELECT 1')).rejects.toThrow();
          await session.end().catch(() => undefined);
        }
        for (const user of users) expect(await roleExists(user.username)).toBe(false);
        return spy.mock.calls.length;
      };
      const three = await revokeCountingQueries([newUser([select('app', 'items')]), newUser([select('*', '*')]), newUser([select('other', 'notes')])]);
      const ten = await revokeCountingQueries(Array.from({ length: 10 }, () => newUser([select('app', 'items'), select('other', 'notes')])));
      expect(three).toBeLessThanOrEqual(6);
      expect(ten).toBe(three);
    });

    test('a batch revoke also removes privileges sy did not hand out: a column, a sequence, a schema', async () => {
      const users = [newUser([select('app', 'items')]), newUser([select('*', '*')]), newUser([select('other', 'notes'), select('app', 'items')])];
      for (const user of users) await target.createUser(user);
      const names = users.map((u) => u.username);
      await sql.query(`CREATE SEQUENCE IF NOT EXISTS app.counter; GRANT USAGE ON SEQUENCE app.counter TO "${names[0]}";
                       GRANT UPDATE (name) ON app.items TO "${names[1]}"; GRANT CREATE ON SCHEMA other TO "${names[2]}"`);

      await target.revokeUsers(names);

      // DROP ROLE succeeds only once nothing depends on the role any more.
      for (const name of names) expect(await roleExists(name)).toBe(false);
    });

    test('a grant on a missing table or schema fails, names it and leaves no role', async () => {
      const user = newUser([select('app', 'items'), select('app', 'nope')]);
      const error = await syError(target.createUser(user));
      expect(error.code).toBe('grant_failed');
      expect(error.message).toBe(`Could not grant SELECT on app.nope at ${HOST}:${PORT}: relation "app.nope" does not exist.`);
      expect(await roleExists(user.username)).toBe(false);

      const other = newUser([select('nope', '*')]);
      const schemaError = await syError(target.createUser(other));
      expect(schemaError.message).toBe(`Could not grant SELECT on nope.* at ${HOST}:${PORT}: schema "nope" does not exist.`);
      expect(await roleExists(other.username)).toBe(false);
    });

    test('listManagedUsers finds the users sy created with their reap-after bound, and nothing else', async () => {
      const user = newUser([select('app', 'items')], 7200);
      await target.createUser(user);
      const { serverNow, users: managed } = await target.listManagedUsers();
      const mine = managed.find((m) => m.username === user.username);
      expect(mine?.reapAfter.getTime()).toBe(user.expiresAt.getTime());
      // VALID UNTIL is the lease's expiry, read back from the server.
      expect(mine?.validUntil?.getTime()).toBe(user.expiresAt.getTime());
      const { rows } = await sql.query<{ now: Date }>('SELECT now() AS now');
      expect(Math.abs(serverNow.getTime() - rows[0].now.getTime())).toBeLessThan(5_000);
      expect(managed.map((m) => m.username)).not.toContain('postgres');
      expect(managed.map((m) => m.username)).not.toContain(ADMIN);
      await target.revokeUsers([user.username]);
      expect((await target.listManagedUsers()).users.map((m) => m.username)).not.toContain(user.username);
    });

    test('custom creation and revocation statements replace the defaults', async () => {
      const user = newUser([]);
      user.creationStatements = [
        `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{ expiration }}'`,
        `GRANT CONNECT ON DATABASE ${DB} TO "{{name}}"`,
        'GRANT USAGE ON SCHEMA other TO "{{name}}"',
        'GRANT SELECT ON other.notes TO "{{name}}"',
      ];
      await target.createUser(user);
      const session = await login(user.username, user.password);
      expect((await session.query('SELECT n FROM other.notes')).rows).toEqual([{ n: 'note' }]);
      expect((await validUntil(user.username)).getTime()).toBe(user.expiresAt.getTime());

      const revoked = await target.revokeUsers([user.username], {
        revocationStatements: ['REVOKE ALL ON other.notes FROM "{{name}}"', 'REVOKE ALL ON SCHEMA other FROM "{{name}}"', `REVOKE ALL ON DATABASE ${DB} FROM "{{name}}"`, 'DROP ROLE "{{name}}"'],
      });
      expect(revoked.dropped).toEqual([user.username]);
      await expect(session.query('SELECT 1')).rejects.toThrow();
      await session.end().catch(() => undefined);
      expect(await roleExists(user.username)).toBe(false);

      const broken = newUser([]);
      broken.creationStatements = [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}'`, 'GRANT SELECT ON app.nope TO "{{name}}"'];
      const error = await syError(target.createUser(broken));
      expect(error.code).toBe('create_user_failed');
      expect(error.message).not.toContain(broken.password);
      expect(await roleExists(broken.username)).toBe(false);
    });
  });

  describe('PostgresTarget as a non-superuser admin (LOGIN CREATEROLE, grant options only)', () => {
    let limited: PostgresTarget;
    beforeAll(async () => {
      limited = await PostgresTarget.connect(adminConn, OPTIONS);
    });
    afterAll(async () => {
      await limited?.close();
    });

    test('creates, renews and revokes, ending the user session', async () => {
      const user = newUser([select('app', 'items')]);
      await limited.createUser(user);
      const session = await login(user.username, user.password);
      expect((await session.query('SELECT count(*)::int AS n FROM app.items')).rows[0].n).toBe(2);
      expect(await pgCode(session.query('SELECT * FROM other.notes'))).toBe('42501');

      const later = new Date(user.expiresAt.getTime() + 600_000);
      await limited.renewUser(user.username, later);
      expect((await validUntil(user.username)).getTime()).toBe(later.getTime());

      await limited.revokeUsers([user.username]);
      await expect(session.query('SELECT 1')).rejects.toThrow();
      await session.end().catch(() => undefined);
      expect(await roleExists(user.username)).toBe(false);
      const { rows } = await sql.query('SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = $1', [ADMIN]);
      expect(rows).toHaveLength(0);
    });

    test('revokes a batch of its users in one pass', async () => {
      const users = [newUser([select('app', 'items')]), newUser([select('app', 'items')]), newUser([select('app', 'items')])];
      for (const user of users) await limited.createUser(user);
      const sessions = await Promise.all(users.map((u) => login(u.username, u.password)));
      await limited.revokeUsers(users.map((u) => u.username));
      for (const session of sessions) {
        await expect(session.query('SELECT 1')).rejects.toThrow();
        await session.end().catch(() => undefined);
      }
      for (const user of users) expect(await roleExists(user.username)).toBe(false);
    });

    test('in a batch, a role holding what the admin cannot revoke fails alone, naming it', async () => {
      const users = [newUser([select('app', 'items')]), newUser([select('app', 'items')])];
      for (const user of users) await limited.createUser(user);
      const [stuck, fine] = users.map((u) => u.username);
      // Granted by the superuser on a table the admin has no privilege on.
      await sql.query(`GRANT SELECT ON other.notes TO "${stuck}"`);

      const result = await limited.revokeUsers([stuck, fine]);
      expect(result.dropped).toEqual([fine]);
      expect(result.failed.map((f) => f.username)).toEqual([stuck]);
      const [{ error }] = result.failed;
      expect(error.code).toBe('revoke_failed');
      expect(error.message).toContain(stuck);
      expect(error.message).not.toContain(fine);
      expect(await roleExists(fine)).toBe(false);
      expect(await roleExists(stuck)).toBe(true);
      // Nothing the failed attempt did is left half-done: the role still holds its grants.
      const { rows } = await sql.query("SELECT has_table_privilege($1, 'app.items', 'SELECT') AS ok", [stuck]);
      expect(rows[0].ok).toBe(true);

      // Though it could not be dropped, it can no longer log in.
      const { rows: login } = await sql.query('SELECT rolcanlogin FROM pg_roles WHERE rolname = $1', [stuck]);
      expect(login[0].rolcanlogin).toBe(false);

      await sql.query(`REVOKE ALL ON other.notes FROM "${stuck}"`);
      expect((await limited.revokeUsers([stuck])).dropped).toEqual([stuck]);
      expect(await roleExists(stuck)).toBe(false);
    });

    test('refuses a grant it cannot really hand out and leaves no role', async () => {
      // SELECT without GRANT OPTION: PostgreSQL itself would only warn.
      const noOption = newUser([select('app', 'secrets')]);
      const error = await syError(limited.createUser(noOption));
      expect(error.code).toBe('grant_failed');
      expect(error.message).toContain('WITH GRANT OPTION');
      expect(await roleExists(noOption.username)).toBe(false);

      const noPrivilege = newUser([select('other', 'notes')]);
      const denied = await syError(limited.createUser(noPrivilege));
      expect(denied.code).toBe('grant_failed');
      expect(denied.message).toContain('permission denied');
      expect(await roleExists(noPrivilege.username)).toBe(false);
    });
  });

  describe('PostgresTarget connection failures', () => {
    test('a closed port fails fast, naming host and port', async () => {
      const port = await new Promise<number>((resolve) => {
        const server = net.createServer().listen(0, HOST, () => {
          const { port: p } = server.address() as net.AddressInfo;
          server.close(() => resolve(p));
        });
      });
      const started = Date.now();
      const error = await syError(PostgresTarget.connect({ ...superConn, port }, OPTIONS));
      expect(Date.now() - started).toBeLessThan(OPTIONS.connectTimeoutMs);
      expect(error.code).toBe('target_unreachable');
      expect(error.exitCode).toBe(1);
      expect(error.message).toBe(`Could not connect to PostgreSQL at ${HOST}:${port}: connection refused.`);
    });

    test('a server that never answers fails after the timeout', async () => {
      const sockets: net.Socket[] = [];
      const server = net.createServer((socket) => sockets.push(socket));
      await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
      const { port } = server.address() as net.AddressInfo;
      try {
        const started = Date.now();
        const error = await syError(PostgresTarget.connect({ ...superConn, port }, { connectTimeoutMs: 500 }));
        const elapsed = Date.now() - started;
        expect(elapsed).toBeGreaterThanOrEqual(450);
        expect(elapsed).toBeLessThan(3000);
        expect(error.code).toBe('target_unreachable');
        expect(error.message).toBe(`Could not connect to PostgreSQL at ${HOST}:${port}: no answer within 500 ms.`);
      } finally {
        for (const socket of sockets) socket.destroy();
        server.close();
      }
    });

    test('a wrong admin password is refused without showing the password', async () => {
      const password = newPassword();
      const error = await syError(PostgresTarget.connect({ ...superConn, password }, OPTIONS));
      expect(error.code).toBe('target_refused');
      expect(error.message).toBe(`Could not connect to PostgreSQL at ${HOST}:${PORT}: password authentication failed for user "postgres".`);
      expect(`${error.message} ${error.hint ?? ''} ${String(error.cause)}`).not.toContain(password);
    });
  });

  describe('PostgresTarget over TLS (self-signed certificate for localhost)', () => {
    const cert = (): string => readFileSync(cluster.certFile, 'utf8');

    async function usesTls(t: PostgresTarget): Promise<boolean> {
      const client = (t as unknown as { client: pg.Client }).client;
      const { rows } = await client.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
      return rows[0].ssl === true;
    }

    test('connects without verification when rejectUnauthorized is false', async () => {
      const t = await PostgresTarget.connect({ ...superConn, ssl: { rejectUnauthorized: false } }, OPTIONS);
      try {
        expect(await usesTls(t)).toBe(true);
      } finally {
        await t.close();
      }
    });

    test('ssl: true verifies the certificate and fails cleanly on a self-signed one', async () => {
      const error = await syError(PostgresTarget.connect({ ...superConn, ssl: true }, OPTIONS));
      expect(error.code).toBe('target_unreachable');
      expect(error.message).toMatch(new RegExp(`^Could not connect to PostgreSQL at ${HOST}:${PORT}: the TLS certificate was not accepted \\(\\w+\\)\\.$`));
    });

    test('trusts the certificate given as ca, checked against servername', async () => {
      const t = await PostgresTarget.connect({ ...superConn, ssl: { ca: cert(), servername: 'localhost' } }, OPTIONS);
      try {
        expect(await usesTls(t)).toBe(true);
        const user = newUser([select('app', 'items')]);
        await t.createUser(user);
        await t.revokeUsers([user.username]);
        expect(await roleExists(user.username)).toBe(false);
      } finally {
        await t.close();
      }
      const mismatch = await syError(PostgresTarget.connect({ ...superConn, ssl: { ca: cert(), servername: 'db.example.com' } }, OPTIONS));
      expect(mismatch.message).toBe(`Could not connect to PostgreSQL at ${HOST}:${PORT}: the TLS certificate does not match the host name.`);
    });
  });
});
