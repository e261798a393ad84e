/**
 * A lease holder who tries to make its own revocation impossible, on every PostgreSQL version
 * the tests run (13 to 18), with the README's least-privilege CREATEROLE admin, through the
 * built bin/sy. Each attack holds something that `ALTER ROLE ... NOLOGIN`, `DROP OWNED` or
 * `DROP ROLE` must wait for: an open transaction that changed the lease's own role row, a
 * lock on its role, a prepared transaction (which needs no session at all, and on PostgreSQL
 * outlives the role that prepared it). Revoke must still end the lease: exit 0, the role
 * checked gone, and nothing of the lease left holding a lock.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { leaseRunner, makeHome, type Lease, type SyHome } from '../helpers/cli.js';
import { expectExit, pgConnect, pgMatrix, pgQueryOn, tag, type PgAdmin } from '../helpers/db.js';

const T = tag();
const ident = (name: string): string => pg.escapeIdentifier(name);
const literal = (value: string): string => pg.escapeLiteral(value);

describe.each(pgMatrix())('PostgreSQL $version', (cluster) => {
  const DB = `sy_lck${cluster.major}_${T}`;
  const PREFIX = `k${cluster.major}${T}_`;
  const GID = `sy_gid_${cluster.major}_${T}`;
  const LEAST: PgAdmin = { host: cluster.host, port: cluster.port, user: `syk${cluster.major}_${T}`, password: `Lk9-${tag(24)}` };
  const ca = readFileSync(cluster.certFile, 'utf8');
  const asSuperuser = <R extends pg.QueryResultRow = any>(sql: string, params: unknown[] = [], database = DB) => pgQueryOn<R>(cluster, sql, params, database);
  const roleExists = async (name: string): Promise<boolean> => (await asSuperuser('SELECT 1 FROM pg_roles WHERE rolname = $1', [name])).length === 1;
  const preparedLeft = async (): Promise<string[]> =>
    (await asSuperuser<{ gid: string }>('SELECT gid FROM pg_prepared_xacts WHERE starts_with(gid, $1) ORDER BY gid', [GID], 'postgres')).map((r) => r.gid);
  const login = (lease: Lease, database = lease.database): pg.ClientConfig => ({
    host: lease.host, port: lease.port, user: lease.username, password: lease.password, database, ssl: { ca, servername: 'localhost' },
  });
  let sy: SyHome;
  const { run, ok, create } = leaseRunner(() => sy);
  const sessions: pg.Client[] = [];
  const asLease = async (lease: Lease, database?: string): Promise<pg.Client> => {
    const client = await pgConnect(login(lease, database));
    sessions.push(client);
    return client;
  };
  const revoke = async (lease: Lease): Promise<void> => {
    const result = await run(['dynamic', 'lease', 'revoke', lease.lease_id]);
    expectExit(result, 0);
    expect(await roleExists(lease.username)).toBe(false);
  };

  beforeAll(async () => {
    await asSuperuser(`CREATE DATABASE ${ident(DB)}`, [], 'postgres');
    for (const statement of [
      'CREATE SCHEMA app',
      'CREATE TABLE app.orders (id int)',
      'INSERT INTO app.orders VALUES (7)',
      // Where leases may create objects, as schema public lets them before PostgreSQL 15.
      'CREATE SCHEMA scratch',
      'GRANT CREATE, USAGE ON SCHEMA scratch TO PUBLIC',
      // The README's least-privilege admin, as it stands.
      `CREATE ROLE ${ident(LEAST.user)} WITH LOGIN CREATEROLE PASSWORD ${literal(LEAST.password)}`,
      `GRANT USAGE ON SCHEMA app TO ${ident(LEAST.user)} WITH GRANT OPTION`,
      `GRANT SELECT, UPDATE ON app.orders TO ${ident(LEAST.user)} WITH GRANT OPTION`,
    ]) {
      await asSuperuser(statement);
    }
    sy = await makeHome();
    await ok(['secret', 'create', '--body', '-'], {
      input: JSON.stringify({
        path: 'db:postgresql:admin',
        attributes: { type: 'postgresql' },
        data: { host: cluster.host, port: cluster.port, username: LEAST.user, password: LEAST.password, database: DB, ssl: { ca, servername: 'localhost' } },
      }),
    });
    await ok([
      'secret', 'create', 'db:postgresql:orders', '--attributes',
      JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: 'db:postgresql:admin' }, grantPermissions: { what: 'SELECT, UPDATE', where: 'app.orders' }, userPrefix: PREFIX, ttl: 600 }),
    ]);
  });

  afterAll(async () => {
    for (const client of sessions) await client.end().catch(() => undefined);
    // A prepared transaction left by a failed test would hold its locks forever: roll it back here.
    const left = await asSuperuser<{ gid: string; database: string }>(
      'SELECT gid, database FROM pg_prepared_xacts WHERE starts_with(gid, $1)', [GID], 'postgres',
    ).catch(() => []);
    for (const { gid, database } of left) await asSuperuser(`ROLLBACK PREPARED ${literal(gid)}`, [], database).catch(() => undefined);
    if (sy) {
      await sy.run(['dynamic', 'lease', 'revoke', '--prefix', 'db', '--yes', '--force']).catch(() => undefined);
      sy.cleanup();
    }
    await asSuperuser(`DROP DATABASE IF EXISTS ${ident(DB)} WITH (FORCE)`, [], 'postgres').catch(() => undefined);
    const roles = await asSuperuser<{ rolname: string }>(
      'SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)', [PREFIX], 'postgres',
    ).catch(() => []);
    for (const { rolname } of roles) {
      await asSuperuser(`DROP OWNED BY ${ident(rolname)}`, [], 'postgres').catch(() => undefined);
      await asSuperuser(`DROP ROLE IF EXISTS ${ident(rolname)}`, [], 'postgres').catch(() => undefined);
    }
    await asSuperuser(`DROP ROLE IF EXISTS ${ident(LEAST.user)}`, [], 'postgres').catch(() => undefined);
  });

  test('an open transaction that changed the lease\'s own role row does not keep the lease alive', async () => {
    const lease = await create('db:postgresql:orders');
    const session = await asLease(lease);
    await session.query(`BEGIN; ALTER ROLE ${ident(lease.username)} PASSWORD 'Changed-in-a-txn-1'`);
    await revoke(lease);
    await expect(session.query('SELECT 1')).rejects.toThrow();
  });

  test('a lock on the lease\'s own role (ALTER ROLE ... SET in an open transaction) does not keep the lease alive', async () => {
    const lease = await create('db:postgresql:orders');
    const session = await asLease(lease);
    await session.query(`BEGIN; ALTER ROLE ${ident(lease.username)} SET work_mem = '1MB'`);
    await revoke(lease);
    await expect(session.query('SELECT 1')).rejects.toThrow();
  });

  test('a prepared transaction on its role row and on a table is rolled back, in the lease\'s database and in another', async () => {
    const lease = await create('db:postgresql:orders');
    const here = await asLease(lease);
    await here.query(`BEGIN; UPDATE app.orders SET id = id; ALTER ROLE ${ident(lease.username)} PASSWORD 'Changed-in-a-txn-2'`);
    await here.query(`PREPARE TRANSACTION ${literal(`${GID}_a`)}`);
    await here.end();
    // Every role may connect to database postgres (PUBLIC holds CONNECT there by default).
    const elsewhere = await asLease(lease, 'postgres');
    await elsewhere.query(`BEGIN; ALTER ROLE ${ident(lease.username)} SET work_mem = '2MB'`);
    await elsewhere.query(`PREPARE TRANSACTION ${literal(`${GID}_b`)}`);
    await elsewhere.end();
    expect(await preparedLeft()).toEqual([`${GID}_a`, `${GID}_b`]);

    await revoke(lease);
    expect(await preparedLeft()).toEqual([]);
    // The row lock went with the prepared transaction: the table can be written again at once.
    await asSuperuser("SET lock_timeout = '2s'; UPDATE app.orders SET id = id");
  });

  test('a lease that keeps logging in again to lock its role row is still revoked', async () => {
    const lease = await create('db:postgresql:orders');
    let stop = false;
    const relock = (async () => {
      while (!stop) {
        const client = await pgConnect(login(lease)).catch(() => undefined);
        if (client === undefined) break; // NOLOGIN: it cannot come back
        sessions.push(client);
        await client.query(`BEGIN; ALTER ROLE ${ident(lease.username)} PASSWORD 'Changed-in-a-txn-3'`).catch(() => undefined);
        // Hold it until the server ends the session.
        await client.query('SELECT pg_sleep(30)').catch(() => undefined);
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 300));
    try {
      await revoke(lease);
    } finally {
      stop = true;
      for (const client of sessions) await client.end().catch(() => undefined);
      await relock;
    }
  });

  test('another lease that holds a lock on a table this lease owns is ended, and stays a lease', async () => {
    const owner = await create('db:postgresql:orders');
    const other = await create('db:postgresql:orders');
    const TABLE = `made_${cluster.major}_${T}`;
    const mine = await asLease(owner);
    await mine.query(`CREATE TABLE scratch.${ident(TABLE)} (id int); GRANT SELECT ON scratch.${ident(TABLE)} TO PUBLIC`);
    const blocker = await asLease(other);
    await blocker.query(`BEGIN; SELECT * FROM scratch.${ident(TABLE)}`);
    await revoke(owner);
    expect(await asSuperuser('SELECT 1 FROM pg_class WHERE relname = $1', [TABLE])).toEqual([]);
    await expect(blocker.query('SELECT 1')).rejects.toThrow();
    // Only its session ended: the other lease still logs in.
    const again = await asLease(other);
    expect((await again.query('SELECT current_user AS u')).rows).toEqual([{ u: other.username }]);
  });

  test('the lease\'s own role settings (read-only, 1 ms timeouts) never reach the admin, not even its SET ROLE to roll back a prepared transaction', async () => {
    const lease = await create('db:postgresql:orders');
    const session = await asLease(lease);
    await session.query(`ALTER ROLE ${ident(lease.username)} SET default_transaction_read_only = on`);
    await session.query(`ALTER ROLE ${ident(lease.username)} SET statement_timeout = 1`);
    await session.query(`ALTER ROLE ${ident(lease.username)} SET lock_timeout = 1`);
    await session.query(`BEGIN; UPDATE app.orders SET id = id`);
    await session.query(`PREPARE TRANSACTION ${literal(`${GID}_d`)}`);
    await session.end();
    await revoke(lease);
    expect(await preparedLeft()).toEqual([]);
  });

  test('another lease\'s prepared transaction that holds a lock on a table this lease owns is rolled back, and that lease stays', async () => {
    const owner = await create('db:postgresql:orders');
    const other = await create('db:postgresql:orders');
    const TABLE = `prep_${cluster.major}_${T}`;
    const mine = await asLease(owner);
    await mine.query(`CREATE TABLE scratch.${ident(TABLE)} (id int); GRANT SELECT ON scratch.${ident(TABLE)} TO PUBLIC`);
    // No session at all holds the lock: pg_blocking_pids names a prepared transaction as pid 0.
    const blocker = await asLease(other);
    await blocker.query(`BEGIN; SELECT * FROM scratch.${ident(TABLE)}`);
    await blocker.query(`PREPARE TRANSACTION ${literal(`${GID}_c`)}`);
    await blocker.end();
    await revoke(owner);
    expect(await asSuperuser('SELECT 1 FROM pg_class WHERE relname = $1', [TABLE])).toEqual([]);
    expect(await preparedLeft()).toEqual([]);
    const again = await asLease(other);
    expect((await again.query('SELECT current_user AS u')).rows).toEqual([{ u: other.username }]);
  });
});
