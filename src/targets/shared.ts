/**
 * What the PostgreSQL and MySQL/MariaDB targets have in common: the user names they will
 * touch, expert statement templates, and the words a failure is reported in.
 */
import { failed } from '../errors.js';

/**
 * Only names sy generates ([A-Za-z0-9_], within the engine's limit) ever reach a statement:
 * a name from the ledger or a template is checked again here before use.
 */
export function checkedUserName(username: string, maxLength: number, label: string): string {
  if (username.length < 1 || username.length > maxLength || !/^[A-Za-z0-9_]+$/.test(username)) {
    throw failed('invalid_user_name', `sy refuses to use a ${label} user name that it did not generate.`);
  }
  return username;
}

const PLACEHOLDER = /\{\{\s*([a-zA-Z_]+)\s*\}\}/g;

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
