/**
 * Creating a PostgreSQL user and moving its expiry. The password goes out as a SCRAM-SHA-256
 * verifier, the role and its grants are made in one transaction, and each grant on a named
 * schema or table is checked afterwards (PostgreSQL only warns when the grant option is missing).
 */
import { failed } from '../../errors.js';
import { POSTGRES_DATA_PRIVILEGES, POSTGRES_SCHEMA_PRIVILEGES } from '../../model/engines.js';
import { type GrantPermission, MAX_CONNECTION_LIMIT } from '../../model/secret.js';
import { parseManagedName } from '../names.js';
import { scramSha256Verifier } from '../scram.js';
import { type DriverError, expandPrivileges, renderTemplate } from '../shared.js';
import type { NewUser } from '../target.js';
import { checkReassignTarget } from './reassign.js';
import { ORDINARY_SCHEMA, SY_STORE_SCHEMA, storeSchemaRefused } from './recipe.js';
import { revokeUsers } from './revoke.js';
import { checkedName, escapePasswordLiteral, ident, literal, type PgSession } from './session.js';

/**
 * Creates the role with its grants in one transaction (see PostgresTarget). Custom creation
 * statements may commit on their own, so on failure whatever they left is revoked.
 */
export async function createUser(session: PgSession, user: NewUser): Promise<void> {
  const name = checkedName(user.username);
  const expires = user.expiresAt.toISOString();
  const verifier = scramSha256Verifier(user.password);
  if (user.reassignTo !== undefined) await checkReassignTarget(session, user.reassignTo, `create user ${name}`);
  const custom = user.creationStatements !== undefined && user.creationStatements.length > 0;
  try {
    await session.transaction(`create user ${name}`, 'create_user_failed', user.password, async () => {
      if (custom) {
        for (const template of user.creationStatements!) {
          // {{password}} becomes the SCRAM verifier: PostgreSQL stores it as given, and
          // the statement (which the server may log) never holds the password.
          const statement = renderTemplate(template, { name, password: verifier, expiration: expires }, escapePasswordLiteral);
          await session.query(statement, [], `create user ${name}`, 'create_user_failed', user.password);
        }
        // grantPermissions is granted on top of what the statements did: it is never ignored.
        await grantAll(session, name, user.grants);
        // The recipe's cap holds whatever the statements said: a lease must not keep the admin out.
        if (user.connectionLimit !== undefined) {
          await session.query(`ALTER ROLE ${ident(name)} CONNECTION LIMIT ${connectionLimit(user.connectionLimit)}`, [], `create user ${name}`, 'create_user_failed');
        }
        return;
      }
      await session.query(
        [
          `CREATE ROLE ${ident(name)} WITH LOGIN NOINHERIT${user.connectionLimit !== undefined ? ` CONNECTION LIMIT ${connectionLimit(user.connectionLimit)}` : ''} PASSWORD ${literal(verifier)} VALID UNTIL ${literal(expires)}`,
          `COMMENT ON ROLE ${ident(name)} IS ${literal(`managed by sy; reap after ${parseManagedName(name)?.reapAfter.toISOString() ?? expires}`)}`,
          `GRANT CONNECT ON DATABASE ${ident(session.database)} TO ${ident(name)}`,
        ].join('; '),
        [],
        `create user ${name}`,
        'create_user_failed',
        user.password,
      );
      await grantAll(session, name, user.grants);
    });
  } catch (error) {
    // Custom statements may have committed on their own: drop whatever is left.
    if (custom) await revokeUsers(session, [name], { reassignTo: user.reassignTo }).catch(() => undefined);
    throw error;
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

/**
 * Every grant of the recipe; then, when it gives CREATE on named schemas, the role's
 * search_path starts with them, so that a migration tool or `pgbench -i` creates its
 * unqualified tables there (PostgreSQL 15 and later give PUBLIC no CREATE on `public`).
 */
async function grantAll(session: PgSession, name: string, grants: GrantPermission[]): Promise<void> {
  const creating: string[] = [];
  for (const grant of grants) {
    await grantOne(session, name, grant);
    if (grant.schema !== '*' && grant.privileges.includes('CREATE') && !creating.includes(grant.schema)) creating.push(grant.schema);
  }
  if (creating.length === 0) return;
  const path = [...creating, ...(creating.includes('public') ? [] : ['public'])];
  await session.query(`ALTER ROLE ${ident(name)} SET search_path TO ${path.map(ident).join(', ')}`, [], `set the search_path of ${name}`, 'grant_failed');
}

async function grantOne(session: PgSession, name: string, grant: GrantPermission): Promise<void> {
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
  let schemas: string[];
  if (grant.schema === '*') {
    const { rows } = await session.query<{ nspname: string }>(
      `SELECT nspname FROM pg_catalog.pg_namespace WHERE ${ORDINARY_SCHEMA} ORDER BY nspname`,
      [],
      description,
    );
    schemas = rows.map((r) => r.nspname);
  } else {
    const { rows } = await session.query<{ store: boolean }>(`SELECT ${SY_STORE_SCHEMA} AS store FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) $1::pg_catalog.text`, [grant.schema], description);
    if (rows[0]?.store) throw failed('grant_failed', `Could not ${description}: ${storeSchemaRefused(grant.schema, `${session.address}/${session.database}`)}.`);
    schemas = [grant.schema];
  }
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
  if (statements.length > 0) await session.query(statements.join('; '), [], description, 'grant_failed');
  if (grant.schema !== '*') await checkGranted(session, name, grant.schema, grant.table, privileges, onSchema, description);
}

/**
 * GRANT only warns when the admin lacks the grant option; check that the new role really
 * holds what an explicitly named schema or table promises.
 */
async function checkGranted(
  session: PgSession,
  name: string,
  schema: string,
  table: string,
  privileges: string[],
  onSchema: string[],
  description: string,
): Promise<void> {
  const onSchemaHeld =
    '(SELECT pg_catalog.bool_and(pg_catalog.has_schema_privilege($1::pg_catalog.name, $2::pg_catalog.text, p)) FROM pg_catalog.unnest($3::pg_catalog.text[]) AS p)';
  const { rows } = await session.query<{ ok: boolean }>(
    table === '*'
      ? `SELECT ${onSchemaHeld} AS ok`
      : `SELECT ${onSchemaHeld} AND (SELECT pg_catalog.bool_and(pg_catalog.has_table_privilege($1::pg_catalog.name, $4::pg_catalog.text, p)) FROM pg_catalog.unnest($5::pg_catalog.text[]) AS p) AS ok`,
    table === '*' ? [name, schema, ['USAGE', ...onSchema]] : [name, schema, ['USAGE', ...onSchema], `${ident(schema)}.${ident(table)}`, privileges],
    description,
  );
  if (rows[0]?.ok !== true) {
    throw failed(
      'grant_failed',
      `Could not ${description} at ${session.address}: the admin user ${session.conn.username} does not hold it WITH GRANT OPTION.`,
    );
  }
}
