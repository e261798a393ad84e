/**
 * What the PostgreSQL and MySQL/MariaDB targets have in common: the user names they will
 * touch, expert statement templates, the privileges a grant names, and the words a failure
 * is reported in. No driver is imported here: each engine's driver loads with its target.
 */
import { failed, SyError } from '../errors.js';
import { ALL_PRIVILEGES, ENGINES, type Engine } from '../model/engines.js';
import { PLACEHOLDER, type SslSettings } from '../model/secret.js';

/**
 * Only names sy generates ([A-Za-z0-9_], within the engine's limit) ever reach a statement:
 * a name from the ledger or a template is checked again here before use.
 */
export function checkedUserName(username: string, engine: Engine): string {
  const { maxUserName, label } = ENGINES[engine];
  if (username.length < 1 || username.length > maxUserName || !/^[A-Za-z0-9_]+$/.test(username)) {
    throw failed('invalid_user_name', `sy refuses to use a ${label} user name that it did not generate.`);
  }
  return username;
}

/** `user <name>` for one, `<n> users` for more, in messages. */
export function describeUsers(names: string[]): string {
  return names.length === 1 ? `user ${names[0]}` : `${names.length} users`;
}

/**
 * Expands an expert template, Vault style. `{{name}}` is sy's generated name, safe bare and
 * inside quotes; `{{password}}` goes through the engine's escaping for a '...' literal;
 * `{{expiration}}` is an ISO-8601 instant. Unknown placeholders are left as written.
 */
export function renderTemplate(
  template: string,
  values: { name: string; password: string; expiration: string },
  escapePassword: (password: string) => string,
): string {
  return template.replace(PLACEHOLDER, (whole, key: string) => {
    if (key === 'name') return values.name;
    if (key === 'password') return escapePassword(values.password);
    if (key === 'expiration') return values.expiration;
    return whole;
  });
}

/** A revocationStatements template for one user: it knows no password and no expiration. */
export function revocationStatement(template: string, name: string): string {
  return renderTemplate(template, { name, password: '', expiration: '' }, (password) => password);
}

/**
 * The privileges a grant names, each once in the order named, `ALL` (or `ALL PRIVILEGES`)
 * standing for the data privileges of the level, never for more; `unknown` is the first
 * that is not one of the level's.
 */
export function expandPrivileges(named: string[], level: readonly string[]): { privileges: string[]; unknown?: string } {
  const privileges = [...new Set(named.flatMap((p) => (ALL_PRIVILEGES.has(p) ? level : [p])))];
  return { privileges, unknown: privileges.find((p) => !level.includes(p)) };
}

/** The CA, certificate and key of a base secret's TLS settings, only those it gives. */
export function tlsMaterial(ssl: SslSettings): { ca?: string; cert?: string; key?: string } {
  const material: { ca?: string; cert?: string; key?: string } = {};
  if (ssl.ca !== undefined) material.ca = ssl.ca;
  if (ssl.cert !== undefined) material.cert = ssl.cert;
  if (ssl.key !== undefined) material.key = ssl.key;
  return material;
}

const TLS_CODES = /^(DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_|CERT_|ERR_TLS_|ERR_SSL_|EPROTO)/;

/** Why a socket could not reach the server or set up TLS, from Node's error code; undefined for other codes. */
export function networkReason(code: string): string | undefined {
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'host name not found';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'host unreachable';
    case 'ECONNRESET':
      return 'the server closed the connection';
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return 'the TLS certificate does not match the host name';
    default:
      return TLS_CODES.test(code) ? `the TLS certificate was not accepted (${code})` : undefined;
  }
}

/**
 * The first line of a server or driver message, shortened, or only its code when it
 * contains one of the secrets (drivers quote statements, and a statement may hold a password).
 */
export function safeReason(message: string, code: string | undefined, secrets: string[]): string {
  const line = message.split('\n')[0].replace(/[.\s]+$/, '');
  if (secrets.some((secret) => secret.length > 0 && line.includes(secret))) {
    return code ? `server error ${code}` : 'server error';
  }
  return line.length > 300 ? `${line.slice(0, 297)}...` : line;
}

/** A driver's error as sy reads it: pg sets `code`; mysql2 also errno, sqlState and sqlMessage. */
export interface DriverError extends Error {
  code?: string;
  errno?: number;
  sqlState?: string;
  sqlMessage?: string;
}

/** A server or driver message, unless it contains one of the secrets. */
export function driverReason(error: unknown, secrets: string[]): string {
  const err = error as DriverError;
  return safeReason(String(err?.sqlMessage ?? err?.message ?? error), err?.code, secrets);
}

/**
 * `Could not connect to <engine> at <host>:<port>: <reason>.`, with a hint when the port is
 * another engine's default (a PostgreSQL base on 3306, as in a seed, reaches MariaDB).
 */
export function connectFailed(
  label: string,
  conn: { host: string; port: number; engine?: Engine },
  kind: 'target_unreachable' | 'target_refused',
  reason: string,
  cause?: unknown,
): SyError {
  return failed(kind, `Could not connect to ${label} at ${conn.host}:${conn.port}: ${reason}.`, portHint(conn), cause);
}

export function portHint(conn: { port: number; engine?: Engine }): string | undefined {
  if (conn.engine === undefined) return undefined;
  const own = ENGINES[conn.engine];
  const other = Object.values(ENGINES).find((profile) => profile.engine !== conn.engine && profile.defaultPort === conn.port);
  if (!other || own.defaultPort === conn.port) return undefined;
  return `Port ${conn.port} is ${other.label}'s default port; ${own.label}'s is ${own.defaultPort}: check the base secret's port.`;
}

/** What an engine's session tells statementFailure about itself and its driver's errors. */
export interface StatementFailures {
  /** `host:port`. */
  readonly address: string;
  /** The engine, as messages name it. */
  readonly label: string;
  /** The admin's login: its password is never quoted in a message. */
  readonly conn: { password: string };
  /** The server answered with an error of its own; otherwise the connection itself failed. */
  fromServer(error: DriverError): boolean;
  /** The engine's closer reading (a lock held, a timeout, a closed connection), or undefined. */
  explain(error: DriverError, fromServer: boolean): { code?: string; why: string } | undefined;
}

/** A failure of the connection itself (no server error): nothing more can be done on this server. */
export function isConnectionLost(error: unknown): boolean {
  return error instanceof SyError && error.code === 'target_unreachable';
}

/** The wait for another session's lock, as both engines tell it. */
export const lockHeld = (seconds: number): string => `another session held a lock it needs for more than ${seconds} s`;

/**
 * A failed statement in the words both targets use: `Could not <action> at <address>: ...`.
 * An error sy raised passes through; then the engine's own reading; without the server's
 * error the connection was lost (`target_unreachable`); otherwise the server's reason, under
 * the caller's code. The driver's error is never the cause: it may quote the statement.
 */
export function statementFailure(session: StatementFailures, code: string, action: string, error: unknown, secret?: string): SyError {
  if (error instanceof SyError) return error;
  const err = error as DriverError;
  const fromServer = session.fromServer(err);
  const at = `Could not ${action} at ${session.address}`;
  const told = session.explain(err, fromServer);
  if (told !== undefined) return failed(told.code ?? code, `${at}: ${told.why}.`);
  const reason = driverReason(error, [session.conn.password, secret ?? '']);
  if (!fromServer) return failed('target_unreachable', `${at}: the connection to ${session.label} was lost (${reason}).`);
  return failed(code, `${at}: ${reason}.`);
}
