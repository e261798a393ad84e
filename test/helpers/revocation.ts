/**
 * Helpers for the revocation end-to-end tests (revocation, daemon, reaper, audit): the
 * machine's PostgreSQL on 127.0.0.1:5432 (trust auth) and the local MariaDB, base and
 * dynamic secrets in a store, `sy daemon` as a child process, the audit log and the ledger.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import type { AuditEntry } from '../../src/audit/chain.js';
import { ROOT, SY_BIN, type SyHome } from './cli.js';
import { localPgQuery, MARIADB, myAdminQuery, ownPrefix } from './db.js';

export const PG5432 = { host: '127.0.0.1', port: 5432, user: 'postgres', password: 'unused-trust-auth' };

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` every `everyMs` until it returns a truthy value; throws with `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T> | T, timeoutMs = 20_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------- PostgreSQL 5432

/** Every role whose name starts with the test's own `prefix` (sy-marked or not). */
export async function pgUsers(prefix: string): Promise<string[]> {
  return (await localPgQuery<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY 1', [ownPrefix(prefix)])).map((r) => r.rolname);
}

export async function pgExists(name: string): Promise<boolean> {
  return (await localPgQuery('SELECT 1 FROM pg_roles WHERE rolname = $1', [name])).length === 1;
}

export async function pgCreateRole(name: string): Promise<void> {
  await localPgQuery(`CREATE ROLE ${pg.escapeIdentifier(name)} LOGIN`);
}

/** Drops every role starting with `prefix` (grants live in the `postgres` database). */
export async function dropPgPrefix(prefix: string): Promise<void> {
  for (const name of await pgUsers(prefix)) {
    await localPgQuery(`DROP OWNED BY ${pg.escapeIdentifier(name)}`).catch(() => undefined);
    await localPgQuery(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(name)}`).catch(() => undefined);
  }
}

// ---------------------------------------------------------------- MariaDB

/** Every user whose name starts with the test's own `prefix` (sy-marked or not). */
export async function myUsers(prefix: string): Promise<string[]> {
  const rows = await myAdminQuery<{ User: string }>('SELECT DISTINCT User FROM mysql.user WHERE User LIKE ? ORDER BY User', [
    `${ownPrefix(prefix).replace(/[\\%_]/g, (c) => `\\${c}`)}%`,
  ]);
  return rows.map((r) => String(r.User));
}

export async function myExists(name: string): Promise<boolean> {
  return (await myAdminQuery('SELECT 1 FROM mysql.user WHERE User = ?', [name])).length > 0;
}

export async function myCreateUser(name: string): Promise<void> {
  await myAdminQuery("CREATE USER ?@'%' IDENTIFIED BY 'x-Unused-9'", [name]);
}

export async function dropMyPrefix(prefix: string): Promise<void> {
  for (const name of await myUsers(prefix)) {
    const hosts = await myAdminQuery<{ Host: string }>('SELECT Host FROM mysql.user WHERE User = ?', [name]);
    for (const { Host } of hosts) await myAdminQuery('DROP USER IF EXISTS ?@?', [name, Host]).catch(() => undefined);
  }
}

// ---------------------------------------------------------------- names

/** A user name in sy's format whose reap-after bound is `bound`. */
export function syLookingName(prefix: string, bound: Date, random = 'abcdefghij'): string {
  return `${prefix}${random}_sy${Math.ceil(bound.getTime() / 1000).toString(36).padStart(7, '0')}`;
}

// ---------------------------------------------------------------- store contents

export interface Setup {
  /** Base secret paths. */
  pgBase: string;
  myBase: string;
  /** Dynamic secret paths. */
  pgDyn: string;
  myDyn: string;
}

/**
 * Base secrets for both servers and one dynamic secret on each. `myDatabase` must exist on
 * MariaDB (the grant is `<db>.*`).
 */
export async function createSecrets(
  sy: SyHome,
  options: {
    pgPrefix: string; myPrefix: string; myDatabase: string; ttl?: number; maxTtl?: number; pool?: string; pgPassword?: string; suffix?: string; pgPort?: number; myPort?: number;
    /** The PostgreSQL base secret's database (default postgres) and the grant's `where` there (default *.*). */
    pgDatabase?: string; pgWhere?: string;
  },
): Promise<Setup> {
  const s = options.suffix ?? '';
  const setup: Setup = { pgBase: `db:postgresql:root${s}`, myBase: `db:mariadb:root${s}`, pgDyn: `db:postgresql:dyn${s}`, myDyn: `db:mariadb:dyn${s}` };
  const extra = { ttl: options.ttl ?? 2, ...(options.maxTtl === undefined ? {} : { maxTtl: options.maxTtl }), ...(options.pool ? { pool: options.pool } : {}) };
  await mustJson(sy, ['secret', 'create', setup.pgBase, '--attributes', '{"type": "postgresql"}', '--data', '-'], {
    input: JSON.stringify({ host: PG5432.host, port: options.pgPort ?? PG5432.port, username: PG5432.user, password: options.pgPassword ?? PG5432.password, database: options.pgDatabase ?? 'postgres' }),
  });
  await mustJson(sy, ['secret', 'create', setup.myBase, '--attributes', '{"type": "mariadb"}', '--data', '-'], {
    input: JSON.stringify({ host: MARIADB.host, port: options.myPort ?? MARIADB.port, username: MARIADB.user, password: MARIADB.password, database: options.myDatabase }),
  });
  await mustJson(sy, ['secret', 'create', setup.pgDyn, '--attributes', '-'], {
    input: JSON.stringify({
      linkConfig: { linkType: 'dynamic', linkedSecret: setup.pgBase },
      grantPermissions: { what: 'SELECT', where: options.pgWhere ?? '*.*' },
      userPrefix: options.pgPrefix,
      ...extra,
    }),
  });
  await mustJson(sy, ['secret', 'create', setup.myDyn, '--attributes', '-'], {
    input: JSON.stringify({
      linkConfig: { linkType: 'dynamic', linkedSecret: setup.myBase },
      grantPermissions: { what: 'SELECT', where: `${options.myDatabase}.*` },
      userPrefix: options.myPrefix,
      ...extra,
    }),
  });
  return setup;
}

export async function mustJson<T = any>(sy: SyHome, args: string[], options: { input?: string; env?: Record<string, string | undefined> } = {}): Promise<T> {
  const result = await sy.run(args, options);
  if (result.exitCode !== 0) throw new Error(`sy ${args.join(' ')} exited ${result.exitCode}: ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

export interface IssuedLease {
  lease_id: string;
  username: string;
  password: string;
  connection_string: string;
  created_at: string;
  expires_at: string;
}

export async function createLease(sy: SyHome, path: string, ttl?: number): Promise<IssuedLease> {
  return mustJson<IssuedLease>(sy, ['dynamic', 'lease', 'create', '--path', path, ...(ttl === undefined ? [] : ['--ttl', String(ttl)])]);
}

export interface LeaseRow {
  lease_id: string;
  username: string;
  state: string;
}

/** `lease list --all` without sweeping, by lease id. */
export async function leaseStates(sy: SyHome): Promise<Map<string, string>> {
  const { data } = await mustJson<{ data: LeaseRow[] }>(sy, ['dynamic', 'lease', 'list', '--all', '--limit', '100000']);
  return new Map(data.map((l) => [l.lease_id, l.state]));
}

// ---------------------------------------------------------------- audit log and ledger

/** One line of the audit log as sy writes it. */
export type AuditLine = AuditEntry;

export const auditFile = (sy: SyHome): string => join(sy.env.SY_HOME, 'audit.log');

export function auditText(sy: SyHome): string {
  return existsSync(auditFile(sy)) ? readFileSync(auditFile(sy), 'utf8') : '';
}

export function auditLines(sy: SyHome): AuditLine[] {
  return auditText(sy)
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as AuditLine);
}

/** Opens the store's SQLite file directly (the `leases` columns other than `sealed` are plain). */
export async function ledger<T>(sy: SyHome, fn: (db: BetterSqlite3.Database) => T): Promise<T> {
  const { default: Sqlite } = await import('better-sqlite3');
  const db = new Sqlite(join(sy.env.SY_HOME, 'sy.db'));
  db.pragma('busy_timeout = 15000');
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

/**
 * Changes a lease as sy itself does, with the store's key, through its store layer (tsc's
 * output in dist/): for a test that skips a wait (seven failed attempts) without tampering.
 * An edit straight into sy.db is what an attacker does, and sy refuses the row afterwards.
 */
export function changeLease(sy: SyHome, id: string, state: string, changes: { attempts?: number; nextAttemptAt?: number; expiresAt?: number }): void {
  const script = `
    const { openStore } = await import(${JSON.stringify(new URL('dist/store/open.js', `file://${ROOT}/`).href)});
    const store = await openStore(process.env.SY_HOME, process.env, { actor: 'test', warn: () => undefined });
    try {
      if (!(await store.leases.transition(process.argv[1], [process.argv[2]], process.argv[2], JSON.parse(process.argv[3])))) process.exitCode = 3;
    } finally {
      await store.close();
    }`;
  execFileSync(process.execPath, ['--input-type=module', '-e', script, id, state, JSON.stringify(changes)], { env: { ...sy.env, PATH: process.env.PATH }, stdio: 'pipe' });
}

// ---------------------------------------------------------------- sy daemon

export interface DaemonEvent {
  time: string;
  event: string;
  lease_id?: string;
  db_user?: string;
  state?: string;
  error?: string;
  count?: number;
  /** When the test process read the line. */
  seenAt: number;
}

export interface Daemon {
  child: ChildProcess;
  events: DaemonEvent[];
  stderr: () => string;
  /** Resolves with the first event (at or after index `from`) that matches. */
  waitForEvent(match: (e: DaemonEvent) => boolean, timeoutMs?: number): Promise<DaemonEvent>;
  /** Resolves with the exit code (or signal) and how long after `stop` was called. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>;
}

export function startDaemon(sy: SyHome, args: string[] = [], env: Record<string, string | undefined> = {}): Daemon {
  const child = spawn(SY_BIN, ['daemon', ...args], {
    env: Object.fromEntries(Object.entries({ PATH: process.env.PATH, ...sy.env, ...env }).filter(([, v]) => v !== undefined)) as Record<string, string>,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const events: DaemonEvent[] = [];
  let stderr = '';
  let partial = '';
  const waiters: { match: (e: DaemonEvent) => boolean; resolve: (e: DaemonEvent) => void }[] = [];
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    partial += chunk;
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      if (!line.trim()) continue;
      let event: DaemonEvent;
      try {
        event = { ...JSON.parse(line), seenAt: Date.now() };
      } catch {
        event = { time: '', event: `unparsable: ${line}`, seenAt: Date.now() };
      }
      events.push(event);
      for (const waiter of [...waiters]) {
        if (waiter.match(event)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(event);
        }
      }
    }
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  return {
    child,
    events,
    stderr: () => stderr,
    exited,
    waitForEvent(match, timeoutMs = 20_000) {
      const found = events.find(match);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`daemon: no matching event within ${timeoutMs} ms; got ${JSON.stringify(events.map((e) => e.event))}; stderr: ${stderr}`)), timeoutMs);
        waiters.push({
          match,
          resolve: (e) => {
            clearTimeout(timer);
            resolve(e);
          },
        });
      });
    },
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      const sent = Date.now();
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timeout = setTimeout(() => child.kill('SIGKILL'), 20_000);
      const result = await exited;
      clearTimeout(timeout);
      return { code: result.code, signal: result.signal, ms: result.at - sent };
    },
  };
}
