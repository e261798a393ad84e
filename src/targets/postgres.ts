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
 * - Revoking ends the role's sessions and logins first, then removes what it owns or was
 *   granted in every database of the cluster that pg_shdepend names (dropped, or handed to
 *   the recipe's NOLOGIN `reassignTo` role; never to the admin, who could then be made to run
 *   a lease's SECURITY DEFINER function), drops it, and checks that it is gone.
 * - No serialisation on the server: concurrent GRANTs on one object fail with "tuple
 *   concurrently updated", and the transaction is simply tried again. (An advisory lock would
 *   be a key any role can take, and so block sy.)
 * - Every session has lock_timeout and statement_timeout: a lock held by anyone fails the
 *   call within seconds, never hangs it.
 * - renewUser of a role that no longer exists throws `user_not_found` (exit 1), so the
 *   caller can mark the lease as gone instead of pretending it was extended.
 */
import tls from 'node:tls';
import pg from 'pg';
import { failed, SyError } from '../errors.js';
import type { BaseConnection, GrantPermission } from '../model/secret.js';
import { ENGINES, POSTGRES_DATA_PRIVILEGES } from '../model/engines.js';
import { MANAGED_NAME_SQL_PATTERN, parseManagedName } from './names.js';
import { scramSha256Verifier } from './scram.js';
import { checkedUserName, networkReason, renderTemplate, safeReason } from './shared.js';
import {
  type ConnectOptions,
  DEFAULT_LOCK_TIMEOUT_MS,
  DEFAULT_STATEMENT_TIMEOUT_MS,
  type ManagedUser,
  type ManagedUsers,
  type NewUser,
  type RecipeCheckOptions,
  type RevokeOptions,
  type RevokeResult,
  type Target,
} from './target.js';

const DEFAULT_DATABASE = 'postgres';
/** Errors that mean "another session changed the same catalog row": try the transaction again. */
const RETRYABLE = new Set(['40001', '40P01']);
const MAX_TRIES = 12;
/** How long pg_terminate_backend waits for a session to end (PostgreSQL 14+). */
const TERMINATE_WAIT_MS = 5000;

const ident = (name: string): string => pg.escapeIdentifier(name);
const literal = (value: string): string => pg.escapeLiteral(value);

interface PgError extends Error {
  code?: string;
}

/** The driver error behind a SyError, kept out of the error itself (no cause to print with --debug). */
const driverErrors = new WeakMap<SyError, unknown>();

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
    private readonly options: ConnectOptions,
  ) {
    this.address = `${conn.host}:${conn.port}`;
  }

  static async connect(conn: BaseConnection, options: ConnectOptions, database = conn.database ?? DEFAULT_DATABASE): Promise<PostgresTarget> {
    const lockTimeout = options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
    const statementTimeout = options.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS;
    const client = new pg.Client({
      host: conn.host,
      port: conn.port,
      user: conn.username,
      password: conn.password,
      database,
      ssl: tlsOptions(conn.ssl),
      connectionTimeoutMillis: options.connectTimeoutMs,
      application_name: 'sy',
      // Sent in the startup packet: no extra round trip. The client-side timeout covers a
      // server that stops answering altogether.
      lock_timeout: lockTimeout,
      statement_timeout: statementTimeout,
      query_timeout: statementTimeout + 2_000,
    });
    // A dropped connection surfaces on the next query; without a listener it would crash sy.
    client.on('error', () => undefined);
    const abort = () => destroy(client);
    if (options.signal?.aborted) abort();
    options.signal?.addEventListener('abort', abort, { once: true });
    const started = Date.now();
    try {
      await client.connect();
    } catch (error) {
      options.signal?.removeEventListener('abort', abort);
      await client.end().catch(() => undefined);
      throw connectFailure(conn, error, options.connectTimeoutMs, Date.now() - started);
    }
    return new PostgresTarget(client, conn, database, options);
  }

  async createUser(user: NewUser): Promise<void> {
    const name = checkedName(user.username);
    const expires = user.expiresAt.toISOString();
    const verifier = scramSha256Verifier(user.password);
    if (user.reassignTo !== undefined) await this.checkReassignTarget(user.reassignTo, `create user ${name}`);
    const custom = user.creationStatements !== undefined && user.creationStatements.length > 0;
    try {
      await this.transaction(`create user ${name}`, 'create_user_failed', user.password, async () => {
        if (custom) {
          for (const template of user.creationStatements!) {
            // {{password}} becomes the SCRAM verifier: PostgreSQL stores it as given, and
            // the statement (which the server may log) never holds the password.
            const statement = renderTemplate(template, { name, password: verifier, expiration: expires }, escapePasswordLiteral);
            await this.query(statement, [], `create user ${name}`, user.password, 'create_user_failed');
          }
          return;
        }
        await this.query(
          [
            `CREATE ROLE ${ident(name)} WITH LOGIN NOINHERIT PASSWORD ${literal(verifier)} VALID UNTIL ${literal(expires)}`,
            `COMMENT ON ROLE ${ident(name)} IS ${literal(`managed by sy; reap after ${parseManagedName(name)?.reapAfter.toISOString() ?? expires}`)}`,
            `GRANT CONNECT ON DATABASE ${ident(this.database)} TO ${ident(name)}`,
          ].join('; '),
          [],
          `create user ${name}`,
          user.password,
          'create_user_failed',
        );
        for (const grant of user.grants) await this.grant(name, grant);
      });
    } catch (error) {
      // Custom statements may have committed on their own: drop whatever is left.
      if (custom) await this.revokeUsers([name], { reassignTo: user.reassignTo }).catch(() => undefined);
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

  async revokeUsers(usernames: string[], options: RevokeOptions = {}): Promise<RevokeResult> {
    const names = [...new Set(usernames.map((name) => checkedName(name)))];
    const result: RevokeResult = { dropped: [], absent: [], failed: [] };
    if (names.length === 0) return result;
    if (options.reassignTo !== undefined) {
      try {
        await this.checkReassignTarget(options.reassignTo, `revoke ${describeUsers(names)}`);
      } catch (error) {
        // Still end their logins and sessions: a lease that cannot be cleaned must at least stop working.
        await this.disable(names).catch(() => undefined);
        for (const username of names) result.failed.push({ username, error: this.queryFailure('revoke_failed', `revoke user ${username}`, error) });
        return result;
      }
    }
    const errors = new Map<string, unknown>();
    let roles: Role[];
    try {
      roles = await this.disable(names);
    } catch (error) {
      if (isConnectionLost(error)) throw error;
      // One role the admin may not touch (a superuser, another admin's role) must not keep the others.
      roles = [];
      for (const name of names) {
        try {
          roles.push(...(await this.disable([name])));
        } catch (one) {
          if (isConnectionLost(one)) throw one;
          errors.set(name, one);
        }
      }
    }
    const existing = new Set([...roles.map((r) => r.rolname), ...errors.keys()]);
    result.absent = names.filter((n) => !existing.has(n));
    for (const [username, error] of errors) result.failed.push({ username, error: this.queryFailure('revoke_failed', `revoke user ${username}`, error) });
    if (roles.length === 0) return result;

    await this.cleanOtherDatabases(roles, options, errors);
    const remaining = roles.filter((r) => !errors.has(r.rolname));
    if (remaining.length > 0) {
      if (options.revocationStatements && options.revocationStatements.length > 0) {
        for (const role of remaining) {
          try {
            for (const template of options.revocationStatements) {
              await this.client.query(renderTemplate(template, { name: role.rolname, password: '', expiration: '' }, escapePasswordLiteral));
            }
          } catch (error) {
            errors.set(role.rolname, error);
          }
        }
      } else {
        try {
          await this.dropRoles(remaining, options.reassignTo);
        } catch {
          // One stubborn or concurrently changed role must not block the others: one by one.
          for (const role of remaining) {
            try {
              await this.dropRoles([role], options.reassignTo);
            } catch (error) {
              errors.set(role.rolname, error);
            }
          }
        }
      }
    }

    // Gone means gone: no role of that name, nothing in pg_shdepend naming its oid, no session.
    const { rows: left } = await this.query<{ rolname: string }>(
      `SELECT r.rolname FROM unnest($1::oid[], $2::text[]) AS r(oid, rolname)
        WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r.rolname)
           OR EXISTS (SELECT 1 FROM pg_shdepend d WHERE d.refclassid = 'pg_authid'::regclass AND d.refobjid = r.oid)
           OR EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.usesysid = r.oid)`,
      [roles.map((r) => r.oid), roles.map((r) => r.rolname)],
      `check the revocation of ${describeUsers(names)}`,
    );
    const stillThere = new Set(left.map((r) => r.rolname));
    for (const role of roles) {
      if (!stillThere.has(role.rolname)) {
        result.dropped.push(role.rolname);
        continue;
      }
      const cause = errors.get(role.rolname);
      const error =
        cause instanceof SyError
          ? cause
          : cause !== undefined
            ? this.queryFailure('revoke_failed', `revoke user ${role.rolname}`, cause)
            : failed('revoke_failed', `Could not revoke user ${role.rolname} at ${this.address}: it still exists after the revocation.`);
      result.failed.push({ username: role.rolname, error });
    }
    return result;
  }

  async listManagedUsers(): Promise<ManagedUsers> {
    const { rows } = await this.query<{ server_now: Date; users: { name: string; valid_until: string | null }[] }>(
      `SELECT now() AS server_now,
              COALESCE((SELECT json_agg(json_build_object('name', rolname, 'valid_until', rolvaliduntil) ORDER BY rolname)
                          FROM pg_roles WHERE rolname ~ $1), '[]'::json) AS users`,
      [MANAGED_NAME_SQL_PATTERN],
      'list users',
    );
    const users: ManagedUser[] = [];
    for (const { name, valid_until } of rows[0].users) {
      const parsed = parseManagedName(name);
      if (!parsed) continue;
      const until = valid_until === null ? NaN : Date.parse(valid_until);
      users.push({ username: name, reapAfter: parsed.reapAfter, ...(Number.isFinite(until) ? { validUntil: new Date(until) } : {}) });
    }
    return { serverNow: new Date(rows[0].server_now), users };
  }

  async checkRecipe(grants: GrantPermission[], options: RecipeCheckOptions = {}): Promise<string[]> {
    const problems: string[] = [];
    for (const grant of grants) {
      for (const problem of await this.grantProblems(grant)) if (!problems.includes(problem)) problems.push(problem);
    }
    if (options.reassignTo !== undefined) {
      const reason = await this.reassignProblem(options.reassignTo, 'check the reassignTo role');
      if (reason !== undefined) problems.push(`reassignTo: the role "${options.reassignTo}" at ${this.address} ${reason}.`);
    }
    return problems;
  }

  /**
   * What createUser would fail on, or grant only in part (PostgreSQL merely warns when the
   * grant option is missing), for one grant: the schemas and tables it reaches, each
   * privilege held WITH GRANT OPTION by the admin or already held by PUBLIC (the lease
   * then has it anyway). `*.*` and `s.*` reach every table there, as GRANT ... ON ALL
   * TABLES does, which fails outright on a table the admin holds nothing on.
   */
  private async grantProblems(grant: GrantPermission): Promise<string[]> {
    const label = `${this.address}/${this.database}`;
    const action = `check the grant of ${grant.privileges.join(', ')} on ${grant.schema}.${grant.table}`;
    const { rows: schemas } = await this.query<{ name: string; usable: boolean }>(
      `SELECT nspname AS name, has_schema_privilege('public', oid, 'USAGE') OR has_schema_privilege(oid, 'USAGE WITH GRANT OPTION') AS usable
         FROM pg_namespace
        WHERE CASE WHEN $1::text IS NULL THEN nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' ELSE nspname = $1 END
        ORDER BY nspname`,
      [grant.schema === '*' ? null : grant.schema],
      action,
    );
    if (schemas.length === 0) {
      return [
        grant.schema === '*'
          ? `grantPermissions: *.* reaches nothing on ${label}: it has no schema but the system ones.`
          : `grantPermissions: schema ${grant.schema} does not exist on ${label}.`,
      ];
    }
    const named = grant.table === '*' ? null : grant.table;
    const { rows: tables } = await this.query<{ schema: string; name: string; missing: string[] }>(
      `SELECT * FROM (
         SELECT n.nspname AS schema, c.relname AS name,
                ARRAY(SELECT p FROM unnest($3::text[]) WITH ORDINALITY AS u(p, i)
                       WHERE NOT (has_table_privilege('public', c.oid, p) OR has_table_privilege(c.oid, p || ' WITH GRANT OPTION'))
                       ORDER BY i) AS missing
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = ANY($1::text[])
            AND CASE WHEN $2::text IS NULL THEN c.relkind IN ('r', 'p', 'v', 'm', 'f') ELSE c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') END
       ) AS t
        WHERE cardinality(missing) > 0 OR $2::text IS NOT NULL
        ORDER BY schema, name`,
      [schemas.map((s) => s.name), named, dataPrivileges(grant.privileges)],
      action,
    );
    const problems: string[] = [];
    for (const schema of schemas) {
      if (!schema.usable) problems.push(`grantPermissions: the admin ${this.conn.username} does not hold USAGE on schema ${schema.name} WITH GRANT OPTION.`);
      for (const table of tables.filter((t) => t.schema === schema.name && t.missing.length > 0)) {
        problems.push(`grantPermissions: the admin ${this.conn.username} does not hold ${table.missing.join(', ')} on ${table.schema}.${table.name} WITH GRANT OPTION.`);
      }
    }
    if (named !== null && tables.length === 0) problems.push(`grantPermissions: table ${grant.schema}.${named} does not exist on ${label}.`);
    return problems;
  }

  async close(): Promise<void> {
    destroy(this.client);
  }

  /**
   * Ends the roles' logins and sessions, everywhere in the cluster, before anything else: from
   * then on they cannot create anything more. Returns the roles that exist, with their oids
   * and the other databases where pg_shdepend says they own something or hold privileges.
   */
  private async disable(names: string[]): Promise<Role[]> {
    const { rows } = await this.query<{ rolname: string; oid: number; usable: boolean; can_login: boolean; superuser: boolean; version: number }>(
      `SELECT rolname, oid::int AS oid, pg_has_role(oid, 'USAGE') AS usable, rolcanlogin AS can_login,
              (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
              current_setting('server_version_num')::int AS version
         FROM pg_roles WHERE rolname = ANY($1::text[])`,
      [names],
      `revoke ${describeUsers(names)}`,
    );
    if (rows.length === 0) return [];
    const { superuser, version } = rows[0];
    const prepare: string[] = [];
    const toJoin = rows.filter((r) => !r.usable).map((r) => ident(r.rolname));
    // A CREATEROLE admin needs the privileges of a role to end its sessions and drop what it owns.
    if (toJoin.length > 0 && !superuser) prepare.push(`GRANT ${toJoin.join(', ')} TO CURRENT_USER`);
    for (const r of rows.filter((r) => r.can_login)) prepare.push(`ALTER ROLE ${ident(r.rolname)} NOLOGIN`);
    // NOLOGIN is committed before the sessions are ended, so none can come back in between.
    const statements = prepare.length > 0 ? ['BEGIN', ...prepare, 'COMMIT'] : [];
    const list = `ARRAY[${rows.map((r) => literal(r.rolname)).join(', ')}]::text[]`;
    const terminate = version >= 140000 ? `pg_terminate_backend(pid, ${TERMINATE_WAIT_MS})` : 'pg_terminate_backend(pid)';
    statements.push(`SELECT ${terminate} FROM pg_stat_activity WHERE usename = ANY(${list}) AND pid <> pg_backend_pid()`);
    statements.push(
      `SELECT r.rolname, array_agg(DISTINCT db.datname::text ORDER BY db.datname::text) AS databases
         FROM pg_roles r JOIN pg_shdepend d ON d.refclassid = 'pg_authid'::regclass AND d.refobjid = r.oid
         JOIN pg_database db ON db.oid = d.dbid
        WHERE r.rolname = ANY(${list}) AND db.datname <> current_database()
        GROUP BY r.rolname`,
    );
    let results: pg.QueryResult[];
    try {
      results = await this.multi(statements.join('; '), `revoke ${describeUsers(names)}`);
    } catch (error) {
      await this.client.query('ROLLBACK').catch(() => undefined);
      throw error;
    }
    const elsewhere = new Map<string, string[]>();
    for (const row of results[results.length - 1].rows as { rolname: string; databases: string[] }[]) elsewhere.set(row.rolname, row.databases);
    return rows.map((r) => ({ rolname: r.rolname, oid: r.oid, databases: elsewhere.get(r.rolname) ?? [] }));
  }

  /** Removes what the roles own or were granted in the other databases of the cluster. */
  private async cleanOtherDatabases(roles: Role[], options: RevokeOptions, errors: Map<string, unknown>): Promise<void> {
    const byDatabase = new Map<string, Role[]>();
    for (const role of roles) for (const database of role.databases) byDatabase.set(database, [...(byDatabase.get(database) ?? []), role]);
    for (const [database, members] of byDatabase) {
      const action = `clean database "${database}" for ${describeUsers(members.map((m) => m.rolname))}`;
      let other: PostgresTarget | undefined;
      try {
        other = await PostgresTarget.connect(this.conn, this.options, database);
        await other.transaction(action, 'revoke_failed', undefined, () => other!.removeOwned(members, options.reassignTo));
      } catch (error) {
        const reason = error instanceof SyError ? error.message.replace(/\.$/, '') : reasonOf(error, [this.conn.password]);
        const wrapped = failed('revoke_failed', `Could not revoke on PostgreSQL at ${this.address}: database "${database}" could not be cleaned (${reason}).`);
        for (const member of members) if (!errors.has(member.rolname)) errors.set(member.rolname, wrapped);
      } finally {
        await other?.close();
      }
    }
  }

  /** In this database: see removeOwnedStatements. */
  private async removeOwned(roles: Role[], reassignTo: string | undefined): Promise<void> {
    await this.multi(removeOwnedStatements(roles, reassignTo).join('; '), `revoke ${describeUsers(roles.map((r) => r.rolname))}`);
  }

  /** Drops the roles in a handful of round trips, whatever their number, in one transaction. */
  private async dropRoles(roles: Role[], reassignTo: string | undefined): Promise<void> {
    const names = roles.map((r) => r.rolname);
    const list = names.map(ident).join(', ');
    const tail = [...removeOwnedStatements(roles, reassignTo), `DROP ROLE IF EXISTS ${list}`, 'COMMIT'].join('; ');
    await this.retrying(`revoke ${describeUsers(names)}`, 'revoke_failed', undefined, async () => {
      if (roles.length === 1) {
        await this.client.query(`BEGIN; ${tail}`); // one round trip
        return;
      }
      // DROP OWNED takes the roles out of each object's ACL one role at a time, rewriting the
      // ACL each time: a batch of roles that share a table is quadratic (1,000 took 1.1 s).
      // One REVOKE per kind of object naming the whole batch rewrites each ACL once.
      const [, found] = (await this.client.query(`BEGIN; ${aclObjectsQuery(names)}`)) as unknown as pg.QueryResult<AclObject>[];
      const revokes = bulkRevokes(found.rows, list);
      if (revokes.length > 0) {
        try {
          await this.client.query(`SAVEPOINT sy_bulk_revoke; ${revokes.join('; ')}; RELEASE SAVEPOINT sy_bulk_revoke`);
        } catch {
          await this.client.query('ROLLBACK TO SAVEPOINT sy_bulk_revoke');
        }
      }
      await this.client.query(tail);
    });
  }

  /**
   * A `reassignTo` role must exist, must not log in, and must hold no role attribute: what it
   * receives (a lease's tables, functions) must not become anyone's way in.
   */
  private async checkReassignTarget(role: string, action: string): Promise<void> {
    const reason = await this.reassignProblem(role, action);
    if (reason !== undefined) {
      throw failed('reassign_role_invalid', `Could not ${action} at ${this.address}: the reassignTo role "${role}" ${reason}.`);
    }
  }

  /** Why `role` may not receive what a lease created (see checkReassignTarget), or undefined. */
  private async reassignProblem(role: string, action: string): Promise<string | undefined> {
    const { rows } = await this.query<{ ok: boolean; self: boolean }>(
      `SELECT NOT (rolcanlogin OR rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls) AS ok,
              rolname = current_user AS self
         FROM pg_roles WHERE rolname = $1`,
      [role],
      action,
    );
    if (rows.length === 0) return 'does not exist';
    if (rows[0].self) return 'is the admin itself';
    return rows[0].ok ? undefined : 'can log in or holds a role attribute (it must be NOLOGIN, with none)';
  }

  private async grant(name: string, grant: GrantPermission): Promise<void> {
    const privileges = dataPrivileges(grant.privileges);
    for (const p of privileges) {
      if (!POSTGRES_DATA_PRIVILEGES.includes(p)) throw failed('grant_failed', `The privilege ${p.slice(0, 40)} cannot be granted on PostgreSQL.`);
    }
    const what = privileges.join(', ');
    const where = `${grant.schema}.${grant.table}`;
    const description = `grant ${grant.privileges.join(', ')} on ${where}`;
    const user = ident(name);
    let schemas: string[];
    if (grant.schema === '*') {
      const { rows } = await this.query<{ nspname: string }>(
        `SELECT nspname FROM pg_namespace
          WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
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
    if (statements.length > 0) await this.query(statements.join('; '), [], description, undefined, 'grant_failed');
    if (grant.schema !== '*') await this.checkGranted(name, grant.schema, grant.table, privileges, description);
  }

  /**
   * GRANT only warns when the admin lacks the grant option; check that the new role really
   * holds what an explicitly named schema or table promises.
   */
  private async checkGranted(name: string, schema: string, table: string, privileges: string[], description: string): Promise<void> {
    const { rows } = await this.query<{ ok: boolean }>(
      table === '*'
        ? "SELECT has_schema_privilege($1, $2, 'USAGE') AS ok"
        : "SELECT has_schema_privilege($1, $2, 'USAGE') AND (SELECT bool_and(has_table_privilege($1, $3, p)) FROM unnest($4::text[]) AS p) AS ok",
      table === '*' ? [name, schema] : [name, schema, `${ident(schema)}.${ident(table)}`, privileges],
      description,
    );
    if (rows[0]?.ok !== true) {
      throw failed(
        'grant_failed',
        `Could not ${description} at ${this.address}: the admin user ${this.conn.username} does not hold it WITH GRANT OPTION.`,
      );
    }
  }

  /**
   * Runs `body` in a transaction, again from the start when another session changed the same
   * catalog row (concurrent GRANTs on one table or database), with a short random pause.
   */
  private async transaction(action: string, code: string, secret: string | undefined, body: () => Promise<void>): Promise<void> {
    await this.retrying(action, code, secret, async () => {
      await this.client.query('BEGIN');
      await body();
      await this.client.query('COMMIT');
    });
  }

  /** Runs `attempt`, which opens and commits its own transaction, rolling back and retrying as above. */
  private async retrying(action: string, code: string, secret: string | undefined, body: () => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await body();
        return;
      } catch (error) {
        await this.client.query('ROLLBACK').catch(() => undefined);
        const cause = error instanceof SyError ? driverErrors.get(error) : error;
        if (attempt < MAX_TRIES && isConcurrentUpdate(cause)) {
          await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20 * attempt));
          continue;
        }
        throw this.queryFailure(code, action, error, secret);
      }
    }
  }

  /** Several statements in one round trip; pg returns one result per statement. */
  private async multi(text: string, action: string): Promise<pg.QueryResult[]> {
    try {
      const result = (await this.client.query(text)) as unknown as pg.QueryResult | pg.QueryResult[];
      return Array.isArray(result) ? result : [result];
    } catch (error) {
      throw this.queryFailure('revoke_failed', action, error);
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
    const err = error as PgError;
    const reason = reasonOf(error, [this.conn.password, secret ?? '']);
    // Server errors carry a SQLSTATE; anything else means the connection itself failed.
    if (!/^[0-9A-Z]{5}$/.test(err?.code ?? '')) {
      if (/query read timeout/i.test(String(err?.message))) {
        return failed('target_unreachable', `Could not ${action} at ${this.address}: PostgreSQL did not answer in time.`);
      }
      return failed('target_unreachable', `Could not ${action} at ${this.address}: the connection to PostgreSQL was lost (${reason}).`);
    }
    const wrapped = this.serverFailure(code, action, err, reason);
    driverErrors.set(wrapped, error);
    return wrapped;
  }

  private serverFailure(code: string, action: string, err: PgError, reason: string): SyError {
    if (err.code === '55P03') {
      const seconds = (this.options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS) / 1000;
      return failed('target_locked', `Could not ${action} at ${this.address}: another session held a lock it needs for more than ${seconds} s.`);
    }
    if (err.code === '57014') {
      const seconds = (this.options.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS) / 1000;
      return failed('target_timeout', `Could not ${action} at ${this.address}: a statement ran longer than ${seconds} s.`);
    }
    return failed(code, `Could not ${action} at ${this.address}: ${reason}.`);
  }
}

/** `ALL` never means more than the data privileges: not TRIGGER, not MAINTAIN (PostgreSQL 17). */
function dataPrivileges(named: string[]): string[] {
  return [...new Set(named.flatMap((p) => (p === 'ALL' || p === 'ALL PRIVILEGES' ? POSTGRES_DATA_PRIVILEGES : [p])))];
}

interface Role {
  rolname: string;
  oid: number;
  /** Other databases where pg_shdepend names the role. */
  databases: string[];
}

/**
 * Neutralises the roles' SECURITY DEFINER routines, hands their objects to `reassignTo` (if
 * any), and drops whatever they still own or hold in the current database. CASCADE: what was
 * built on a lease's objects goes with them, as the contract says.
 */
function removeOwnedStatements(roles: Role[], reassignTo: string | undefined): string[] {
  const list = roles.map((r) => ident(r.rolname)).join(', ');
  const statements: string[] = [];
  if (reassignTo !== undefined) {
    const oids = roles.map((r) => Number(r.oid)).join(', ');
    statements.push(
      `DO $sy$ DECLARE f regprocedure; BEGIN
         FOR f IN SELECT oid::regprocedure FROM pg_proc WHERE prosecdef AND proowner IN (${oids}) LOOP
           EXECUTE format('ALTER ROUTINE %s SECURITY INVOKER', f);
         END LOOP; END $sy$`,
    );
    statements.push(`REASSIGN OWNED BY ${list} TO ${ident(reassignTo)}`);
  }
  statements.push(`DROP OWNED BY ${list} CASCADE`);
  return statements;
}

/** A failure of the connection itself (no SQLSTATE): nothing more can be done on this server. */
function isConnectionLost(error: unknown): boolean {
  return error instanceof SyError && error.code === 'target_unreachable';
}

function isConcurrentUpdate(error: unknown): boolean {
  const err = error as PgError;
  return RETRYABLE.has(err?.code ?? '') || (err?.code === 'XX000' && /tuple concurrently (updated|deleted)/i.test(String(err.message)));
}

/** Ends the socket now: close() must not wait for a statement stuck behind a lock. */
function destroy(client: pg.Client): void {
  const stream = (client as unknown as { connection?: { stream?: { destroy?: () => void } } }).connection?.stream;
  client.end().catch(() => undefined);
  stream?.destroy?.();
}

function describeUsers(names: string[]): string {
  return names.length === 1 ? `user ${names[0]}` : `${names.length} users`;
}

interface AclObject {
  kind: 'TABLE' | 'SEQUENCE' | 'SCHEMA' | 'DATABASE';
  name: string;
}

/** The tables, sequences, schemas and databases on which the roles hold privileges, here. */
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
