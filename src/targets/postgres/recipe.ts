/**
 * What on a PostgreSQL server would keep a recipe from being granted as written, read without
 * changing anything: the schemas and tables it reaches, the admin's grant options, and the
 * `reassignTo` role.
 */
import { POSTGRES_DATA_PRIVILEGES, POSTGRES_SCHEMA_PRIVILEGES } from '../../model/engines.js';
import type { GrantPermission } from '../../model/secret.js';
import { expandPrivileges } from '../shared.js';
import type { RecipeCheckOptions } from '../target.js';
import { reassignProblem } from './reassign.js';
import type { PgSession } from './session.js';


/**
 * Whether a pg_namespace row is the schema of a sy store (SY_STORE in this database): never in
 * a lease's reach, whatever the recipe says. `*.*` passes it by, and naming it is refused: a
 * lease that could write the store's rows could stop every revocation, its own included.
 */
export const SY_STORE_SCHEMA = "(nspname OPERATOR(pg_catalog.=) 'sy' AND pg_catalog.to_regclass('sy.schema_migrations') IS NOT NULL)";

/** A pg_namespace row that `*.*` reaches: not a system schema, not a sy store. */
export const ORDINARY_SCHEMA = `nspname OPERATOR(pg_catalog.!~~) 'pg\\_%' AND nspname OPERATOR(pg_catalog.<>) 'information_schema' AND NOT ${SY_STORE_SCHEMA}`;

/** The relkinds a grant on tables reaches, as a "char"[] for `relkind OPERATOR(pg_catalog.=) ANY (...)`. */
export const TABLE_KINDS = `'{r,p,v,m,f}'::pg_catalog."char"[]`;

export const storeSchemaRefused = (schema: string, where: string): string => `schema ${schema} holds a sy store at ${where}, which no lease may reach`;

/** See Target.checkRecipe: read-only, one problem per sentence. */
export async function checkRecipe(session: PgSession, grants: GrantPermission[], options: RecipeCheckOptions = {}): Promise<string[]> {
  const problems: string[] = [];
  for (const grant of grants) {
    for (const problem of await grantProblems(session, grant)) if (!problems.includes(problem)) problems.push(problem);
  }
  if (options.reassignTo !== undefined) {
    const reason = await reassignProblem(session, options.reassignTo, 'check the reassignTo role');
    if (reason !== undefined) problems.push(`reassignTo: the role "${options.reassignTo}" at ${session.address} ${reason}.`);
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
async function grantProblems(session: PgSession, grant: GrantPermission): Promise<string[]> {
  const label = `${session.address}/${session.database}`;
  const action = `check the grant of ${grant.privileges.join(', ')} on ${grant.schema}.${grant.table}`;
  const onSchema = grant.privileges.filter((p) => POSTGRES_SCHEMA_PRIVILEGES.includes(p));
  const { rows: schemas } = await session.query<{ name: string; usable: boolean; store: boolean; missing: string[] }>(
    `SELECT nspname AS name,
            pg_catalog.has_schema_privilege('public', oid, 'USAGE') OR pg_catalog.has_schema_privilege(oid, 'USAGE WITH GRANT OPTION') AS usable,
            ${SY_STORE_SCHEMA} AS store,
            ARRAY(SELECT p FROM pg_catalog.unnest($2::pg_catalog.text[]) AS p
                   WHERE NOT (pg_catalog.has_schema_privilege('public', oid, p)
                              OR pg_catalog.has_schema_privilege(oid, p OPERATOR(pg_catalog.||) ' WITH GRANT OPTION'))) AS missing
         FROM pg_catalog.pg_namespace
        WHERE CASE WHEN $1::pg_catalog.text IS NULL THEN ${ORDINARY_SCHEMA} ELSE nspname OPERATOR(pg_catalog.=) $1::pg_catalog.text END
        ORDER BY nspname`,
    [grant.schema === '*' ? null : grant.schema, onSchema],
    action,
  );
  const store = schemas.find((s) => s.store);
  if (store) return [`grantPermissions: ${storeSchemaRefused(store.name, label)}.`];
  if (schemas.length === 0) {
    return [
      grant.schema === '*'
        ? `grantPermissions: *.* reaches nothing on ${label}: it has no schema but the system ones.`
        : `grantPermissions: schema ${grant.schema} does not exist on ${label}.`,
    ];
  }
  const named = grant.table === '*' ? null : grant.table;
  const { rows: tables } = await session.query<{ schema: string; name: string; missing: string[] }>(
    `SELECT * FROM (
         SELECT n.nspname AS schema, c.relname AS name,
                ARRAY(SELECT p FROM pg_catalog.unnest($3::pg_catalog.text[]) WITH ORDINALITY AS u(p, i)
                       WHERE NOT (pg_catalog.has_table_privilege('public', c.oid, p)
                                  OR pg_catalog.has_table_privilege(c.oid, p OPERATOR(pg_catalog.||) ' WITH GRANT OPTION'))
                       ORDER BY i) AS missing
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
          WHERE n.nspname OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])
            AND CASE WHEN $2::pg_catalog.text IS NULL THEN c.relkind OPERATOR(pg_catalog.=) ANY (${TABLE_KINDS})
                     ELSE c.relname OPERATOR(pg_catalog.=) $2::pg_catalog.text
                          AND (c.relkind OPERATOR(pg_catalog.=) ANY (${TABLE_KINDS}) OR c.relkind OPERATOR(pg_catalog.=) 'S') END
       ) AS t
        WHERE pg_catalog.cardinality(missing) OPERATOR(pg_catalog.>) 0 OR $2::pg_catalog.text IS NOT NULL
        ORDER BY schema, name`,
    [schemas.map((s) => s.name), named, expandPrivileges(grant.privileges.filter((p) => !onSchema.includes(p)), POSTGRES_DATA_PRIVILEGES).privileges],
    action,
  );
  const problems: string[] = [];
  for (const schema of schemas) {
    if (!schema.usable) problems.push(`grantPermissions: the admin ${session.conn.username} does not hold USAGE on schema ${schema.name} WITH GRANT OPTION.`);
    if (schema.missing.length > 0) {
      problems.push(`grantPermissions: the admin ${session.conn.username} does not hold ${schema.missing.join(', ')} on schema ${schema.name} WITH GRANT OPTION.`);
    }
    for (const table of tables.filter((t) => t.schema === schema.name && t.missing.length > 0)) {
      problems.push(`grantPermissions: the admin ${session.conn.username} does not hold ${table.missing.join(', ')} on ${table.schema}.${table.name} WITH GRANT OPTION.`);
    }
  }
  if (named !== null && tables.length === 0) problems.push(`grantPermissions: table ${grant.schema}.${named} does not exist on ${label}.`);
  return problems;
}
