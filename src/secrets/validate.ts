import { createPublicKey } from 'node:crypto';
import { usageError } from '../errors.js';
import { BASE_TYPES, ENGINES, type Engine, engineOfType, isSystemSchema, maxUserPrefixLength, MYSQL_TABLE_PRIVILEGES } from '../model/engines.js';
import { parseDuration } from '../util/duration.js';
import { isObject } from '../util/object.js';
import { canonicalPath } from './path.js';
import {
  type Attributes,
  type BaseConnection,
  DEFAULT_CONNECTION_LIMIT,
  DEFAULT_LEASE_SECONDS,
  DEFAULT_POOL,
  type DynamicRecipe,
  type GrantPermission,
  MAX_CONNECTION_LIMIT,
  MAX_LEASE_SECONDS,
  MYSQL_IDENTIFIED_BY_PASSWORD,
  PLACEHOLDER,
  type SecretData,
  type SecretKind,
  type SslSettings,
} from '../model/secret.js';

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;
const USER_PREFIX = /^[A-Za-z_][A-Za-z0-9_]*$/;
const POOL = /^[A-Za-z0-9._-]{1,64}$/;
const KNOWN_PLACEHOLDERS = new Set(['name', 'password', 'expiration']);

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
  const host = parseHost(data.host);
  const port = parsePort(data.port);
  if (typeof data.username !== 'string' || data.username.length === 0) {
    throw usageError('invalid_secret', 'data.username must be a non-empty string.');
  }
  if (typeof data.password !== 'string') {
    throw usageError('invalid_secret', 'data.password must be a string.');
  }
  if (data.database !== undefined) parseDatabaseName(data.database);
  return {
    engine,
    host,
    port,
    username: data.username,
    password: data.password,
    database: data.database as string | undefined,
    ssl: parseSsl(data.ssl, engine),
    ...(data.serverPublicKey === undefined ? {} : { serverPublicKey: parseServerPublicKey(data.serverPublicKey, engine) }),
  };
}

/**
 * MySQL/MariaDB: the server's RSA public key, PEM, to which the admin's password is encrypted
 * when the server asks for it without verified TLS (caching_sha2_password, sha256_password).
 */
function parseServerPublicKey(value: unknown, engine: Engine): string {
  if (engine !== 'mysql') throw usageError('invalid_secret', 'data.serverPublicKey is for MySQL/MariaDB only.');
  let rsa = false;
  try {
    rsa = typeof value === 'string' && createPublicKey(value).asymmetricKeyType === 'rsa';
  } catch {
    // Not a key: refused below.
  }
  if (!rsa) throw usageError('invalid_secret', "data.serverPublicKey must be the server's RSA public key in PEM (-----BEGIN PUBLIC KEY-----).");
  return value as string;
}

/** The checks of single fields are exported so that the wizard can check each answer as it is given. */
export function parseHost(value: unknown): string {
  if (typeof value !== 'string' || !/^[^\s/@?#]{1,255}$/.test(value)) {
    throw usageError('invalid_secret', 'data.host must be a host name or address.');
  }
  return value;
}

export function parsePort(value: unknown): number {
  const port = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw usageError('invalid_secret', 'data.port must be a whole number between 1 and 65535.');
  }
  return port;
}

export function parseDatabaseName(value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 64) {
    throw usageError('invalid_secret', 'data.database must be a database name.');
  }
  return value;
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

  const maxTtl = attributes.maxTtl === undefined ? MAX_LEASE_SECONDS : parseMaxTtl(attributes.maxTtl);
  const ttl = attributes.ttl === undefined ? Math.min(DEFAULT_LEASE_SECONDS, maxTtl) : parseDuration(asDurationInput(attributes.ttl, 'attributes.ttl'), 'attributes.ttl');
  if (ttl > maxTtl) {
    throw usageError('invalid_secret', `attributes.ttl (${ttl}s) is longer than the maximum of ${maxTtl} seconds.`);
  }
  const pool = attributes.pool === undefined ? DEFAULT_POOL : parsePool(attributes.pool);
  const userPrefix = attributes.userPrefix === undefined ? undefined : parseUserPrefix(attributes.userPrefix, engine);
  let reassignTo: string | undefined;
  if (attributes.reassignTo !== undefined) {
    if (engine !== 'postgresql') {
      throw usageError('invalid_secret', 'attributes.reassignTo is for PostgreSQL only: MySQL/MariaDB objects have no owner to hand over.');
    }
    if (typeof attributes.reassignTo !== 'string' || !IDENTIFIER.test(attributes.reassignTo) || isSystemSchema(engine, attributes.reassignTo)) {
      throw usageError('invalid_secret', 'attributes.reassignTo must name a role with a plain identifier (letters, digits, _ and $).');
    }
    reassignTo = attributes.reassignTo;
  }
  const creationStatements = parseStatements(attributes.creationStatements, 'creationStatements');
  if (creationStatements && engine === 'mysql') checkMysqlPasswordPlaceholders(creationStatements);
  const connectionLimit = attributes.connectionLimit === undefined ? DEFAULT_CONNECTION_LIMIT : parseConnectionLimit(attributes.connectionLimit);
  return {
    basePath,
    grants,
    ttl,
    maxTtl,
    pool,
    userPrefix,
    creationStatements,
    revocationStatements: parseStatements(attributes.revocationStatements, 'revocationStatements'),
    reassignTo,
    connectionLimit,
  };
}

/** `connectionLimit`: a whole number of sessions from 1 to MAX_CONNECTION_LIMIT. */
export function parseConnectionLimit(value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_CONNECTION_LIMIT) {
    throw usageError('invalid_secret', `attributes.connectionLimit must be a whole number of sessions from 1 to ${MAX_CONNECTION_LIMIT}.`);
  }
  return value;
}

export function parseMaxTtl(value: unknown): number {
  const maxTtl = parseDuration(asDurationInput(value, 'attributes.maxTtl'), 'attributes.maxTtl');
  if (maxTtl > MAX_LEASE_SECONDS) {
    throw usageError('invalid_secret', `attributes.maxTtl may be at most ${MAX_LEASE_SECONDS} seconds (24 hours).`);
  }
  return maxTtl;
}

export function parsePool(value: unknown): string {
  if (typeof value !== 'string' || !POOL.test(value)) {
    throw usageError('invalid_secret', 'attributes.pool must be 1-64 letters, digits, dots, dashes or underscores.');
  }
  return value;
}

export function parseUserPrefix(value: unknown, engine: Engine): string {
  const limit = maxUserPrefixLength(engine);
  if (typeof value !== 'string' || !USER_PREFIX.test(value)) {
    throw usageError('invalid_secret', 'attributes.userPrefix may hold only letters, digits and underscores, and must not start with a digit.');
  }
  if (value.length > limit) {
    throw usageError('invalid_secret', `attributes.userPrefix may be at most ${limit} characters on ${ENGINES[engine].label}, so the random part of user names is never cut.`);
  }
  return value;
}

/**
 * MariaDB writes statements to its logs as sent, so sy sends a password hash instead of the
 * password; it can do that only where the password is the argument of IDENTIFIED BY.
 */
function checkMysqlPasswordPlaceholders(statements: string[]): void {
  for (const statement of statements) {
    const bare = statement.replace(MYSQL_IDENTIFIED_BY_PASSWORD, '');
    if (/\{\{\s*password\s*\}\}/.test(bare)) {
      throw usageError(
        'invalid_secret',
        "attributes.creationStatements: on MySQL/MariaDB {{password}} may appear only as IDENTIFIED BY '{{password}}', so it never reaches the server's logs in clear text.",
      );
    }
  }
}

function asDurationInput(value: unknown, field: string): string | number {
  if (typeof value === 'number' || typeof value === 'string') return value;
  throw usageError('invalid_secret', `${field} must be a number of seconds.`);
}

/** A comma-separated privilege list, each one on the engine's closed list. */
export function parsePrivileges(what: string, engine: Engine): string[] {
  const profile = ENGINES[engine];
  const privileges = what.split(',').map((p) => p.trim().replace(/\s+/g, ' ').toUpperCase());
  for (const privilege of privileges) {
    if (!profile.privileges.has(privilege)) {
      const shown = privilege.length > 40 ? `${privilege.slice(0, 37)}...` : privilege;
      // A hint for a slip of the keyboard, not for text that tries to reach SQL.
      const hint = /^[A-Z ]+$/.test(privilege) ? nearestName(privilege, [...profile.privileges]) : undefined;
      throw usageError('invalid_secret', `grantPermissions.what: "${shown}" is not a ${profile.label} privilege sy can grant${hint ? `; did you mean ${hint}?` : '.'}`);
    }
  }
  return privileges;
}

export function parseGrant(grant: unknown, engine: Engine): GrantPermission {
  if (!isObject(grant) || typeof grant.what !== 'string' || typeof grant.where !== 'string') {
    throw usageError('invalid_secret', 'Each grantPermissions entry must be {"what": "<privileges>", "where": "<schema>.<table>"}.');
  }
  const privileges = parsePrivileges(grant.what, engine);
  const where = grant.where.trim();
  const match = /^([^.]+)\.([^.]+)$/.exec(where);
  const schema = match?.[1];
  const table = match?.[2];
  const validPart = (part: string | undefined): part is string => part === '*' || (part !== undefined && IDENTIFIER.test(part));
  if (!validPart(schema) || !validPart(table) || (schema === '*' && table !== '*')) {
    throw usageError('invalid_secret', 'grantPermissions.where must be "*.*", "<schema>.*" or "<schema>.<table>", with plain identifiers.');
  }
  if (schema !== '*' && isSystemSchema(engine, schema)) {
    const kind = engine === 'postgresql' ? 'schema' : 'database';
    throw usageError('invalid_secret', `grantPermissions.where: "${schema}" is a system ${kind}, which a lease never reaches.`);
  }
  if (engine === 'postgresql' && table !== '*' && privileges.includes('CREATE')) {
    throw usageError('invalid_secret', `grantPermissions.what: CREATE is a privilege on a whole schema on PostgreSQL: grant it on "${schema}.*", not on a table.`);
  }
  if (engine === 'mysql' && table !== '*') {
    const databaseOnly = privileges.find((p) => !MYSQL_TABLE_PRIVILEGES.includes(p) && p !== 'ALL' && p !== 'ALL PRIVILEGES');
    if (databaseOnly) {
      throw usageError('invalid_secret', `grantPermissions.what: ${databaseOnly} can be granted only on a whole database ("${schema}.*"), not on a table.`);
    }
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


// ------------------------------------------------------------------ names sy knows

const DYNAMIC_ATTRIBUTES = ['linkConfig', 'grantPermissions', 'ttl', 'maxTtl', 'pool', 'userPrefix', 'reassignTo', 'creationStatements', 'revocationStatements', 'connectionLimit'];
const LINK_CONFIG_FIELDS = ['linkType', 'linkedSecret'];
const GRANT_FIELDS = ['what', 'where'];
const BASE_ATTRIBUTES = ['type'];
const BASE_DATA_FIELDS = ['host', 'port', 'username', 'password', 'database', 'ssl', 'serverPublicKey'];

/**
 * Refuses names that base and dynamic secrets do not have, naming the nearest known one
 * (`tll` → `ttl`): a misspelt optional attribute would otherwise be ignored in silence and
 * the default used. Static secrets keep free-form attributes, as in DSV, except for names
 * that look like a misspelt `linkConfig` or `type`: those would silently have made a
 * dynamic or base secret static. Run when a secret is written, never when it is used, so a
 * secret stored before this check still issues leases.
 */
export function checkFieldNames(attributes: Attributes, data: SecretData): void {
  const kind = kindOf(attributes);
  if (kind === 'dynamic') {
    checkNames(attributes, DYNAMIC_ATTRIBUTES, 'attributes', 'an attribute of a dynamic secret');
    if (isObject(attributes.linkConfig)) checkNames(attributes.linkConfig, LINK_CONFIG_FIELDS, 'attributes.linkConfig', 'a field of linkConfig');
    const grants = attributes.grantPermissions;
    if (Array.isArray(grants)) {
      grants.forEach((grant, i) => isObject(grant) && checkNames(grant, GRANT_FIELDS, `attributes.grantPermissions[${i}]`, 'a field of a grant'));
    } else if (isObject(grants)) {
      checkNames(grants, GRANT_FIELDS, 'attributes.grantPermissions', 'a field of a grant');
    }
  } else if (kind === 'base') {
    checkNames(attributes, BASE_ATTRIBUTES, 'attributes', 'an attribute of a base secret');
    checkNames(data, BASE_DATA_FIELDS, 'data', 'a field of a base secret');
  } else {
    for (const [name, value] of Object.entries(attributes)) {
      const looksLikeLink = editDistance(name.toLowerCase(), 'linkconfig') <= 2;
      const looksLikeType = editDistance(name.toLowerCase(), 'type') <= 1 && engineOfType(value) !== undefined;
      if (looksLikeLink || looksLikeType) {
        throw usageError('unknown_attribute', `attributes.${shownName(name)} would make this a static secret; did you mean ${looksLikeLink ? 'linkConfig' : 'type'}?`);
      }
    }
  }
}

function checkNames(object: Record<string, unknown>, known: string[], where: string, what: string): void {
  for (const name of Object.keys(object)) {
    if (known.includes(name)) continue;
    const hint = nearestName(name, known);
    const list = known.length === 1 ? `, which has only ${known[0]}` : `; the known ones are ${known.slice(0, -1).join(', ')} and ${known[known.length - 1]}`;
    throw usageError('unknown_attribute', `${where}.${shownName(name)} is not ${what}${hint ? `; did you mean ${hint}?` : `${list}.`}`);
  }
}

/** The known name closest to `name`, if it is close enough to be a slip of the keyboard. */
export function nearestName(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const distance = editDistance(name.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best !== undefined && bestDistance <= Math.min(3, Math.max(1, Math.floor(best.length / 3))) ? best : undefined;
}

/** Levenshtein distance where swapping two neighbours counts as one edit (`tpye` → `type`). */
function editDistance(a: string, b: string): number {
  // Nobody mistypes a name into a hundred characters; and the table below grows with both.
  if (a.length > 64 || b.length > 64) return Infinity;
  const rows: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) rows[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      rows[i][j] = Math.min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) rows[i][j] = Math.min(rows[i][j], rows[i - 2][j - 2] + 1);
    }
  }
  return rows[a.length][b.length];
}

/** Names are the user's text: one line, and short. */
function shownName(name: string): string {
  const oneLine = name.replace(/[\u0000-\u001f\u007f]/g, '?');
  return oneLine.length > 40 ? `${oneLine.slice(0, 37)}...` : oneLine;
}
