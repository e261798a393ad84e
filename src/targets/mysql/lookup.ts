/**
 * What a recipe names, looked up on a MySQL/MariaDB server in one round trip, and the
 * privileges each grant means at its level: createUser plans its GRANTs from them, and
 * checkRecipe reports on them.
 */
import { isSystemSchema, MYSQL_DATABASE_PRIVILEGES, MYSQL_TABLE_PRIVILEGES } from '../../model/engines.js';
import type { GrantPermission } from '../../model/secret.js';
import { expandPrivileges } from '../shared.js';
import { type MysqlSession, type Row, text } from './session.js';

/** What lookUpNames found; sets hold names folded as the server compares them. */
export interface ServerNames {
  mariadb: boolean;
  /** lower_case_table_names is set: names compare without case. */
  folded: boolean;
  fold: (name: string) => string;
  /**
   * The non-system databases the admin sees, sorted: what `*.*` reaches, database by database
   * (listed only when a grant or the caller needs them).
   */
  reachable: string[];
  knownDatabases: Set<string>;
  /** `db.table`, for the tables the recipe names that exist. */
  knownTables: Set<string>;
}

/**
 * One look at the server for what a recipe names: its version, whether it folds names to
 * lower case, the databases the admin sees (when a grant reaches a whole database) and the
 * named tables that exist. Sets hold folded names, compared as the server does.
 */
export async function lookUpNames(session: MysqlSession, grants: GrantPermission[], action: string, code: string, everyDatabase = false): Promise<ServerNames> {
  const tables = grants.filter((g) => g.schema !== '*' && g.table !== '*').map((g) => [g.schema, g.table]);
  const parts = ['SELECT VERSION() AS version, @@lower_case_table_names AS folded, NULL AS db, NULL AS tbl'];
  const values: unknown[] = [];
  if (everyDatabase || grants.some((g) => g.table === '*')) parts.push('SELECT NULL, NULL, schema_name, NULL FROM information_schema.schemata');
  if (tables.length > 0) {
    parts.push('SELECT NULL, NULL, table_schema, table_name FROM information_schema.tables WHERE (table_schema, table_name) IN (?)');
    values.push(tables);
  }
  const rows = await session.run<Row[]>(parts.join(' UNION ALL '), values, action, code);
  const server = rows.find((r) => r.version !== null);
  const names = rows.filter((r) => r.version === null);
  // With lower_case_table_names set, names compare without case, as the server does.
  const folded = Number(server?.folded ?? 0) !== 0;
  const fold = folded ? (s: string) => s.toLowerCase() : (s: string) => s;
  const databases = names.filter((r) => r.tbl === null).map((r) => text(r.db)).sort();
  return {
    mariadb: /mariadb/i.test(String(server?.version ?? '')),
    folded,
    fold,
    reachable: databases.filter((db) => !isSystemSchema('mysql', db)),
    knownDatabases: new Set(databases.map(fold)),
    knownTables: new Set(names.filter((r) => r.tbl !== null).map((r) => `${fold(text(r.db))}.${fold(text(r.tbl))}`)),
  };
}

/**
 * A grant's level (one table, or whole databases) and what it grants there: `ALL` is the
 * data privileges of that level; `unknown` is the first privilege named that is not one of them.
 */
export function grantLevel(grant: GrantPermission): { onTable: boolean; privileges: string[]; unknown?: string } {
  const onTable = grant.schema !== '*' && grant.table !== '*';
  return { onTable, ...expandPrivileges(grant.privileges, onTable ? MYSQL_TABLE_PRIVILEGES : MYSQL_DATABASE_PRIVILEGES) };
}
