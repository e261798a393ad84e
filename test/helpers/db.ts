/**
 * Direct access to the test targets, for the lease end-to-end tests: the throwaway SCRAM
 * PostgreSQL cluster of the jest global setup (it checks passwords, the machine's own
 * PostgreSQL does not) and the local MariaDB (root, empty password). Each test file makes
 * its own uniquely named database and drops it, and the users it created, when done.
 */
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import mysql from 'mysql2/promise';
import pg from 'pg';

/** sy's marker at the end of every user name it creates (see src/targets/names.ts). */
export const SY_MARKER = /[a-z0-9]{10}_sy[0-9a-z]{7}$/;

/** A short random lower-case tag for database, role and prefix names. */
export function tag(length = 6): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  return [...randomBytes(length)].map((b) => alphabet[b % alphabet.length]).join('');
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

/** One query as the cluster's superuser, in `database` (default postgres). */
export async function pgAdminQuery<R extends pg.QueryResultRow = any>(sql: string, params: unknown[] = [], database = 'postgres'): Promise<R[]> {
  const admin = scramCluster();
  const client = await pgConnect({ ...admin, database });
  try {
    return (await client.query<R>(sql, params)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
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
    prefix,
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
    `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`,
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

export async function dropMyUsers(names: string[]): Promise<void> {
  for (const name of names) {
    const hosts = await myAdminQuery<{ Host: string }>('SELECT Host FROM mysql.user WHERE User = ?', [name]);
    for (const { Host } of hosts) await myAdminQuery('DROP USER IF EXISTS ?@?', [name, Host]).catch(() => undefined);
  }
}

// ---------------------------------------------------------------- assertions

/** Asserts an exit code, showing stderr in the failure diff. */
export function expectExit(result: { exitCode: number; stderr: string }, exitCode: number): void {
  expect({ exitCode: result.exitCode, stderr: result.stderr }).toEqual({ exitCode, stderr: expect.any(String) });
}
