import { usageError } from '../errors.js';
import {
  BASE_TYPES,
  ENGINES,
  type Engine,
  engineOfType,
  maxUserPrefixLength,
} from '../targets/engines.js';
import { parseDuration } from '../util/duration.js';
import { canonicalPath } from './path.js';

/** The longest lease sy hands out, as in the SyVault API. */
export const MAX_LEASE_SECONDS = 86400;
export const DEFAULT_LEASE_SECONDS = 3600;
export const DEFAULT_POOL = 'default';

export type SecretKind = 'base' | 'dynamic' | 'static';

export type Attributes = Record<string, unknown>;
export type SecretData = Record<string, unknown>;

export interface GrantPermission {
  /** Upper-case privileges, each checked against the engine's list. */
  privileges: string[];
  /** `*` or an identifier. */
  schema: string;
  /** `*` or an identifier. */
  table: string;
}

export interface DynamicRecipe {
  basePath: string;
  grants: GrantPermission[];
  ttl: number;
  maxTtl: number;
  pool: string;
  userPrefix?: string;
  creationStatements?: string[];
  revocationStatements?: string[];
}

export interface SslSettings {
  ca?: string;
  cert?: string;
  key?: string;
  rejectUnauthorized?: boolean;
  servername?: string;
}

export interface BaseConnection {
  engine: Engine;
  host: string;
  port: number;
  username: string;
  password: string;
  database?: string;
  ssl?: true | SslSettings;
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;
const USER_PREFIX = /^[A-Za-z_][A-Za-z0-9_]*$/;
const POOL = /^[A-Za-z0-9._-]{1,64}$/;
const PLACEHOLDER = /\{\{\s*([a-zA-Z_]+)\s*\}\}/g;
const KNOWN_PLACEHOLDERS = new Set(['name', 'password', 'expiration']);

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Dynamic if it links to a base secret, base if it names a database type, static otherwise. */
export function kindOf(attributes: Attributes): SecretKind {
  if (attributes.linkConfig !== undefined) return 'dynamic';
  if (attributes.type !== undefined) return 'base';
  return 'static';
}

/** Throws a usage error naming the field when a base secret is incomplete or malformed. */
export function parseBaseConnection(attributes: Attributes, data: SecretData): BaseConnection {
  const engine = engineOfType(attributes.type);
  if (!engine) {
    const shown = typeof attributes.type === 'string' ? `"${attributes.type.slice(0, 40)}"` : 'given';
    throw usageError('invalid_secret', `The secret type ${shown} is not supported: use one of ${BASE_TYPES.join(', ')}.`);
  }
  for (const field of ['host', 'port', 'username', 'password']) {
    if (data[field] === undefined || data[field] === null) {
      throw usageError('invalid_secret', `A ${ENGINES[engine].label} base secret needs data.${field}.`);
    }
  }
  const host = data.host;
  if (typeof host !== 'string' || !/^[^\s/@?#]{1,255}$/.test(host)) {
    throw usageError('invalid_secret', 'data.host must be a host name or address.');
  }
  const port = typeof data.port === 'string' && /^\d+$/.test(data.port) ? Number(data.port) : data.port;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw usageError('invalid_secret', 'data.port must be a whole number between 1 and 65535.');
  }
  if (typeof data.username !== 'string' || data.username.length === 0) {
    throw usageError('invalid_secret', 'data.username must be a non-empty string.');
  }
  if (typeof data.password !== 'string') {
    throw usageError('invalid_secret', 'data.password must be a string.');
  }
  if (data.database !== undefined && (typeof data.database !== 'string' || data.database.length === 0 || data.database.length > 64)) {
    throw usageError('invalid_secret', 'data.database must be a database name.');
  }
  return {
    engine,
    host,
    port,
    username: data.username,
    password: data.password,
    database: data.database as string | undefined,
    ssl: parseSsl(data.ssl, engine),
  };
}

function parseSsl(value: unknown, engine: Engine): BaseConnection['ssl'] {
  if (value === undefined || value === false || value === null) return undefined;
  if (value === true) return true;
  if (!isObject(value)) {
    throw usageError('invalid_secret', 'data.ssl must be true, false or an object such as {"ca": "...", "rejectUnauthorized": true}.');
  }
  const ssl: SslSettings = {};
  for (const [key, v] of Object.entries(value)) {
    if (key === 'rejectUnauthorized') {
      if (typeof v !== 'boolean') throw usageError('invalid_secret', 'data.ssl.rejectUnauthorized must be true or false.');
      ssl.rejectUnauthorized = v;
    } else if (key === 'servername' && engine === 'mysql') {
      // mysql2 checks the certificate against the host it connects to, and nothing else.
      throw usageError('invalid_secret', 'data.ssl.servername is for PostgreSQL only: for MySQL/MariaDB, write the name the certificate carries as data.host.');
    } else if (key === 'ca' || key === 'cert' || key === 'key' || key === 'servername') {
      if (typeof v !== 'string') throw usageError('invalid_secret', `data.ssl.${key} must be a string.`);
      ssl[key] = v;
    } else {
      throw usageError('invalid_secret', `data.ssl.${key.slice(0, 40)} is not a TLS setting sy knows (ca, cert, key, rejectUnauthorized, servername).`);
    }
  }
  return ssl;
}

/** The link of a dynamic secret, checked before its base is looked up. */
export function linkedBasePath(attributes: Attributes): string {
  const link = attributes.linkConfig;
  if (!isObject(link)) {
    throw usageError('invalid_secret', 'attributes.linkConfig must be {"linkType": "dynamic", "linkedSecret": "<base path>"}.');
  }
  if (link.linkType !== 'dynamic') {
    throw usageError('invalid_secret', 'attributes.linkConfig.linkType must be "dynamic".');
  }
  if (typeof link.linkedSecret !== 'string' || link.linkedSecret.length === 0) {
    throw usageError('invalid_secret', 'attributes.linkConfig.linkedSecret must name a base secret.');
  }
  return canonicalPath(link.linkedSecret);
}

/**
 * Validates a dynamic secret against the engine of its base. Everything that will reach SQL
 * (privileges, schema and table names, the user prefix) is checked against a closed list or
 * a strict character set here, so an injection attempt is refused before anything is stored.
 */
export function parseDynamicRecipe(attributes: Attributes, data: SecretData, engine: Engine): DynamicRecipe {
  if (Object.keys(data).length > 0) {
    throw usageError('invalid_secret', 'A dynamic secret holds no data: put its settings in attributes and leave data empty.');
  }
  const basePath = linkedBasePath(attributes);
  if (attributes.grantPermissions === undefined) {
    throw usageError('invalid_secret', 'A dynamic secret needs attributes.grantPermissions, e.g. {"what": "SELECT", "where": "*.*"}.');
  }
  const grantList = Array.isArray(attributes.grantPermissions) ? attributes.grantPermissions : [attributes.grantPermissions];
  if (grantList.length === 0) {
    throw usageError('invalid_secret', 'attributes.grantPermissions must list at least one grant.');
  }
  const grants = grantList.map((grant) => parseGrant(grant, engine));

  const maxTtl = attributes.maxTtl === undefined ? MAX_LEASE_SECONDS : parseDuration(asDurationInput(attributes.maxTtl, 'attributes.maxTtl'), 'attributes.maxTtl');
  if (maxTtl > MAX_LEASE_SECONDS) {
    throw usageError('invalid_secret', `attributes.maxTtl may be at most ${MAX_LEASE_SECONDS} seconds (24 hours).`);
  }
  const ttl = attributes.ttl === undefined ? Math.min(DEFAULT_LEASE_SECONDS, maxTtl) : parseDuration(asDurationInput(attributes.ttl, 'attributes.ttl'), 'attributes.ttl');
  if (ttl > maxTtl) {
    throw usageError('invalid_secret', `attributes.ttl (${ttl}s) is longer than the maximum of ${maxTtl} seconds.`);
  }
  const pool = attributes.pool === undefined ? DEFAULT_POOL : attributes.pool;
  if (typeof pool !== 'string' || !POOL.test(pool)) {
    throw usageError('invalid_secret', 'attributes.pool must be 1-64 letters, digits, dots, dashes or underscores.');
  }
  let userPrefix: string | undefined;
  if (attributes.userPrefix !== undefined) {
    const limit = maxUserPrefixLength(engine);
    if (typeof attributes.userPrefix !== 'string' || !USER_PREFIX.test(attributes.userPrefix)) {
      throw usageError('invalid_secret', 'attributes.userPrefix may hold only letters, digits and underscores, and must not start with a digit.');
    }
    if (attributes.userPrefix.length > limit) {
      throw usageError('invalid_secret', `attributes.userPrefix may be at most ${limit} characters on ${ENGINES[engine].label}, so the random part of user names is never cut.`);
    }
    userPrefix = attributes.userPrefix;
  }
  return {
    basePath,
    grants,
    ttl,
    maxTtl,
    pool,
    userPrefix,
    creationStatements: parseStatements(attributes.creationStatements, 'creationStatements'),
    revocationStatements: parseStatements(attributes.revocationStatements, 'revocationStatements'),
  };
}

function asDurationInput(value: unknown, field: string): string | number {
  if (typeof value === 'number' || typeof value === 'string') return value;
  throw usageError('invalid_secret', `${field} must be a number of seconds.`);
}

function parseGrant(grant: unknown, engine: Engine): GrantPermission {
  if (!isObject(grant) || typeof grant.what !== 'string' || typeof grant.where !== 'string') {
    throw usageError('invalid_secret', 'Each grantPermissions entry must be {"what": "<privileges>", "where": "<schema>.<table>"}.');
  }
  const profile = ENGINES[engine];
  const privileges = grant.what.split(',').map((p) => p.trim().replace(/\s+/g, ' ').toUpperCase());
  for (const privilege of privileges) {
    if (!profile.privileges.has(privilege)) {
      const shown = privilege.length > 40 ? `${privilege.slice(0, 37)}...` : privilege;
      throw usageError('invalid_secret', `grantPermissions.what: "${shown}" is not a ${profile.label} privilege sy can grant.`);
    }
  }
  const where = grant.where.trim();
  const match = /^([^.]+)\.([^.]+)$/.exec(where);
  const schema = match?.[1];
  const table = match?.[2];
  const validPart = (part: string | undefined): part is string => part === '*' || (part !== undefined && IDENTIFIER.test(part));
  if (!validPart(schema) || !validPart(table) || (schema === '*' && table !== '*')) {
    throw usageError('invalid_secret', 'grantPermissions.where must be "*.*", "<schema>.*" or "<schema>.<table>", with plain identifiers.');
  }
  return { privileges, schema, table };
}

function parseStatements(value: unknown, field: string): string[] | undefined {
  if (value === undefined) return undefined;
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list) || list.length === 0 || list.some((s) => typeof s !== 'string' || s.trim() === '')) {
    throw usageError('invalid_secret', `attributes.${field} must be a SQL statement or a list of them.`);
  }
  for (const statement of list as string[]) {
    for (const [, name] of statement.matchAll(PLACEHOLDER)) {
      if (!KNOWN_PLACEHOLDERS.has(name)) {
        throw usageError('invalid_secret', `attributes.${field} uses {{${name}}}: only {{name}}, {{password}} and {{expiration}} are known.`);
      }
    }
  }
  return list as string[];
}

