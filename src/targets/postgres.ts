/**
 * PostgreSQL target. Loaded only when a PostgreSQL base secret is used (see connectTarget),
 * so `pg` is imported here and nowhere else.
 *
 * Choices worth knowing:
 * - The password is sent as a SCRAM-SHA-256 verifier computed here, never in plaintext.
 * - A user is created inside one transaction, so a failed grant leaves no role behind.
 * - Grants the admin cannot really hand out (PostgreSQL only warns) are detected by checking
 *   the new role's effective privileges on the schemas and tables a recipe names explicitly.
 * - A non-superuser admin (CREATEROLE) first grants itself membership of the roles it
 *   revokes: PostgreSQL requires it for pg_terminate_backend, REASSIGN OWNED and DROP OWNED.
 * - renewUser of a role that no longer exists throws `user_not_found` (exit 1), so the
 *   caller can mark the lease as gone instead of pretending it was extended.
 */
import tls from 'node:tls';
import pg from 'pg';
import { failed, SyError } from '../errors.js';
import type { BaseConnection, GrantPermission } from '../secrets/validate.js';
import { ENGINES } from './engines.js';
import { MANAGED_NAME_SQL_PATTERN, parseManagedName } from './names.js';
import { scramSha256Verifier } from './scram.js';
import { checkedUserName, networkReason, renderTemplate, safeReason } from './shared.js';
import type { ConnectOptions, ManagedUser, NewUser, Target } from './target.js';

const DEFAULT_DATABASE = 'postgres';
/** Names sy generates; anything else is refused before it reaches SQL. */
const ALL_TABLE_PRIVILEGES = ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'];
/** How long pg_terminate_backend waits for a session to end (PostgreSQL 14+). */
const TERMINATE_WAIT_MS = 5000;

const ident = (name: string): string => pg.escapeIdentifier(name);
const literal = (value: string): string => pg.escapeLiteral(value);

interface PgError extends Error {
  code?: string;
}

function tlsOptions(ssl: BaseConnection['ssl']): false | tls.ConnectionOptions {
  if (!ssl) return false;
  if (ssl === true) return { rejectUnauthorized: true };
  const options: tls.ConnectionOptions = { rejectUnauthorized: ssl.rejectUnauthorized ?? true };
  if (ssl.ca !== undefined) options.ca = ssl.ca;
  if (ssl.cert !== undefined) options.cert = ssl.cert;
  if (ssl.key !== undefined) options.key = ssl.key;
  const servername = ssl.servername;
  if (servername !== undefined) {
    options.servername = servername;
    // pg replaces servername with the host when the host is a DNS name; verify against ours.
    options.checkServerIdentity = (_host, cert) => tls.checkServerIdentity(servername, cert);
  }
  return options;
}

/** A server or driver message, unless it contains one of the secrets. */
function reasonOf(error: unknown, secrets: string[]): string {
  const err = error as PgError;
  return safeReason(String(err?.message ?? error), err?.code, secrets);
}

function connectFailure(conn: BaseConnection, error: unknown, timeoutMs: number, elapsedMs: number): SyError {
  const err = error as PgError;
  const code = err?.code ?? '';
  const message = String(err?.message ?? '');
  let kind: 'target_unreachable' | 'target_refused' = 'target_unreachable';
  const network = networkReason(code);
  let reason: string;
  if (/timeout expired|connection timeout/i.test(message) || (elapsedMs >= timeoutMs && /terminated/i.test(message))) {
    reason = `no answer within ${timeoutMs} ms`;
  } else if (network !== undefined) {
    reason = network;
  } else if (code === 'ETIMEDOUT') {
    reason = 'connection timed out';
  } else if (/terminated unexpectedly/i.test(message)) {
    reason = 'the server closed the connection';
  } else if (/does not support SSL/i.test(message)) {
    reason = 'the server does not accept TLS connections';
  } else if (code === '28P01') {
    kind = 'target_refused';
    reason = `password authentication failed for user "${conn.username}"`;
  } else if (code === '28000') {
    kind = 'target_refused';
    reason = `the server refused the login of "${conn.username}" (check pg_hba.conf and TLS settings)`;
  } else if (code === '3D000') {
    kind = 'target_refused';
    reason = `database "${conn.database ?? DEFAULT_DATABASE}" does not exist`;
  } else if (code === '53300') {
    kind = 'target_refused';
    reason = 'too many connections';
  } else if (code.startsWith('57P')) {
    kind = 'target_refused';
    reason = 'the server is starting up or shutting down';
  } else {
    if (/^[0-9A-Z]{5}$/.test(code)) kind = 'target_refused';
    reason = reasonOf(error, [conn.password]);
  }
  return failed(kind, `Could not connect to PostgreSQL at ${conn.host}:${conn.port}: ${reason}.`, undefined, error);
}

export class PostgresTarget implements Target {
  readonly address: string;

  private constructor(
    private readonly client: pg.Client,
    private readonly conn: BaseConnection,
    private readonly database: string,
  ) {
    this.address = `${conn.host}:${conn.port}`;
  }

  static async connect(conn: BaseConnection, options: ConnectOptions): Promise<PostgresTarget> {
    const database = conn.database ?? DEFAULT_DATABASE;
    const client = new pg.Client({
      host: conn.host,
      port: conn.port,
      user: conn.username,
      password: conn.password,
      database,
      ssl: tlsOptions(conn.ssl),
      connectionTimeoutMillis: options.connectTimeoutMs,
      application_name: 'sy',
    });
    // A dropped connection surfaces on the next query; without a listener it would crash sy.
    client.on('error', () => undefined);
    const started = Date.now();
    try {
      await client.connect();
    } catch (error) {
      await client.end().catch(() => undefined);
      throw connectFailure(conn, error, options.connectTimeoutMs, Date.now() - started);
    }
    return new PostgresTarget(client, conn, database);
  }

  async createUser(user: NewUser): Promise<void> {
    const name = checkedName(user.username);
    const expires = user.expiresAt.toISOString();
    await this.query('BEGIN', [], 'create user', user.password);
    try {
      // GRANTs on the same database, schema or tables from concurrent sessions update the
      // same catalog rows and fail with "tuple concurrently updated": take turns, for the
      // length of this transaction, across every sy process granting in this database.
      await this.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`sy:grants:${this.database}`], 'create user', user.password, 'create_user_failed');
      if (user.creationStatements && user.creationStatements.length > 0) {
        for (const template of user.creationStatements) {
          const statement = renderTemplate(template, { name, password: user.password, expiration: expires }, escapePasswordLiteral);
          await this.query(statement, [], `create user ${name}`, user.password, 'create_user_failed');
        }
      } else {
        await this.query(
          [
            `CREATE ROLE ${ident(name)} WITH LOGIN NOINHERIT PASSWORD ${literal(scramSha256Verifier(user.password))} VALID UNTIL ${literal(expires)}`,
            `COMMENT ON ROLE ${ident(name)} IS ${literal(`managed by sy; reap after ${parseManagedName(name)?.reapAfter.toISOString() ?? expires}`)}`,
            `GRANT CONNECT ON DATABASE ${ident(this.database)} TO ${ident(name)}`,
          ].join('; '),
          [],
          `create user ${name}`,
          user.password,
          'create_user_failed',
        );
        for (const grant of user.grants) await this.grant(name, grant);
      }
      await this.query('COMMIT', [], `create user ${name}`, user.password, 'create_user_failed');
    } catch (error) {
      await this.client.query('ROLLBACK').catch(() => undefined);
      // Custom statements may have committed on their own: drop whatever is left.
      if (user.creationStatements?.length) await this.revokeUsers([name]).catch(() => undefined);
      throw error;
    }
  }

  async renewUser(username: string, expiresAt: Date): Promise<void> {
    const name = checkedName(username);
    try {
      await this.client.query(`ALTER ROLE ${ident(name)} VALID UNTIL ${literal(expiresAt.toISOString())}`);
    } catch (error) {
      if ((error as PgError).code === '42704') {
        throw failed('user_not_found', `The user ${name} no longer exists on PostgreSQL at ${this.address}.`);
      }
      throw this.queryFailure('renew_failed', `renew user ${name}`, error);
    }
  }

  async revokeUsers(usernames: string[], revocationStatements?: string[]): Promise<void> {
    const names = [...new Set(usernames.map((name) => checkedName(name)))];
    if (names.length === 0) return;
    try {
      await this.revokeBatch(names, revocationStatements);
      return;
    } catch {
      // One stubborn or concurrently dropped role must not block the others: go one by one.
    }
    const failures: { name: string; error: unknown }[] = [];
    for (const name of names) {
      try {
        await this.revokeBatch([name], revocationStatements);
      } catch (error) {
        failures.push({ name, error });
      }
    }
    if (failures.length > 0) {
      const first = failures[0];
      const who = failures.length === 1 ? `user ${first.name}` : `${failures.length} users (${failures.map((f) => f.name).join(', ')})`;
      throw this.queryFailure('revoke_failed', `revoke ${who}`, first.error);
    }
  }

  async listManagedUsers(): Promise<ManagedUser[]> {
    const { rows } = await this.query<{ rolname: string }>(
      'SELECT rolname FROM pg_roles WHERE rolname ~ $1 ORDER BY rolname',
      [MANAGED_NAME_SQL_PATTERN],
      'list users',
    );
    const users: ManagedUser[] = [];
    for (const { rolname } of rows) {
      const parsed = parseManagedName(rolname);
      if (parsed) users.push({ username: rolname, reapAfter: parsed.reapAfter });
    }
    return users;
  }

  async close(): Promise<void> {
    await this.client.end().catch(() => undefined);
  }

  /** Revokes the given roles in a handful of round trips, whatever their number. */
  private async revokeBatch(names: string[], revocationStatements?: string[]): Promise<void> {
    // One round trip tells which roles exist, which the admin must join, which can still log
    // in, and what the server is: no separate query at connect time.
    const { rows } = await this.client.query<{ rolname: string; usable: boolean; can_login: boolean; superuser: boolean; version: number }>(
      `SELECT rolname, pg_has_role(oid, 'USAGE') AS usable,
              rolcanlogin AND (rolvaliduntil IS NULL OR rolvaliduntil > now()) AS can_login,
              (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
              current_setting('server_version_num')::int AS version
         FROM pg_roles WHERE rolname = ANY($1::text[])`,
      [names],
    );
    if (rows.length === 0) return;
    const server = { superuser: rows[0].superuser, version: rows[0].version };
    const existing = rows.map((r) => r.rolname);
    const list = existing.map(ident).join(', ');
    const toJoin = rows.filter((r) => !r.usable).map((r) => ident(r.rolname));
    const prepare: string[] = [];
    // A CREATEROLE admin needs the privileges of a role to end its sessions and drop what it owns.
    if (toJoin.length > 0 && !server.superuser) prepare.push(`GRANT ${toJoin.join(', ')} TO CURRENT_USER`);
    // An expired role (past VALID UNTIL, as in every sweep) cannot log in already.
    prepare.push(...rows.filter((r) => r.can_login).map((r) => `ALTER ROLE ${ident(r.rolname)} NOLOGIN`));
    if (prepare.length > 0) await this.client.query(prepare.join('; '));
    const terminate = server.version >= 140000 ? `pg_terminate_backend(pid, ${TERMINATE_WAIT_MS})` : 'pg_terminate_backend(pid)';
    await this.client.query(
      `SELECT ${terminate} FROM pg_stat_activity WHERE usename = ANY($1::text[]) AND pid <> pg_backend_pid()`,
      [existing],
    );
    if (revocationStatements && revocationStatements.length > 0) {
      for (const name of existing) {
        for (const template of revocationStatements) {
          await this.client.query(renderTemplate(template, { name, password: '', expiration: '' }, escapePasswordLiteral));
        }
      }
      return;
    }
    // The advisory lock keeps the drop from racing concurrent GRANTs (see createUser).
    const lock = `SELECT pg_advisory_xact_lock(hashtext(${literal(`sy:grants:${this.database}`)}))`;
    const drop = `REASSIGN OWNED BY ${list} TO CURRENT_USER; DROP OWNED BY ${list}; DROP ROLE IF EXISTS ${list}`;
    if (existing.length === 1) {
      await this.client.query(`${lock}; ${drop}`); // one implicit transaction, one round trip
      return;
    }
    // DROP OWNED takes the roles out of each object's ACL one role at a time, rewriting the ACL
    // each time: a batch of roles that share a table is quadratic (1,000 took 1.1 s here).
    // One REVOKE per kind of object naming the whole batch rewrites each ACL once; DROP OWNED
    // then only finds what those could not remove (other grantors, column privileges, ...).
    try {
      const results = (await this.client.query(`BEGIN; ${lock}; ${aclObjectsQuery(existing)}`)) as unknown as pg.QueryResult<AclObject>[];
      const revokes = bulkRevokes(results[results.length - 1].rows, list);
      if (revokes.length > 0) {
        try {
          await this.client.query(`SAVEPOINT sy_bulk_revoke; ${revokes.join('; ')}; RELEASE SAVEPOINT sy_bulk_revoke`);
        } catch {
          await this.client.query('ROLLBACK TO SAVEPOINT sy_bulk_revoke');
        }
      }
      await this.client.query(`${drop}; COMMIT`);
    } catch (error) {
      await this.client.query('ROLLBACK').catch(() => undefined);
      throw error;
    }
  }

  private async grant(name: string, grant: GrantPermission): Promise<void> {
    const privileges = grant.privileges.map((p) => {
      if (!/^[A-Z]+( [A-Z]+)*$/.test(p)) throw failed('grant_failed', `The privilege ${p.slice(0, 40)} cannot be granted on PostgreSQL.`);
      return p;
    });
    const what = privileges.join(', ');
    const where = `${grant.schema}.${grant.table}`;
    const description = `grant ${what} on ${where}`;
    const user = ident(name);
    let schemas: string[];
    if (grant.schema === '*') {
      const { rows } = await this.query<{ nspname: string }>(
        `SELECT nspname FROM pg_namespace
          WHERE nspname NOT IN ('pg_catalog', 'information_schema')
            AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp\\_%'
          ORDER BY nspname`,
        [],
        description,
      );
      schemas = rows.map((r) => r.nspname);
    } else {
      schemas = [grant.schema];
    }
    const statements: string[] = [];
    for (const schema of schemas) {
      statements.push(`GRANT USAGE ON SCHEMA ${ident(schema)} TO ${user}`);
      statements.push(
        grant.table === '*'
          ? `GRANT ${what} ON ALL TABLES IN SCHEMA ${ident(schema)} TO ${user}`
          : `GRANT ${what} ON TABLE ${ident(schema)}.${ident(grant.table)} TO ${user}`,
      );
    }
    for (const statement of statements) await this.query(statement, [], description, undefined, 'grant_failed');
    if (grant.schema !== '*') await this.checkGranted(name, grant, description);
  }

  /**
   * GRANT only warns when the admin lacks the grant option; check that the new role really
   * holds what an explicitly named schema or table promises.
   */
  private async checkGranted(name: string, grant: GrantPermission, description: string): Promise<void> {
    const { rows: usage } = await this.query<{ ok: boolean }>(
      "SELECT has_schema_privilege($1, $2, 'USAGE') AS ok",
      [name, grant.schema],
      description,
    );
    let ok = usage[0]?.ok === true;
    if (ok && grant.table !== '*') {
      const privileges = grant.privileges.flatMap((p) => (p.startsWith('ALL') ? ALL_TABLE_PRIVILEGES : [p]));
      const { rows } = await this.query<{ ok: boolean }>(
        'SELECT bool_and(has_table_privilege($1, $2, p)) AS ok FROM unnest($3::text[]) AS p',
        [name, `${ident(grant.schema)}.${ident(grant.table)}`, privileges],
        description,
      );
      ok = rows[0]?.ok === true;
    }
    if (!ok) {
      throw failed(
        'grant_failed',
        `Could not ${description} at ${this.address}: the admin user ${this.conn.username} does not hold it WITH GRANT OPTION.`,
      );
    }
  }

  private async query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    values: unknown[],
    action: string,
    secret?: string,
    code = 'target_error',
  ): Promise<pg.QueryResult<R>> {
    try {
      return await this.client.query<R>(text, values);
    } catch (error) {
      throw this.queryFailure(code, action, error, secret);
    }
  }

  private queryFailure(code: string, action: string, error: unknown, secret?: string): SyError {
    if (error instanceof SyError) return error;
    const reason = reasonOf(error, [this.conn.password, secret ?? '']);
    // Server errors carry a SQLSTATE; anything else means the connection itself failed.
    if (!/^[0-9A-Z]{5}$/.test((error as PgError)?.code ?? '')) {
      return failed('target_unreachable', `Could not ${action} at ${this.address}: the connection to PostgreSQL was lost (${reason}).`);
    }
    return failed(code, `Could not ${action} at ${this.address}: ${reason}.`);
  }
}

interface AclObject {
  kind: 'TABLE' | 'SEQUENCE' | 'SCHEMA' | 'DATABASE';
  name: string;
}

/** The tables, sequences, schemas and databases on which the roles hold privileges. */
function aclObjectsQuery(roles: string[]): string {
  return `SELECT DISTINCT o.kind, o.name FROM pg_shdepend d
      CROSS JOIN LATERAL (
        SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, quote_ident(n.nspname) || '.' || quote_ident(c.relname)
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE d.classid = 'pg_class'::regclass AND c.oid = d.objid AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
        UNION ALL
        SELECT 'SCHEMA', quote_ident(nspname) FROM pg_namespace WHERE d.classid = 'pg_namespace'::regclass AND oid = d.objid
        UNION ALL
        SELECT 'DATABASE', quote_ident(datname) FROM pg_database WHERE d.classid = 'pg_database'::regclass AND oid = d.objid
      ) AS o(kind, name)
     WHERE d.deptype = 'a' AND d.objsubid = 0 AND d.refclassid = 'pg_authid'::regclass
       AND d.refobjid IN (SELECT oid FROM pg_roles WHERE rolname = ANY(ARRAY[${roles.map(literal).join(', ')}]::text[]))
       AND d.dbid IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
     ORDER BY 1, 2`;
}

/** One REVOKE per kind of object, naming every object of that kind and every role. */
function bulkRevokes(objects: AclObject[], roleList: string): string[] {
  const byKind = new Map<string, string[]>();
  for (const { kind, name } of objects) byKind.set(kind, [...(byKind.get(kind) ?? []), name]);
  return [...byKind].map(([kind, names]) => `REVOKE ALL ON ${kind} ${names.join(', ')} FROM ${roleList}`);
}

function checkedName(username: string): string {
  return checkedUserName(username, ENGINES.postgresql.maxUserName, 'PostgreSQL');
}

/** A '...' literal with standard_conforming_strings on (the default since 9.1): quotes doubled. */
const escapePasswordLiteral = (password: string): string => password.replace(/'/g, "''");
