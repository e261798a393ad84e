/**
 * Creating a MySQL/MariaDB user, `'<name>'@'%'`, with exactly its recipe. There is no
 * transactional DDL, so everything is checked before the user exists, and a grant that fails
 * afterwards drops it again. On MariaDB the password goes out as its mysql_native_password
 * hash; MySQL 8 gets the escaped literal and rewrites it out of its own logs.
 */
import { createHash } from 'node:crypto';
import { failed } from '../../errors.js';
import { isSystemSchema } from '../../model/engines.js';
import type { GrantPermission } from '../../model/secret.js';
import { MAX_CONNECTION_LIMIT, MYSQL_IDENTIFIED_BY_PASSWORD } from '../../model/secret.js';
import { renderTemplate } from '../shared.js';
import type { NewUser } from '../target.js';
import { grantLevel, lookUpNames } from './lookup.js';
import { type Holding, lookUpHoldings } from './revoke.js';
import { account, checkedName, ident, LABEL, literal, type MysqlSession, type Row } from './session.js';

/** In a database-level grant `_` and `%` are wildcards: escaped, the name means only itself. */
const databaseGrantName = (name: string): string => ident(name.replace(/[\\_%]/g, (c) => `\\${c}`));

/** A '...' literal in MySQL's default SQL mode: backslashes and quotes escaped. */
const escapePasswordLiteral = (password: string): string => password.replace(/\\/g, '\\\\').replace(/'/g, "''");

/** MariaDB's `IDENTIFIED BY PASSWORD` form: `*` + upper-case hex of SHA1(SHA1(password)). */
export function nativePasswordHash(password: string): string {
  const inner = createHash('sha1').update(password, 'utf8').digest();
  return `*${createHash('sha1').update(inner).digest('hex').toUpperCase()}`;
}

/** See Target.createUser and MysqlTarget: everything is checked first, and a failed grant drops the user. */
export async function createUser(session: MysqlSession, user: NewUser): Promise<void> {
  const name = checkedName(user.username);
  if (user.creationStatements && user.creationStatements.length > 0) return createFromTemplates(session, name, user, user.creationStatements);
  // Everything is checked before the user exists, so most refusals leave nothing to undo.
  const { mariadb, grants } = await planGrants(session, name, user.grants);
  const credential = identifiedBy(user.password, mariadb);
  // Not undone when it fails: the name may be someone else's, and a user that was not made needs no drop.
  const limit = user.connectionLimit !== undefined ? ` WITH MAX_USER_CONNECTIONS ${connectionLimit(user.connectionLimit)}` : '';
  await session.run(`CREATE USER ${account(name)} ${credential}${limit}`, [], `create user ${name}`, 'create_user_failed', user.password);
  try {
    for (const grant of grants) await session.run(grant.sql, [], grant.action, 'grant_failed');
  } catch (error) {
    await session.run(`DROP USER IF EXISTS ${account(name)}`, [], `drop user ${name}`).catch(() => undefined);
    throw error;
  }
}

async function createFromTemplates(session: MysqlSession, name: string, user: NewUser, templates: string[]): Promise<void> {
  const mariadb = templates.some((t) => t.search(MYSQL_IDENTIFIED_BY_PASSWORD) >= 0) && (await session.isMariadb());
  const credential = identifiedBy(user.password, mariadb);
  const statements = templates.map((template) => {
    const withCredential = template.replace(MYSQL_IDENTIFIED_BY_PASSWORD, () => credential);
    if (/\{\{\s*password\s*\}\}/.test(withCredential)) {
      throw failed(
        'create_user_failed',
        `Could not create user ${name} at ${session.address}: a creation statement uses {{password}} other than as IDENTIFIED BY '{{password}}', which the server would log in clear text.`,
      );
    }
    return renderTemplate(withCredential, { name, password: '', expiration: user.expiresAt.toISOString() }, escapePasswordLiteral);
  });
  let ran = 0;
  try {
    for (const statement of statements) {
      await session.run(statement, [], `create user ${name}`, 'create_user_failed', user.password);
      ran++;
    }
    // grantPermissions is granted on top of what the templates did (to '<name>'@'%'): never ignored.
    if (user.grants.length > 0) {
      const { grants } = await planGrants(session, name, user.grants);
      for (const grant of grants) await session.run(grant.sql, [], grant.action, 'grant_failed');
    }
    // The recipe's cap holds whatever the statements said, on every host they created the user on.
    if (user.connectionLimit !== undefined) {
      const hosts = (await lookUpHoldings(session, [name])).get(name)?.hosts ?? [];
      if (hosts.length > 0) {
        const accounts = hosts.map((h) => account(name, h)).join(', ');
        await session.run(`ALTER USER ${accounts} WITH MAX_USER_CONNECTIONS ${connectionLimit(user.connectionLimit)}`, [], `create user ${name}`, 'create_user_failed');
      }
    }
  } catch (error) {
    // A template may create the user on any host: drop whatever exists under the name.
    if (ran > 0) {
      const holdings = await lookUpHoldings(session, [name]).catch(() => new Map<string, Holding>());
      const hosts = holdings.get(name)?.hosts ?? [];
      if (hosts.length > 0) await session.run(`DROP USER IF EXISTS ${hosts.map((h) => account(name, h)).join(', ')}`, [], `drop user ${name}`).catch(() => undefined);
    }
    throw error;
  }
}

/** A whole number for SQL: validated at create time, checked again here since it is spliced in. */
function connectionLimit(value: number): number {
  if (!Number.isInteger(value) || value < 1 || value > MAX_CONNECTION_LIMIT) throw failed('create_user_failed', `The connection limit ${value} is not a whole number from 1 to ${MAX_CONNECTION_LIMIT}.`);
  return value;
}

/**
 * The GRANT statements of a recipe, after one look at the server: its version (for the
 * password form), the databases that exist and the tables the recipe names.
 */
async function planGrants(session: MysqlSession, name: string, grants: GrantPermission[]): Promise<{ mariadb: boolean; grants: Statement[] }> {
  const { mariadb, fold, reachable, knownDatabases, knownTables } = await lookUpNames(session, grants, `look up the databases and tables granted to ${name}`, 'grant_failed');
  const statements: Statement[] = [];
  const to = `TO ${account(name)}`;
  for (const grant of grants) {
    const where = `${grant.schema}.${grant.table}`;
    const named = grant.privileges.join(', ');
    const refuse = (reason: string) => failed('grant_failed', `Could not grant ${named} on ${where} at ${session.address}: ${reason}.`);
    const { onTable, privileges, unknown } = grantLevel(grant);
    if (unknown !== undefined) {
      throw refuse(`${unknown.slice(0, 40)} is not a privilege sy grants on ${onTable ? 'a table' : 'a database'}`);
    }
    const what = privileges.join(', ');
    if (grant.schema === '*') {
      if (grant.table !== '*') throw refuse('a table needs a database');
      // Database by database, so that the system databases (mysql.user and its password
      // hashes) stay out of reach and no global privilege is ever granted.
      if (reachable.length === 0) throw refuse('the admin sees no database other than the system ones');
      for (const db of reachable) statements.push({ sql: `GRANT ${what} ON ${databaseGrantName(db)}.* ${to}`, action: `grant ${named} on ${db}.*` });
    } else if (isSystemSchema('mysql', grant.schema)) {
      throw refuse(`"${grant.schema}" is a system database`);
    } else if (grant.table === '*') {
      if (!knownDatabases.has(fold(grant.schema))) throw refuse(`database "${grant.schema}" does not exist`);
      statements.push({ sql: `GRANT ${what} ON ${databaseGrantName(grant.schema)}.* ${to}`, action: `grant ${named} on ${where}` });
    } else {
      if (!knownTables.has(`${fold(grant.schema)}.${fold(grant.table)}`)) throw refuse(`table "${where}" does not exist`);
      // Table-level grants take names literally: no escaping here.
      statements.push({ sql: `GRANT ${what} ON ${ident(grant.schema)}.${ident(grant.table)} ${to}`, action: `grant ${named} on ${where}` });
    }
  }
  return { mariadb, grants: statements };
}

/** Nothing to move on the server; only checks, as on PostgreSQL, that the user still exists. */
export async function renewUser(session: MysqlSession, username: string): Promise<void> {
  const name = checkedName(username);
  const rows = await session.run<Row[]>("SELECT 1 FROM mysql.user WHERE host = '%' AND user = ?", [name], `renew user ${name}`, 'renew_failed');
  if (rows.length === 0) throw failed('user_not_found', `The user ${name} no longer exists on ${LABEL} at ${session.address}.`);
}

interface Statement {
  sql: string;
  /** For the error message: `grant SELECT on app.*`. */
  action: string;
}

/** MariaDB logs statements as sent, so it gets the hash; MySQL 8 rewrites the password out of its logs itself. */
function identifiedBy(password: string, mariadb: boolean): string {
  return mariadb ? `IDENTIFIED BY PASSWORD ${literal(nativePasswordHash(password))}` : `IDENTIFIED BY ${literal(password)}`;
}
