/**
 * Creating a PostgreSQL user and moving its expiry. The password goes out as a SCRAM-SHA-256
 * verifier, the role and its grants are made in one transaction, and each grant on a named
 * schema or table is checked afterwards (PostgreSQL only warns when the grant option is missing).
 */
import type pg from 'pg';
import { failed, type SyError } from '../../errors.js';
import { POSTGRES_DATA_PRIVILEGES, POSTGRES_SCHEMA_PRIVILEGES } from '../../model/engines.js';
import { type GrantPermission, MAX_CONNECTION_LIMIT } from '../../model/secret.js';
import { parseManagedName } from '../names.js';
import { scramSha256VerifierAsync } from '../scram.js';
import { type DriverError, expandPrivileges, renderTemplate } from '../shared.js';
import type { NewUser } from '../target.js';
import { checkReassignTarget } from './reassign.js';
import { ORDINARY_SCHEMA, SY_STORE_SCHEMA, storeSchemaRefused } from './recipe.js';
import { revokeUsers } from './revoke.js';
import { checkedName, escapePasswordLiteral, ident, literal, PgSession } from './session.js';

/**
 * Creates the role with its grants in one transaction (see PostgresTarget).
 *
 * Inside the transaction, the role goes first, in one round trip with BEGIN and the catalog
 * reads that plan the grants (the role's SCRAM verifier costs the server a few
 * milliseconds: it checks that the password is not empty); then the grants and the checks
 * that the role holds them, with COMMIT, in one more. Concurrent GRANTs on one catalog row
 * (the database's, a schema's, a table's) fail all but the first to commit, so the time from
 * the first GRANT to COMMIT is kept to that one round trip, which is what holds the create's
 * turn (NewUser.turn) when it has one. A check that fails has then been committed with the
 * rest: the role, which holds less than the recipe grants and whose password nobody has
 * received, is dropped again before the error is told.
 */
export async function createUser(session: PgSession, user: NewUser): Promise<void> {
  const name = checkedName(user.username);
  const expires = user.expiresAt.toISOString();
  const verifier = await scramSha256VerifierAsync(user.password);
  if (user.reassignTo !== undefined) await checkReassignTarget(session, user.reassignTo, `create user ${name}`);
  const custom = user.creationStatements !== undefined && user.creationStatements.length > 0;
  const lookups = user.grants.map((grant) => grantLookup(session, name, grant));
  const action = `create user ${name}`;
  if (custom) return createCustom(session, user, { name, verifier, expires, action, grants: await planGrants(session, name, lookups) });
  const role = [
    'BEGIN',
    `CREATE ROLE ${ident(name)} WITH LOGIN NOINHERIT${user.connectionLimit !== undefined ? ` CONNECTION LIMIT ${connectionLimit(user.connectionLimit)}` : ''} PASSWORD ${literal(verifier)} VALID UNTIL ${literal(expires)}`,
    `COMMENT ON ROLE ${ident(name)} IS ${literal(`managed by sy; reap after ${parseManagedName(name)?.reapAfter.toISOString() ?? expires}`)}`,
  ];
  const grantConnect = `GRANT CONNECT ON DATABASE ${ident(session.database)} TO ${ident(name)}`;
  let refused: GrantPlan | undefined;
  await session.retrying(action, 'create_user_failed', user.password, async () => {
    const results = await session.multi([...role, ...lookups.map((l) => l.lookup)].join('; '), action, 'create_user_failed', user.password);
    const grants = plansFrom(name, lookups, results.slice(role.length));
    refused = await inTurn(user, () => grantAll(session, action, grants, [grantConnect], [], user.password, ['COMMIT']));
  });
  if (refused !== undefined) {
    await revokeUsers(session, [name], {}).catch(() => undefined);
    throw grantRefused(session, refused);
  }
}

/**
 * The recipe's creationStatements, then grantPermissions on top, in one transaction that
 * holds the turn throughout (the statements may grant anything). They may also commit on
 * their own, so on failure whatever they left is revoked.
 */
async function createCustom(session: PgSession, user: NewUser, made: { name: string; verifier: string; expires: string; action: string; grants: GrantPlan[] }): Promise<void> {
  const { name, action } = made;
  try {
    await inTurn(user, () => session.transaction(action, 'create_user_failed', user.password, async () => {
      for (const template of user.creationStatements!) {
        // {{password}} becomes the SCRAM verifier: PostgreSQL stores it as given, and
        // the statement (which the server may log) never holds the password.
        const statement = renderTemplate(template, { name, password: made.verifier, expiration: made.expires }, escapePasswordLiteral);
        await session.query(statement, [], action, 'create_user_failed', user.password);
      }
      // grantPermissions is granted on top of what the statements did: it is never ignored.
      // The recipe's cap holds whatever the statements said: a lease must not keep the admin out.
      const cap = user.connectionLimit !== undefined ? [`ALTER ROLE ${ident(name)} CONNECTION LIMIT ${connectionLimit(user.connectionLimit)}`] : [];
      const refused = await grantAll(session, action, made.grants, [], cap);
      if (refused !== undefined) throw grantRefused(session, refused);
    }));
  } catch (error) {
    await revokeUsers(session, [name], { reassignTo: user.reassignTo }).catch(() => undefined);
    throw error;
  }
}

/** Runs `work` in the create's turn (NewUser.turn), or at once when it has none. */
async function inTurn<T>(user: NewUser, work: () => Promise<T>): Promise<T> {
  const done = user.turn ? await user.turn() : undefined;
  try {
    return await work();
  } finally {
    done?.();
  }
}

/** A whole number for SQL: validated at create time, checked again here since it is spliced in. */
function connectionLimit(value: number): number {
  if (!Number.isInteger(value) || value < 1 || value > MAX_CONNECTION_LIMIT) throw failed('create_user_failed', `The connection limit ${value} is not a whole number from 1 to ${MAX_CONNECTION_LIMIT}.`);
  return value;
}

/** Moves VALID UNTIL; a role that is gone is `user_not_found`, so the lease can be marked gone. */
export async function renewUser(session: PgSession, username: string, expiresAt: Date): Promise<void> {
  const name = checkedName(username);
  try {
    await session.client.query(`ALTER ROLE ${ident(name)} VALID UNTIL ${literal(expiresAt.toISOString())}`);
  } catch (error) {
    if ((error as DriverError).code === '42704') {
      throw failed('user_not_found', `The user ${name} no longer exists on PostgreSQL at ${session.address}.`);
    }
    throw session.queryFailure('renew_failed', `renew user ${name}`, error);
  }
}

/** What one grant of a recipe becomes: its statements, and the check that the role holds it (named schemas only). */
interface GrantPlan {
  description: string;
  statements: string[];
  /** A SELECT of one boolean `ok`; see checkSql. */
  check?: string;
}

/**
 * The grants of the recipe as statements, their catalog reads (the schemas `*` reaches; a
 * named schema that is a sy store is refused) in a round trip of their own: for
 * creationStatements. The default create makes them in the role's round trip instead.
 */
async function planGrants(session: PgSession, name: string, lookups: GrantLookup[]): Promise<GrantPlan[]> {
  if (lookups.length === 0) return plansFrom(name, [], []);
  const results = await session.multi(lookups.map((l) => l.lookup).join('; '), `create user ${name}`, 'grant_failed');
  return plansFrom(name, lookups, results);
}

/**
 * The plans of the grants from their catalog reads (`results`, one per lookup, in order).
 * When the recipe gives CREATE on named schemas, the role's search_path starts with them, so
 * that a migration tool or `pgbench -i` creates its unqualified tables there (PostgreSQL 15
 * and later give PUBLIC no CREATE on `public`).
 */
function plansFrom(name: string, lookups: GrantLookup[], results: pg.QueryResult[]): GrantPlan[] {
  const plans: GrantPlan[] = [];
  const creating: string[] = [];
  lookups.forEach((lookup, i) => {
    plans.push(lookup.plan(results[i]?.rows ?? []));
    const { grant } = lookup;
    if (grant.schema !== '*' && grant.privileges.includes('CREATE') && !creating.includes(grant.schema)) creating.push(grant.schema);
  });
  if (creating.length > 0) {
    const path = [...creating, ...(creating.includes('public') ? [] : ['public'])];
    plans.push({ description: `set the search_path of ${name}`, statements: [`ALTER ROLE ${ident(name)} SET search_path TO ${path.map(ident).join(', ')}`] });
  }
  return plans;
}

/**
 * `before`, every plan's statements, `after`, every plan's check, then `end` (COMMIT, or
 * nothing), in one round trip inside the caller's transaction. A statement that fails stops
 * the rest, `end` included. Resolves with the first plan whose check failed (the grant the
 * admin could not hand out), if any.
 */
async function grantAll(session: PgSession, action: string, plans: GrantPlan[], before: string[], after: string[], secret?: string, end: string[] = []): Promise<GrantPlan | undefined> {
  const statements = [...before, ...plans.flatMap((p) => p.statements), ...after];
  const checked = plans.filter((p) => p.check !== undefined);
  // The savepoint lets a failure be retraced step by step from here (whichFailed).
  const text = ['SAVEPOINT sy_create', ...statements, ...checked.map((p) => p.check!), ...end].join('; ');
  let results;
  try {
    results = await session.multi(text, action, 'create_user_failed', secret);
  } catch (error) {
    if (PgSession.concurrentUpdate(error)) throw error;
    throw await whichFailed(session, action, plans, before, after, secret, error);
  }
  const checks = results.slice(1 + statements.length);
  return checked.find((_, i) => checks[i]?.rows[0]?.ok !== true);
}

function grantRefused(session: PgSession, plan: GrantPlan): SyError {
  return failed('grant_failed', `Could not ${plan.description} at ${session.address}: the admin user ${session.conn.username} does not hold it WITH GRANT OPTION.`);
}

/**
 * The batch failed (not by a concurrent update): back at the savepoint, its statements are
 * run again one part at a time, to name the one that fails as a step-by-step create would
 * (the user, or the grant on a schema or table). Nothing of it is kept: the caller rolls back.
 */
async function whichFailed(session: PgSession, action: string, plans: GrantPlan[], before: string[], after: string[], secret: string | undefined, error: unknown): Promise<unknown> {
  try {
    await session.client.query('ROLLBACK TO SAVEPOINT sy_create');
    const parts = [
      { statements: before, action, code: 'create_user_failed' },
      ...plans.map((p) => ({ statements: p.statements, action: p.description, code: 'grant_failed' })),
      { statements: after, action, code: 'create_user_failed' },
    ];
    for (const part of parts) {
      if (part.statements.length > 0) await session.multi(part.statements.join('; '), part.action, part.code, secret);
    }
  } catch (precise) {
    return precise;
  }
  return error;
}

/** One grant of a recipe, checked: the SELECT that reads what it reaches, and its plan from the rows read. */
interface GrantLookup {
  grant: GrantPermission;
  /** Literals only: it goes in a multi-statement round trip. */
  lookup: string;
  plan(rows: Record<string, unknown>[]): GrantPlan;
}

function grantLookup(session: PgSession, name: string, grant: GrantPermission): GrantLookup {
  // CREATE is a schema privilege, named only; `ALL` never means more than the data
  // privileges of tables: not TRIGGER, not MAINTAIN (PostgreSQL 17), not CREATE.
  const onSchema = grant.privileges.filter((p) => POSTGRES_SCHEMA_PRIVILEGES.includes(p));
  const named = grant.privileges.filter((p) => !onSchema.includes(p));
  const { privileges, unknown } = expandPrivileges(named, POSTGRES_DATA_PRIVILEGES);
  if (unknown !== undefined) throw failed('grant_failed', `The privilege ${unknown.slice(0, 40)} cannot be granted on PostgreSQL.`);
  const what = privileges.join(', ');
  const where = `${grant.schema}.${grant.table}`;
  const description = `grant ${grant.privileges.join(', ')} on ${where}`;
  if (onSchema.length > 0 && grant.table !== '*') throw failed('grant_failed', `Could not ${description}: CREATE is granted on a whole schema, not on a table.`);
  const user = ident(name);
  const every = grant.schema === '*';
  // `*`: the schemas it reaches. A named schema: whether it is a sy store (refused).
  const lookup = every
    ? `SELECT nspname FROM pg_catalog.pg_namespace WHERE ${ORDINARY_SCHEMA} ORDER BY nspname`
    : `SELECT ${SY_STORE_SCHEMA} AS store FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) ${literal(grant.schema)}::pg_catalog.text`;
  const plan = (rows: Record<string, unknown>[]): GrantPlan => {
    if (!every && rows[0]?.store === true) throw failed('grant_failed', `Could not ${description}: ${storeSchemaRefused(grant.schema, `${session.address}/${session.database}`)}.`);
    const schemas = every ? rows.map((r) => String(r.nspname)) : [grant.schema];
    const statements: string[] = [];
    for (const schema of schemas) {
      statements.push(`GRANT ${['USAGE', ...onSchema].join(', ')} ON SCHEMA ${ident(schema)} TO ${user}`);
      if (privileges.length === 0) continue;
      statements.push(
        grant.table === '*'
          ? `GRANT ${what} ON ALL TABLES IN SCHEMA ${ident(schema)} TO ${user}`
          : `GRANT ${what} ON TABLE ${ident(schema)}.${ident(grant.table)} TO ${user}`,
      );
    }
    return { description, statements, check: every ? undefined : checkSql(name, grant.schema, grant.table, privileges, onSchema) };
  };
  return { grant, lookup, plan };
}

/**
 * GRANT only warns when the admin lacks the grant option: a SELECT of whether the new role
 * really holds what an explicitly named schema or table promises. Every value is a literal
 * with an explicit catalog type (it goes in a multi-statement round trip, which takes no
 * parameters).
 */
function checkSql(name: string, schema: string, table: string, privileges: string[], onSchema: string[]): string {
  const texts = (values: string[]) => `ARRAY[${values.map(literal).join(', ')}]::pg_catalog.text[]`;
  const role = `${literal(name)}::pg_catalog.name`;
  const onSchemaHeld = `(SELECT pg_catalog.bool_and(pg_catalog.has_schema_privilege(${role}, ${literal(schema)}::pg_catalog.text, p)) FROM pg_catalog.unnest(${texts(['USAGE', ...onSchema])}) AS p)`;
  if (table === '*') return `SELECT ${onSchemaHeld} AS ok`;
  const onTable = `(SELECT pg_catalog.bool_and(pg_catalog.has_table_privilege(${role}, ${literal(`${ident(schema)}.${ident(table)}`)}::pg_catalog.text, p)) FROM pg_catalog.unnest(${texts(privileges)}) AS p)`;
  return `SELECT ${onSchemaHeld} AND ${onTable} AS ok`;
}
