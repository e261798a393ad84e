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

const POSTGRES_TABLE_PRIVILEGES = ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER', 'ALL', 'ALL PRIVILEGES'];

// Database- and table-level privileges plus a few harmless global ones. Privileges that let
// a temporary user escalate (SUPER, FILE, CREATE USER, GRANT OPTION, SHUTDOWN...) are refused.
const MYSQL_PRIVILEGES = [
  'SELECT', 'INSERT', 'UPDATE', 'DELETE', 'CREATE', 'DROP', 'INDEX', 'ALTER', 'REFERENCES', 'TRIGGER',
  'CREATE TEMPORARY TABLES', 'LOCK TABLES', 'EXECUTE', 'CREATE VIEW', 'SHOW VIEW', 'CREATE ROUTINE',
  'ALTER ROUTINE', 'EVENT', 'PROCESS', 'SHOW DATABASES', 'REPLICATION CLIENT', 'ALL', 'ALL PRIVILEGES',
];

export const ENGINES: Record<Engine, EngineProfile> = {
  postgresql: {
    engine: 'postgresql',
    label: 'PostgreSQL',
    maxUserName: 63,
    privileges: new Set(POSTGRES_TABLE_PRIVILEGES),
    defaultPort: 5432,
    urlScheme: 'postgresql',
  },
  mysql: {
    engine: 'mysql',
    label: 'MySQL/MariaDB',
    maxUserName: 32,
    privileges: new Set(MYSQL_PRIVILEGES),
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
