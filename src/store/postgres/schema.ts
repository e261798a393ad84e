/**
 * The PostgreSQL store's schema: its own schema `sy` in the database SY_STORE names, built
 * by numbered migrations that `sy init` applies in order, each recorded in
 * sy.schema_migrations. Other commands only check the version: they need no DDL right, so
 * the role they run as can be one that reads and writes rows only.
 *
 * The columns are SQLite's, with the same names and meanings, so that a row's MAC is the same
 * value in both stores and `sy store copy` moves rows across unchanged. Everything a payload
 * holds is sealed (bytea); what stays plain (paths, states, times, user names) is covered by
 * each row's MAC.
 */
import { storeError } from '../../errors.js';
import type { Sql } from './connection.js';
import { tampered } from './meta.js';
import { CLIENTS_TABLE } from './clients.js';
import { DAEMONS_TABLE } from './pools.js';

/** The newest migration this sy knows. */
export const SCHEMA_VERSION = 3;
/** The migration that added the clients of the lease API: init writes their census when it applies it. */
export const CLIENTS_VERSION = 3;

/**
 * Taken for the length of `sy init`'s transaction (pg_advisory_xact_lock): two inits at once,
 * from any machine, run their migrations one after the other. ('sy' 'st' 'or' 'e' in ASCII.)
 */
const MIGRATION_LOCK = '8320789627946021477';

interface Migration {
  version: number;
  statements: string[];
}

const MIGRATIONS: Migration[] = [
  {
    version: 1,
    statements: [
      `CREATE TABLE sy.meta (
         key   text PRIMARY KEY,
         value text NOT NULL
       )`,
      `CREATE TABLE sy.secrets (
         id              text PRIMARY KEY,
         path            text NOT NULL UNIQUE,
         kind            text NOT NULL,
         linked_path     text,
         current_version integer NOT NULL,
         created         text NOT NULL,
         last_modified   text NOT NULL,
         mac             bytea NOT NULL
       )`,
      'CREATE INDEX secrets_linked_path ON sy.secrets (linked_path) WHERE linked_path IS NOT NULL',
      `CREATE TABLE sy.secret_versions (
         secret_id text NOT NULL REFERENCES sy.secrets (id) ON DELETE CASCADE,
         version   integer NOT NULL,
         created   text NOT NULL,
         sealed    bytea NOT NULL,
         mac       bytea NOT NULL,
         PRIMARY KEY (secret_id, version)
       )`,
      `CREATE TABLE sy.leases (
         id              text PRIMARY KEY,
         secret_id       text NOT NULL,
         base_id         text NOT NULL,
         path            text NOT NULL,
         pool            text NOT NULL,
         engine          text NOT NULL,
         target          text NOT NULL,
         username        text NOT NULL,
         state           text NOT NULL,
         created_at      bigint NOT NULL,
         expires_at      bigint NOT NULL,
         max_expires_at  bigint NOT NULL,
         attempts        integer NOT NULL DEFAULT 0,
         next_attempt_at bigint,
         last_error      text,
         ended_at        bigint,
         owner_pid       integer,
         owner_host      text,
         claimant        text,
         claimed_until   bigint,
         sealed          bytea NOT NULL,
         mac             bytea NOT NULL
       )`,
      'CREATE INDEX leases_due ON sy.leases (state, expires_at)',
      'CREATE INDEX leases_retry ON sy.leases (state, next_attempt_at)',
      'CREATE INDEX leases_claims ON sy.leases (state, claimed_until)',
      'CREATE INDEX leases_secret ON sy.leases (secret_id, state)',
      'CREATE INDEX leases_base ON sy.leases (base_id, state)',
      'CREATE INDEX leases_path ON sy.leases (path text_pattern_ops)',
      'CREATE INDEX leases_pool ON sy.leases (pool, state)',
      // The audit chain: line n is the n-th line of the log, stored as the exact text whose
      // hash the chain covers. Where it ends is the authenticated meta row audit_head.
      `CREATE TABLE sy.audit_lines (
         seq  bigint PRIMARY KEY,
         line text NOT NULL
       )`,
    ],
  },
  // The pool registry of `sy daemon --pool` (pools.ts): plain rows, read for listings and warnings only.
  { version: 2, statements: [DAEMONS_TABLE] },
  // The clients of the lease API, and each lease's client (in its MAC when set: rows.ts).
  // Their census is an authenticated meta row: init writes it with the key (init.ts).
  {
    version: 3,
    statements: [
      CLIENTS_TABLE,
      'ALTER TABLE sy.leases ADD COLUMN client text',
      'CREATE INDEX leases_client ON sy.leases (client, state) WHERE client IS NOT NULL',
    ],
  },
];

/** What `sy init` found and did. */
export interface Migrated {
  /** The version before: 0 when there was no schema. */
  from: number;
  to: number;
}

/**
 * Brings the schema to SCHEMA_VERSION, inside the caller's transaction, under the migration
 * lock. A schema written by a newer sy is refused (exit 4), never touched.
 */
export async function migrate(sql: Sql, location: string): Promise<Migrated> {
  await sql('SELECT pg_advisory_xact_lock($1::bigint)', [MIGRATION_LOCK]);
  const [{ has_schema, has_migrations }] = await sql<{ has_schema: boolean; has_migrations: boolean }>(
    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'sy') AS has_schema, to_regclass('sy.schema_migrations') IS NOT NULL AS has_migrations",
  );
  // Created only when missing: CREATE SCHEMA IF NOT EXISTS would still need the CREATE right.
  if (!has_schema) await sql('CREATE SCHEMA sy');
  if (!has_migrations) {
    await sql(`CREATE TABLE sy.schema_migrations (
                 version    integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now(),
                 sy_version text NOT NULL
               )`);
  }
  const from = await schemaVersion(sql);
  if (from > SCHEMA_VERSION) throw tooNew(location);
  for (const migration of MIGRATIONS) {
    if (migration.version <= from) continue;
    try {
      for (const statement of migration.statements) await sql(statement);
    } catch (error) {
      // What the migration makes is there already: sy.schema_migrations was set back.
      if (DUPLICATE_OBJECT.has((error as { code?: string }).code ?? '')) throw tampered('its schema version');
      throw error;
    }
    await sql('INSERT INTO sy.schema_migrations (version, sy_version) VALUES ($1, $2)', [migration.version, syVersion()]);
  }
  await revokeFromPublic(sql);
  return { from, to: Math.max(from, SCHEMA_VERSION) };
}

/** duplicate_table, duplicate_object, duplicate_column */
const DUPLICATE_OBJECT = new Set(['42P07', '42710', '42701']);

/**
 * What default privileges (ALTER DEFAULT PRIVILEGES ... TO PUBLIC) gave every role of the
 * cluster on schema sy and its tables, taken back: a lease user or any other login role that
 * may connect to the database must not read or write the store's rows. Only on what this
 * role may change (it made them, or owns them through a role); grants to named roles (the
 * app role of store-role.sql) stay.
 */
async function revokeFromPublic(sql: Sql): Promise<void> {
  const rows = await sql<{ statement: string }>(
    `SELECT 'REVOKE ALL ON SCHEMA sy FROM PUBLIC' AS statement FROM pg_namespace
      WHERE nspname = 'sy' AND pg_has_role(nspowner, 'USAGE') AND EXISTS (SELECT 1 FROM aclexplode(nspacl) WHERE grantee = 0)
     UNION ALL
     SELECT format('REVOKE ALL ON %s %s FROM PUBLIC', CASE relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, oid::regclass) FROM pg_class
      WHERE relnamespace = 'sy'::regnamespace AND relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND pg_has_role(relowner, 'USAGE')
        AND EXISTS (SELECT 1 FROM aclexplode(relacl) WHERE grantee = 0)`,
  );
  for (const { statement } of rows) await sql(statement);
}

export async function schemaVersion(sql: Sql): Promise<number> {
  const [{ version }] = await sql<{ version: number | null }>('SELECT max(version) AS version FROM sy.schema_migrations');
  return version ?? 0;
}

export const tooNew = (location: string) =>
  storeError('store_too_new', `The store at ${location} was written by a newer version of sy.`, 'Upgrade sy to open it.');

export const tooOld = (location: string, version: number) =>
  storeError('store_too_old', `The store at ${location} has schema ${version}; this sy needs schema ${SCHEMA_VERSION}.`,
    'Run `sy init` with this version of sy to upgrade it (it keeps every record).');

/** Set by the bundler; tsc's output reads package.json (see src/index.ts). */
declare const SY_VERSION: string | undefined;
function syVersion(): string {
  return typeof SY_VERSION === 'string' ? SY_VERSION : 'dev';
}
