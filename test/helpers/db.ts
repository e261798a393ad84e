/**
 * Direct access to the test targets, for the lease end-to-end tests: the throwaway SCRAM
 * PostgreSQL clusters of the jest global setup (they check passwords, the machine's own
 * PostgreSQL does not; pgMatrix() lists one per version) and the local MariaDB (root, empty
 * password). Each test file makes
 * its own uniquely named database and drops it, and the users it created, when done.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { execa } from 'execa';
import mysql from 'mysql2/promise';
import pg from 'pg';
import type { MatrixCluster } from './pg-cluster.js';

/** sy's marker at the end of every user name it creates (see src/targets/names.ts). */
export const SY_MARKER = /[a-z0-9]{10}_sy[0-9a-z]{7}$/;

/** A short random lower-case tag for database, role and prefix names. */
export function tag(length = 6): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  return [...randomBytes(length)].map((b) => alphabet[b % alphabet.length]).join('');
}

/**
 * The servers are shared and never clean (other stores' users, other runs' users): a test lists
 * or drops only users under its own prefix, letters and its tag ending in `_` (`rp1a2b_`).
 * Anything broader (an empty prefix, `sy_`) would reach users that are not the test's.
 */
export function ownPrefix(prefix: string): string {
  if (!/^[a-z]+[a-z0-9]{3,}_$/.test(prefix)) throw new Error(`not a test's own user prefix: ${JSON.stringify(prefix)}`);
  return prefix;
}

/** Milliseconds of an ISO time, for comparisons. */
export const ms = (iso: string): number => Date.parse(iso);

// ---------------------------------------------------------------- PostgreSQL (SCRAM cluster)

export interface PgAdmin {
  host: string;
  port: number;
  user: string;
  password: string;
}

export function scramCluster(): PgAdmin {
  const port = Number(process.env.SY_TEST_PG_PORT);
  const password = process.env.SY_TEST_PG_PASSWORD;
  if (!port || !password) throw new Error('SY_TEST_PG_PORT / SY_TEST_PG_PASSWORD are not set: run through jest (global setup starts the cluster).');
  return { host: '127.0.0.1', port, user: 'postgres', password };
}

/** A throwaway SCRAM + TLS cluster of one PostgreSQL version, with its superuser `postgres`. */
export type PgVersionCluster = PgAdmin & {
  /** `major.minor` as the server reports it (`17.10`). */
  version: string;
  major: number;
  /** The server's self-signed certificate (CN and SAN: localhost). */
  certFile: string;
  /** The cluster's directory: its server log is `server.log` there (log_statement = all). */
  dir: string;
};

/**
 * Every PostgreSQL version the tests run against, oldest first: the throwaway clusters of
 * the global setup's matrix (13, 14, 16, 17, 18) and the SCRAM cluster of the machine's 15.
 */
export function pgMatrix(): PgVersionCluster[] {
  const raw = process.env.SY_TEST_PG_MATRIX;
  if (!raw || !process.env.SY_TEST_PG_VERSION) throw new Error('SY_TEST_PG_MATRIX / SY_TEST_PG_VERSION are not set: run through jest (global setup starts the clusters).');
  const others = (JSON.parse(raw) as MatrixCluster[]).map(({ version, major, port, password, certFile, dir }) => ({
    host: '127.0.0.1', port, user: 'postgres', password, version, major, certFile, dir,
  }));
  const version = process.env.SY_TEST_PG_VERSION;
  const machine = { ...scramCluster(), version, major: Number(version.split('.')[0]), certFile: process.env.SY_TEST_PG_CERT_FILE ?? '', dir: process.env.SY_TEST_PG_DIR ?? '' };
  return [...others, machine].sort((a, b) => a.major - b.major);
}

/** A connected client that never crashes the test when the server ends its session. */
export async function pgConnect(config: pg.ClientConfig | string): Promise<pg.Client> {
  const client = new pg.Client(typeof config === 'string' ? { connectionString: config, connectionTimeoutMillis: 10_000 } : { connectionTimeoutMillis: 10_000, ...config });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/** The machine's own PostgreSQL: trusts 127.0.0.1, so good for setup, never for password checks. */
export const LOCAL_PG = { host: '127.0.0.1', port: 5432, user: 'postgres' };

/** One query on the machine's own PostgreSQL as `postgres`, in `database` (default postgres). */
export async function localPgQuery<R extends pg.QueryResultRow = any>(sql: string, params: unknown[] = [], database = 'postgres'): Promise<R[]> {
  const client = await pgConnect({ ...LOCAL_PG, database });
  try {
    return (await client.query<R>(sql, params)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** One query on `cluster` as its user (the superuser, for pgMatrix() entries), in `database` (default postgres). */
export async function pgQueryOn<R extends pg.QueryResultRow = any>(cluster: PgAdmin, sql: string, params: unknown[] = [], database = 'postgres'): Promise<R[]> {
  const client = await pgConnect({ host: cluster.host, port: cluster.port, user: cluster.user, password: cluster.password, database });
  try {
    return (await client.query<R>(sql, params)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** One query as the SCRAM cluster's superuser, in `database` (default postgres). */
export async function pgAdminQuery<R extends pg.QueryResultRow = any>(sql: string, params: unknown[] = [], database = 'postgres'): Promise<R[]> {
  return pgQueryOn<R>(scramCluster(), sql, params, database);
}

/** Creates a database and runs `setup` statements in it as the superuser. */
export async function createPgDatabase(name: string, setup: string[]): Promise<void> {
  await pgAdminQuery(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  for (const statement of setup) await pgAdminQuery(statement, [], name);
}

export async function dropPgDatabase(name: string): Promise<void> {
  await pgAdminQuery(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
}

/** The sy-marked roles whose name starts with `prefix`. */
export async function pgManagedRoles(prefix: string): Promise<string[]> {
  const rows = await pgAdminQuery<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1) AND rolname ~ $2 ORDER BY 1', [
    ownPrefix(prefix),
    '[a-z0-9]{10}_sy[0-9a-z]{7}$',
  ]);
  return rows.map((r) => r.rolname);
}

export async function pgRoleExists(name: string): Promise<boolean> {
  return (await pgAdminQuery('SELECT 1 FROM pg_roles WHERE rolname = $1', [name])).length === 1;
}

export async function pgValidUntil(name: string): Promise<Date | null> {
  const rows = await pgAdminQuery<{ until: Date | null }>('SELECT rolvaliduntil AS until FROM pg_roles WHERE rolname = $1', [name]);
  return rows[0]?.until ?? null;
}

/** The SQLSTATE of a failed login, or undefined when the login works. */
export async function pgLoginError(config: pg.ClientConfig | string): Promise<string | undefined> {
  try {
    const client = await pgConnect(config);
    await client.query('SELECT 1');
    await client.end();
    return undefined;
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
}

/** Drops roles left behind by a test (their grants live in `databases`). */
export async function dropPgRoles(names: string[], databases: string[] = []): Promise<void> {
  for (const name of names) {
    if (!(await pgRoleExists(name))) continue;
    for (const database of databases) {
      await pgAdminQuery(`DROP OWNED BY ${pg.escapeIdentifier(name)}`, [], database).catch(() => undefined);
    }
    await pgAdminQuery(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(name)}`).catch(() => undefined);
  }
}

/** psql with nothing from the test's environment but PATH (and `env`). */
export async function psql(args: string[], env: Record<string, string> = {}, cwd?: string) {
  const result = await execa('psql', ['-X', '-v', 'ON_ERROR_STOP=1', ...args], {
    env: { PATH: process.env.PATH, ...env },
    extendEnv: false,
    reject: false,
    stdin: 'ignore',
    timeout: 30_000,
    cwd,
  });
  return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
}

// ---------------------------------------------------------------- MariaDB (local server)

export const MARIADB = { host: '127.0.0.1', port: 3306, user: 'root', password: '' };

export async function myConnect(config: mysql.ConnectionOptions | string): Promise<mysql.Connection> {
  const connection = typeof config === 'string' ? await mysql.createConnection(config) : await mysql.createConnection({ connectTimeout: 10_000, ...config });
  connection.on('error', () => undefined);
  return connection;
}

export async function myAdminQuery<R = any>(sql: string, params: unknown[] = []): Promise<R[]> {
  const connection = await myConnect({ ...MARIADB, multipleStatements: false });
  try {
    const [rows] = await connection.query(sql, params);
    return rows as R[];
  } finally {
    await connection.end().catch(() => undefined);
  }
}

export async function createMyDatabase(name: string, setup: string[]): Promise<void> {
  await myAdminQuery(`CREATE DATABASE \`${name}\``);
  for (const statement of setup) await myAdminQuery(statement.replaceAll('{{db}}', `\`${name}\``));
}

export async function dropMyDatabase(name: string): Promise<void> {
  await myAdminQuery(`DROP DATABASE IF EXISTS \`${name}\``);
}

/** The sy-marked users (any host) whose name starts with `prefix`. */
export async function myManagedUsers(prefix: string): Promise<string[]> {
  const rows = await myAdminQuery<{ User: string }>('SELECT DISTINCT User FROM mysql.user WHERE User LIKE ? AND User REGEXP ? ORDER BY User', [
    `${ownPrefix(prefix).replace(/[\\%_]/g, (c) => `\\${c}`)}%`,
    '[a-z0-9]{10}_sy[0-9a-z]{7}$',
  ]);
  return rows.map((r) => String(r.User));
}

export async function myUserExists(name: string): Promise<boolean> {
  return (await myAdminQuery('SELECT 1 FROM mysql.user WHERE User = ?', [name])).length > 0;
}

/** The error code of a failed login, or undefined when the login works. */
export async function myLoginError(config: mysql.ConnectionOptions | string): Promise<string | undefined> {
  try {
    const connection = await myConnect(config);
    await connection.query('SELECT 1');
    await connection.end();
    return undefined;
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
}

/** Ends the sessions of these users, so that locks they hold cannot stall the cleanup. */
export async function myEndSessions(names: string[]): Promise<void> {
  if (names.length === 0) return;
  const rows = await myAdminQuery<{ id: number }>('SELECT id AS id FROM information_schema.processlist WHERE user IN (?)', [names]);
  for (const { id } of rows) await myAdminQuery(`KILL CONNECTION ${Number(id)}`).catch(() => undefined);
}

export async function dropMyUsers(names: string[]): Promise<void> {
  await myEndSessions(names);
  for (const name of names) {
    const hosts = await myAdminQuery<{ Host: string }>('SELECT Host FROM mysql.user WHERE User = ?', [name]);
    for (const { Host } of hosts) await myAdminQuery('DROP USER IF EXISTS ?@?', [name, Host]).catch(() => undefined);
  }
}

/** Every host of the user `name` in mysql.user, sorted. */
export async function myUserHosts(name: string): Promise<string[]> {
  const rows = await myAdminQuery<{ Host: string }>('SELECT Host FROM mysql.user WHERE User = ? ORDER BY Host', [name]);
  return rows.map((r) => String(r.Host));
}

/** `SHOW GRANTS` for one account, one line per grant. */
export async function myGrants(name: string, host = '%'): Promise<string[]> {
  const rows = await myAdminQuery<Record<string, string>>('SHOW GRANTS FOR ?@?', [name, host]);
  return rows.map((row) => String(Object.values(row)[0]));
}

/** The routines, events, views and triggers in `database`, as `KIND name definer`, sorted. */
export async function myStoredObjects(database: string): Promise<string[]> {
  const rows = await myAdminQuery<{ o: string }>(
    `SELECT CONCAT(routine_type, ' ', routine_name, ' ', definer) AS o FROM information_schema.routines WHERE routine_schema = ?
     UNION ALL SELECT CONCAT('EVENT ', event_name, ' ', definer) FROM information_schema.events WHERE event_schema = ?
     UNION ALL SELECT CONCAT('VIEW ', table_name, ' ', definer) FROM information_schema.views WHERE table_schema = ?
     UNION ALL SELECT CONCAT('TRIGGER ', trigger_name, ' ', definer) FROM information_schema.triggers WHERE trigger_schema = ?
     ORDER BY 1`,
    [database, database, database, database],
  );
  return rows.map((r) => String(r.o));
}

/**
 * A TCP relay to the local MariaDB that can be frozen: once frozen it swallows everything in
 * both directions, so the server looks alive but never answers (a stuck network path).
 */
export async function freezableRelay(): Promise<{ port: number; freeze(): void; close(): Promise<void> }> {
  let frozen = false;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(MARIADB.port, MARIADB.host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => sockets.delete(socket));
    }
    client.on('data', (data) => frozen || upstream.write(data));
    upstream.on('data', (data) => frozen || client.write(data));
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    freeze: () => {
      frozen = true;
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

// ---------------------------------------------------------------- assertions

/** Asserts an exit code, showing stderr in the failure diff. */
export function expectExit(result: { exitCode: number; stderr: string }, exitCode: number): void {
  expect({ exitCode: result.exitCode, stderr: result.stderr }).toEqual({ exitCode, stderr: expect.any(String) });
}
