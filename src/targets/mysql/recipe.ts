/**
 * What on a MySQL/MariaDB server would keep a recipe from being granted as written, read
 * without changing anything: the names it reaches, and what the admin may hand out.
 */
import { isSystemSchema } from '../../model/engines.js';
import type { GrantPermission } from '../../model/secret.js';
import { type HeldGrant, notGrantable, parseGrantLine } from './grants.js';
import { grantLevel, lookUpNames } from './lookup.js';
import { type MysqlSession, type Row, text } from './session.js';

/**
 * What createUser would refuse, or the server would deny: names that do not exist, and
 * privileges the admin cannot hand out (SHOW GRANTS: its own, its roles', added up over
 * the global, database and table levels, as the server does). `*.*` is checked on every
 * database the admin sees, since a lease gets it on each of them.
 */
export async function checkRecipe(session: MysqlSession, grants: GrantPermission[]): Promise<string[]> {
  const names = await lookUpNames(session, grants, 'look up the databases and tables of the recipe', 'target_error', true);
  const lines = await session.run<Row[]>('SHOW GRANTS', [], "read the admin's grants");
  const held = lines.map((row) => parseGrantLine(text(Object.values(row)[0]))).filter((g): g is HeldGrant => g !== undefined);
  const problems: string[] = [];
  const add = (problem: string) => {
    if (!problems.includes(problem)) problems.push(problem);
  };
  const grantable = (privileges: string[], database: string, table?: string) => {
    const missing = notGrantable(held, privileges, database, table, names.folded);
    const where = `${database}.${table ?? '*'}`;
    if (missing.length > 0) add(`grantPermissions: the admin ${session.conn.username} does not hold ${missing.join(', ')} on ${where} WITH GRANT OPTION.`);
  };
  for (const grant of grants) {
    const { onTable, privileges, unknown } = grantLevel(grant);
    if (unknown !== undefined) {
      add(`grantPermissions: ${unknown.slice(0, 40)} is not a privilege sy grants on ${onTable ? 'a table' : 'a database'}.`);
    } else if (grant.schema === '*') {
      if (names.reachable.length === 0) add(`grantPermissions: *.* reaches nothing on ${session.address}: the admin sees no database but the system ones.`);
      for (const db of names.reachable) grantable(privileges, db);
    } else if (isSystemSchema('mysql', grant.schema)) {
      add(`grantPermissions: ${grant.schema} is a system database, which a lease never reaches.`);
    } else if (!names.knownDatabases.has(names.fold(grant.schema))) {
      add(`grantPermissions: database ${grant.schema} does not exist on ${session.address}.`);
    } else if (!onTable) {
      grantable(privileges, grant.schema);
    } else if (!names.knownTables.has(`${names.fold(grant.schema)}.${names.fold(grant.table)}`)) {
      add(`grantPermissions: table ${grant.schema}.${grant.table} does not exist on ${session.address}.`);
    } else {
      grantable(privileges, grant.schema, grant.table);
    }
  }
  return problems;
}
