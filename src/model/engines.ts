/**
 * What sy knows about each database engine without loading its driver: names, limits and
 * the privileges a dynamic secret may hand out. Validation uses this at create time so an
 * invalid recipe never reaches a target.
 */
export type Engine = 'postgresql' | 'mysql';

export const ENGINE_OF_TYPE: Record<string, Engine> = {
  postgresql: 'postgresql',
  postgres: 'postgresql',
  mysql: 'mysql',
  mariadb: 'mysql',
};

export const BASE_TYPES = Object.keys(ENGINE_OF_TYPE);

export interface EngineProfile {
  engine: Engine;
  label: string;
  /** Longest user name the server accepts. */
  maxUserName: number;
  privileges: ReadonlySet<string>;
  defaultPort: number;
  urlScheme: string;
}

/**
 * PostgreSQL table privileges a lease may hold. TRIGGER is not among them: a trigger runs its
 * function as whoever writes the table, so a lease holding it could run its own code as the
 * admin. MAINTAIN (PostgreSQL 17) is administration, not data.
 */
export const POSTGRES_DATA_PRIVILEGES = ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES'];

/**
 * PostgreSQL schema privileges a lease may hold, named only (never part of `ALL`) and only on
 * `s.*` or `*.*`: `CREATE` lets a lease create objects in the schema (migrations,
 * `pgbench -i`); they are its own, so revoking it drops them (or hands them to `reassignTo`).
 */
export const POSTGRES_SCHEMA_PRIVILEGES = ['CREATE'];

/**
 * MySQL/MariaDB privileges a lease may hold: data privileges at the database or table level
 * only. Global and administrative ones (SUPER, FILE, PROCESS, CREATE USER, GRANT OPTION,
 * SHUTDOWN, SHOW DATABASES, REPLICATION ...) are refused.
 */
export const MYSQL_TABLE_PRIVILEGES = ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'CREATE', 'DROP', 'INDEX', 'ALTER', 'REFERENCES', 'TRIGGER', 'CREATE VIEW', 'SHOW VIEW'];
export const MYSQL_DATABASE_PRIVILEGES = [
  ...MYSQL_TABLE_PRIVILEGES,
  'CREATE TEMPORARY TABLES', 'LOCK TABLES', 'EXECUTE', 'CREATE ROUTINE', 'ALTER ROUTINE', 'EVENT',
];

/** `ALL` never means more than the data privileges of the level named. */
export const ALL_PRIVILEGES = new Set(['ALL', 'ALL PRIVILEGES']);

/** Schemas (PostgreSQL) or databases (MySQL) a lease never reaches, compared in lower case. */
export function isSystemSchema(engine: Engine, name: string): boolean {
  const lower = name.toLowerCase();
  if (engine === 'postgresql') return lower.startsWith('pg_') || lower === 'information_schema';
  return ['mysql', 'sys', 'performance_schema', 'information_schema'].includes(lower);
}

export const ENGINES: Record<Engine, EngineProfile> = {
  postgresql: {
    engine: 'postgresql',
    label: 'PostgreSQL',
    maxUserName: 63,
    privileges: new Set([...POSTGRES_DATA_PRIVILEGES, ...POSTGRES_SCHEMA_PRIVILEGES, ...ALL_PRIVILEGES]),
    defaultPort: 5432,
    urlScheme: 'postgresql',
  },
  mysql: {
    engine: 'mysql',
    label: 'MySQL/MariaDB',
    maxUserName: 32,
    privileges: new Set([...MYSQL_DATABASE_PRIVILEGES, ...ALL_PRIVILEGES]),
    defaultPort: 3306,
    urlScheme: 'mysql',
  },
};

export function engineOfType(type: unknown): Engine | undefined {
  return typeof type === 'string' ? ENGINE_OF_TYPE[type.toLowerCase()] : undefined;
}

/**
 * Every user sy creates is named `<prefix><10 random chars>_sy<reap-after>`, where the last
 * part is the Unix time (base 36, 7 characters) after which a reaper may drop the user even
 * if the local ledger is lost. The random part is never truncated: the prefix is limited instead.
 */
export const RANDOM_PART_LENGTH = 10;
export const NAME_SUFFIX_LENGTH = '_sy'.length + 7;
export const DEFAULT_USER_PREFIX = 'sy_';

export function maxUserPrefixLength(engine: Engine): number {
  return ENGINES[engine].maxUserName - RANDOM_PART_LENGTH - NAME_SUFFIX_LENGTH;
}
