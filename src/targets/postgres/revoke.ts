/**
 * Revoking PostgreSQL users: their logins and sessions end first, everywhere in the cluster;
 * then what they own or were granted goes, in every database that pg_shdepend names (dropped,
 * or handed to the recipe's NOLOGIN `reassignTo` role, never to the admin, who could then be
 * made to run a lease's SECURITY DEFINER function); then the roles, and a last look that
 * they are gone.
 */
import type pg from 'pg';
import { failed, SyError } from '../../errors.js';
import { describeUsers, driverReason, isConnectionLost, revocationStatement } from '../shared.js';
import type { RevokeOptions, RevokeResult } from '../target.js';
import { checkReassignTarget } from './reassign.js';
import { TABLE_KINDS } from './recipe.js';
import { checkedName, ident, literal, PgSession } from './session.js';
import { type Prepared, preparedStatement, rollbackPrepared, terminateStatement, unblocked } from './unblock.js';

/** pg_authid's oid, as pg_shdepend.refclassid holds it for a role. */
const AUTHID = "'pg_catalog.pg_authid'::pg_catalog.regclass";

/** See Target.revokeUsers and PostgresTarget: logins and sessions first, then what they own, then the roles. */
export async function revokeUsers(session: PgSession, usernames: string[], options: RevokeOptions = {}): Promise<RevokeResult> {
  const names = [...new Set(usernames.map((name) => checkedName(name)))];
  const result: RevokeResult = { dropped: [], absent: [], failed: [] };
  if (names.length === 0) return result;
  if (options.reassignTo !== undefined) {
    try {
      await checkReassignTarget(session, options.reassignTo, `revoke ${describeUsers(names)}`);
    } catch (error) {
      // Still end their logins and sessions: a lease that cannot be cleaned must at least stop working.
      await disable(session, names).catch(() => undefined);
      for (const username of names) result.failed.push({ username, error: session.queryFailure('revoke_failed', `revoke user ${username}`, error) });
      return result;
    }
  }
  const errors = new Map<string, unknown>();
  let roles: Role[];
  try {
    roles = await disable(session, names);
  } catch (error) {
    if (isConnectionLost(error)) throw error;
    // One role the admin may not touch (a superuser, another admin's role) must not keep the others.
    roles = [];
    for (const name of names) {
      try {
        roles.push(...(await disable(session, [name])));
      } catch (one) {
        if (isConnectionLost(one)) throw one;
        errors.set(name, one);
      }
    }
  }
  const existing = new Set([...roles.map((r) => r.rolname), ...errors.keys()]);
  result.absent = names.filter((n) => !existing.has(n));
  for (const [username, error] of errors) result.failed.push({ username, error: session.queryFailure('revoke_failed', `revoke user ${username}`, error) });
  if (roles.length === 0) return result;

  await cleanOtherDatabases(session, roles, options, errors);
  const remaining = roles.filter((r) => !errors.has(r.rolname));
  if (remaining.length > 0) {
    if (options.revocationStatements && options.revocationStatements.length > 0) {
      for (const role of remaining) {
        try {
          await unblocked(session, [role], async () => {
            for (const template of options.revocationStatements!) await session.client.query(revocationStatement(template, role.rolname));
          });
        } catch (error) {
          errors.set(role.rolname, error);
        }
      }
    } else {
      try {
        await unblocked(session, remaining, () => dropRoles(session, remaining, options.reassignTo));
      } catch {
        // One stubborn or concurrently changed role must not block the others: one by one.
        for (const role of remaining) {
          try {
            await unblocked(session, [role], () => dropRoles(session, [role], options.reassignTo));
          } catch (error) {
            errors.set(role.rolname, error);
          }
        }
      }
    }
  }

  // Gone means gone: no role of that name, nothing in pg_shdepend naming its oid, no session,
  // no prepared transaction of its own.
  const { rows: left } = await session.query<{ rolname: string }>(
    `SELECT r.rolname FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.oid[]), pg_catalog.unnest($2::pg_catalog.text[])) AS r(oid, rolname)
        WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) r.rolname)
           OR EXISTS (SELECT 1 FROM pg_catalog.pg_shdepend d WHERE d.refclassid OPERATOR(pg_catalog.=) ${AUTHID} AND d.refobjid OPERATOR(pg_catalog.=) r.oid)
           OR EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a WHERE a.usesysid OPERATOR(pg_catalog.=) r.oid)
           OR EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_xact() AS p(transaction, gid, prepared, ownerid, dbid) WHERE p.ownerid OPERATOR(pg_catalog.=) r.oid)`,
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
          ? session.queryFailure('revoke_failed', `revoke user ${role.rolname}`, cause)
          : failed('revoke_failed', `Could not revoke user ${role.rolname} at ${session.address}: it still exists after the revocation.`);
    result.failed.push({ username: role.rolname, error });
  }
  return result;
}

/**
 * Ends the roles' logins and sessions, everywhere in the cluster, before anything else: from
 * then on they cannot create anything more. Nothing here may wait on a lock the lease holds
 * (an open transaction that changed its own role row, a prepared transaction): the admin
 * first takes the roles' privileges (which waits on nothing a lease can hold), ends their
 * sessions and rolls back their prepared transactions, and only then sets NOLOGIN, under
 * the watcher of unblocked(). Returns the roles that exist, with their oids and the other
 * databases where pg_shdepend says they own something or hold privileges.
 */
async function disable(session: PgSession, names: string[]): Promise<Role[]> {
  const { rows } = await session.query<{ rolname: string; oid: number; usable: boolean; can_login: boolean; superuser: boolean; version: number }>(
    `SELECT rolname, oid::pg_catalog.int4 AS oid, pg_catalog.pg_has_role(oid, 'USAGE') AS usable, rolcanlogin AS can_login,
              (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) CURRENT_USER) AS superuser,
              pg_catalog.current_setting('server_version_num')::pg_catalog.int4 AS version
         FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])`,
    [names],
    `revoke ${describeUsers(names)}`,
  );
  if (rows.length === 0) return [];
  const { superuser, version } = rows[0];
  const action = `revoke ${describeUsers(names)}`;
  const toJoin = rows.filter((r) => !r.usable).map((r) => ident(r.rolname));
  // A CREATEROLE admin needs the privileges of a role to end its sessions, roll back its
  // prepared transactions (as the role) and drop what it owns.
  const first = toJoin.length > 0 && !superuser ? ['BEGIN', `GRANT ${toJoin.join(', ')} TO CURRENT_USER`, 'COMMIT'] : [];
  first.push(terminateStatement(rows, version), preparedStatement(rows));
  const logins = rows.filter((r) => r.can_login).map((r) => `ALTER ROLE ${ident(r.rolname)} NOLOGIN`);
  // NOLOGIN is committed before the sessions are ended again, so none can come back after.
  const second = logins.length > 0 ? ['BEGIN', ...logins, 'COMMIT'] : [];
  second.push(terminateStatement(rows, version));
  second.push(
    `SELECT r.rolname, pg_catalog.array_agg(DISTINCT db.datname::pg_catalog.text ORDER BY db.datname::pg_catalog.text) AS databases
         FROM pg_catalog.pg_roles r JOIN pg_catalog.pg_shdepend d ON d.refclassid OPERATOR(pg_catalog.=) ${AUTHID} AND d.refobjid OPERATOR(pg_catalog.=) r.oid
         JOIN pg_catalog.pg_database db ON db.oid OPERATOR(pg_catalog.=) d.dbid
        WHERE r.rolname OPERATOR(pg_catalog.=) ANY (ARRAY[${rows.map((r) => literal(r.rolname)).join(', ')}]::pg_catalog.text[]) AND db.datname OPERATOR(pg_catalog.<>) pg_catalog.current_database()
        GROUP BY r.rolname`,
  );
  let results: pg.QueryResult[];
  try {
    results = await unblocked(session, rows, async () => {
      const early = await session.multi(first.join('; '), action);
      const prepared = early[early.length - 1].rows as Prepared[];
      if (prepared.length > 0) await rollbackPrepared(session, prepared);
      return session.multi(second.join('; '), action);
    });
  } catch (error) {
    await session.client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
  const elsewhere = new Map<string, string[]>();
  for (const row of results[results.length - 1].rows as { rolname: string; databases: string[] }[]) elsewhere.set(row.rolname, row.databases);
  return rows.map((r) => ({ rolname: r.rolname, oid: r.oid, databases: elsewhere.get(r.rolname) ?? [] }));
}

/** Removes what the roles own or were granted in the other databases of the cluster. */
async function cleanOtherDatabases(session: PgSession, roles: Role[], options: RevokeOptions, errors: Map<string, unknown>): Promise<void> {
  const byDatabase = new Map<string, Role[]>();
  for (const role of roles) for (const database of role.databases) byDatabase.set(database, [...(byDatabase.get(database) ?? []), role]);
  for (const [database, members] of byDatabase) {
    const action = `clean database "${database}" for ${describeUsers(members.map((m) => m.rolname))}`;
    let other: PgSession | undefined;
    try {
      other = await PgSession.open(session.conn, session.options, database);
      await unblocked(other, members, () => other!.transaction(action, 'revoke_failed', undefined, () => removeOwned(other!, members, options.reassignTo)));
    } catch (error) {
      const reason = error instanceof SyError ? error.message.replace(/\.$/, '') : driverReason(error, [session.conn.password]);
      const wrapped = failed('revoke_failed', `Could not revoke on PostgreSQL at ${session.address}: database "${database}" could not be cleaned (${reason}).`);
      for (const member of members) if (!errors.has(member.rolname)) errors.set(member.rolname, wrapped);
    } finally {
      await other?.close();
    }
  }
}

/** In this database: see removeOwnedStatements. */
async function removeOwned(session: PgSession, roles: Role[], reassignTo: string | undefined): Promise<void> {
  await session.multi(removeOwnedStatements(roles, reassignTo).join('; '), `revoke ${describeUsers(roles.map((r) => r.rolname))}`);
}

/** Drops the roles in a handful of round trips, whatever their number, in one transaction. */
async function dropRoles(session: PgSession, roles: Role[], reassignTo: string | undefined): Promise<void> {
  const names = roles.map((r) => r.rolname);
  const list = names.map(ident).join(', ');
  const tail = [...removeOwnedStatements(roles, reassignTo), `DROP ROLE IF EXISTS ${list}`, 'COMMIT'].join('; ');
  await session.retrying(`revoke ${describeUsers(names)}`, 'revoke_failed', undefined, async () => {
    if (roles.length === 1) {
      await session.client.query(`BEGIN; ${tail}`); // one round trip
      return;
    }
    // DROP OWNED takes the roles out of each object's ACL one role at a time, rewriting the
    // ACL each time: a batch of roles that share a table is quadratic (1,000 took 1.1 s).
    // One REVOKE per kind of object naming the whole batch rewrites each ACL once.
    const [, found] = (await session.client.query(`BEGIN; ${aclObjectsQuery(names)}`)) as unknown as pg.QueryResult<AclObject>[];
    const revokes = bulkRevokes(found.rows, list);
    if (revokes.length > 0) {
      try {
        await session.client.query(`SAVEPOINT sy_bulk_revoke; ${revokes.join('; ')}; RELEASE SAVEPOINT sy_bulk_revoke`);
      } catch {
        await session.client.query('ROLLBACK TO SAVEPOINT sy_bulk_revoke');
      }
    }
    await session.client.query(tail);
  });
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
      `DO $sy$ DECLARE f pg_catalog.regprocedure; BEGIN
         FOR f IN SELECT oid::pg_catalog.regprocedure FROM pg_catalog.pg_proc
                   WHERE prosecdef AND proowner OPERATOR(pg_catalog.=) ANY (ARRAY[${oids}]::pg_catalog.oid[]) LOOP
           EXECUTE pg_catalog.format('ALTER ROUTINE %s SECURITY INVOKER', f);
         END LOOP; END $sy$`,
    );
    statements.push(`REASSIGN OWNED BY ${list} TO ${ident(reassignTo)}`);
  }
  statements.push(`DROP OWNED BY ${list} CASCADE`);
  return statements;
}

interface AclObject {
  kind: 'TABLE' | 'SEQUENCE' | 'SCHEMA' | 'DATABASE';
  name: string;
}

/** The tables, sequences, schemas and databases on which the roles hold privileges, here. */
function aclObjectsQuery(roles: string[]): string {
  const is = (column: string, catalog: string) => `${column} OPERATOR(pg_catalog.=) 'pg_catalog.${catalog}'::pg_catalog.regclass`;
  return `SELECT DISTINCT o.kind, o.name FROM pg_catalog.pg_shdepend d
      CROSS JOIN LATERAL (
        SELECT CASE WHEN c.relkind OPERATOR(pg_catalog.=) 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
               pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname)
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
         WHERE ${is('d.classid', 'pg_class')} AND c.oid OPERATOR(pg_catalog.=) d.objid
           AND (c.relkind OPERATOR(pg_catalog.=) ANY (${TABLE_KINDS}) OR c.relkind OPERATOR(pg_catalog.=) 'S')
        UNION ALL
        SELECT 'SCHEMA', pg_catalog.quote_ident(nspname) FROM pg_catalog.pg_namespace
         WHERE ${is('d.classid', 'pg_namespace')} AND oid OPERATOR(pg_catalog.=) d.objid
        UNION ALL
        SELECT 'DATABASE', pg_catalog.quote_ident(datname) FROM pg_catalog.pg_database
         WHERE ${is('d.classid', 'pg_database')} AND oid OPERATOR(pg_catalog.=) d.objid
      ) AS o(kind, name)
     WHERE d.deptype OPERATOR(pg_catalog.=) 'a' AND d.objsubid OPERATOR(pg_catalog.=) 0 AND ${is('d.refclassid', 'pg_authid')}
       AND d.refobjid OPERATOR(pg_catalog.=) ANY (SELECT oid FROM pg_catalog.pg_roles
                                                  WHERE rolname OPERATOR(pg_catalog.=) ANY (ARRAY[${roles.map(literal).join(', ')}]::pg_catalog.text[]))
       AND d.dbid OPERATOR(pg_catalog.=) ANY (ARRAY[0::pg_catalog.oid, (SELECT oid FROM pg_catalog.pg_database WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database())])
     ORDER BY 1, 2`;
}

/** One REVOKE per kind of object, naming every object of that kind and every role. */
function bulkRevokes(objects: AclObject[], roleList: string): string[] {
  const byKind = new Map<string, string[]>();
  for (const { kind, name } of objects) byKind.set(kind, [...(byKind.get(kind) ?? []), name]);
  return [...byKind].map(([kind, names]) => `REVOKE ALL ON ${kind} ${names.join(', ')} FROM ${roleList}`);
}
