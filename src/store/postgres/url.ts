/**
 * SY_STORE: where a shared store lives, as a libpq connection URI. The URL is the whole
 * configuration (no PG* variable is read: `sy run` hands its child PGUSER and PGPASSWORD of a
 * lease, and they must never decide where the store is). Parsed before pg is loaded, so a bad
 * URL costs no driver. Messages never repeat the password.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import { usageError } from '../../errors.js';

export type SslMode = 'disable' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';
const SSL_MODES: readonly SslMode[] = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full'];

export interface StoreUrl {
  /** A host name or address, or a directory holding the server's Unix socket. */
  host: string;
  port: number;
  database: string;
  user: string;
  password?: string;
  sslmode: SslMode;
  /** Whether the URL says sslmode (libpq's default, prefer, can be turned down to plaintext). */
  sslmodeGiven: boolean;
  /** A file of CA certificates, or `system` (the CAs Node trusts). */
  sslrootcert?: string;
  sslcert?: string;
  sslkey?: string;
  connectTimeoutMs: number;
  applicationName: string;
  /** The URL without its password, for messages and `sy store info`. */
  location: string;
  /** `host:port`, as messages about reaching the server name it. */
  address: string;
  /** Where the URL came from (SY_STORE, --to), as messages name it. */
  variable: string;
}

/** libpq waits forever by default; a CLI must not. Targets get the same. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_PORT = 5432;

/** The query parameters sy understands (libpq's names); any other is refused rather than ignored. */
const PARAMETERS = ['host', 'port', 'dbname', 'user', 'password', 'sslmode', 'sslrootcert', 'sslcert', 'sslkey', 'connect_timeout', 'application_name'] as const;

const NO_HOST = 'sy-no-host.invalid';

export const isStoreUrl = (value: string): boolean => /^postgres(ql)?:\/\//i.test(value);

export function parseStoreUrl(text: string, variable = 'SY_STORE'): StoreUrl {
  const bad = (reason: string) => usageError('invalid_store_url', `${variable} is not a usable PostgreSQL URL: ${reason}.`,
    'Write it as postgresql://user:password@host:5432/database?sslmode=verify-full&sslrootcert=/path/ca.crt.');
  if (!isStoreUrl(text)) throw bad('it must start with postgresql://');
  let url: URL;
  try {
    // A scheme WHATWG does not know: no default port to drop, no host rewritten. It wants a
    // host after a user name, which libpq does not (postgresql://user@/db?host=/socket/dir).
    url = new URL(text.replace(/^(postgres(?:ql)?:\/\/[^/?#@]*@)(?=[/?#]|$)/i, `$1${NO_HOST}`));
  } catch {
    throw bad('it cannot be parsed');
  }
  const query = new Map<string, string>();
  for (const [key, value] of url.searchParams) {
    if (!(PARAMETERS as readonly string[]).includes(key)) throw bad(`sy does not know the parameter "${shownName(key)}" (it knows ${PARAMETERS.join(', ')})`);
    if (query.has(key)) throw bad(`the parameter ${key} is given twice`);
    query.set(key, value);
  }
  const decode = (value: string, what: string): string => {
    try {
      return decodeURIComponent(value);
    } catch {
      throw bad(`its ${what} is not percent-encoded correctly`);
    }
  };
  const hostname = url.hostname === NO_HOST ? '' : url.hostname.replace(/^\[(.*)\]$/, '$1');
  const host = query.get('host') ?? (hostname === '' ? 'localhost' : decode(hostname, 'host').toLowerCase());
  if (host.includes(',')) throw bad('sy connects to one host, not a list');
  const portText = query.get('port') ?? url.port;
  const port = portText === '' ? DEFAULT_PORT : Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw bad(`the port must be a number from 1 to 65535`);
  const user = query.get('user') ?? (url.username !== '' ? decode(url.username, 'user name') : osUser());
  if (!user) throw bad('it names no user, and the system user is unknown');
  const password = query.get('password') ?? (url.password !== '' ? decode(url.password, 'password') : undefined);
  if (url.pathname.slice(1).includes('/')) throw bad('the database name must be one path segment');
  const database = query.get('dbname') ?? (url.pathname.length > 1 ? decode(url.pathname.slice(1), 'database name') : user);

  const mode = query.get('sslmode') ?? 'prefer';
  if (!(SSL_MODES as readonly string[]).includes(mode)) {
    throw bad(`sslmode must be one of ${SSL_MODES.join(', ')}${mode === 'allow' ? ' (allow is not supported: use prefer)' : ''}`);
  }
  const timeoutText = query.get('connect_timeout');
  let connectTimeoutMs = DEFAULT_CONNECT_TIMEOUT_MS;
  if (timeoutText !== undefined) {
    const seconds = Number(timeoutText);
    if (!/^\d+$/.test(timeoutText) || seconds > 3600) throw bad('connect_timeout must be a whole number of seconds, at most 3600');
    // As in libpq, 0 means waiting for ever; sy still gives up, after the default.
    if (seconds > 0) connectTimeoutMs = Math.max(seconds, 2) * 1000;
  }
  const socket = host.startsWith('/');
  const address = socket ? `${host} (port ${port})` : `${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
  const shownHost = socket ? '' : isIP(host) === 6 ? `[${host}]` : host;
  const location = `postgresql://${encodeURIComponent(user)}@${shownHost}${socket || port === DEFAULT_PORT ? '' : `:${port}`}/${encodeURIComponent(database)}` +
    (socket ? `?host=${encodeURIComponent(host)}${port === DEFAULT_PORT ? '' : `&port=${port}`}` : '');
  return {
    host,
    port,
    database,
    user,
    password,
    sslmode: mode as SslMode,
    sslmodeGiven: query.has('sslmode'),
    sslrootcert: query.get('sslrootcert'),
    sslcert: query.get('sslcert'),
    sslkey: query.get('sslkey'),
    connectTimeoutMs,
    applicationName: query.get('application_name') ?? 'sy',
    location,
    address,
    variable,
  };
}

/**
 * A store elsewhere than this machine, reached without a word on TLS: libpq's default
 * (prefer) speaks in the clear to a server, or to someone on the path, that declines TLS.
 * Loopback and Unix sockets are spared: nobody is on that path.
 */
export function plaintextWarning(url: StoreUrl): string | undefined {
  if (url.sslmodeGiven || isLoopback(url.host)) return undefined;
  return `${url.variable} names ${url.address} without sslmode, so anyone on the path can make that connection plaintext: add sslmode=verify-full and sslrootcert to the URL.`;
}

function isLoopback(host: string): boolean {
  if (host.startsWith('/') || host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return isIP(host) === 6 && /^(0*:)*:?0*1$/.test(host);
}

function osUser(): string | undefined {
  try {
    return userInfo().username;
  } catch {
    return undefined;
  }
}

function shownName(key: string): string {
  return /^[\w.-]{1,40}$/.test(key) ? key : JSON.stringify(key.slice(0, 40));
}

/** What node's TLS needs from the URL's ssl settings, read from their files. */
export interface TlsChoice {
  /** Undefined: no TLS. */
  options?: import('node:tls').ConnectionOptions;
  /** prefer: a server that refuses TLS is spoken to in the clear. */
  fallbackToPlain: boolean;
}

/**
 * libpq's meaning of sslmode, which node-postgres's own parsing does not follow (it verifies
 * the certificate for `require` and the host name for `verify-ca`):
 * - disable: no TLS. prefer: TLS without checks when the server offers it, else in the clear.
 * - require: TLS without checks, except that a given sslrootcert makes it verify-ca (as libpq).
 * - verify-ca: the chain must lead to sslrootcert. verify-full: that, and the certificate
 *   must name the URL's host (an address must be in its IP SANs).
 * sslrootcert defaults to ~/.postgresql/root.crt as in libpq; `system` means Node's CAs.
 */
export async function tlsChoice(url: StoreUrl, variable = url.variable): Promise<TlsChoice> {
  if (url.sslmode === 'disable') return { fallbackToPlain: false };
  const tls = await import('node:tls');
  const options: import('node:tls').ConnectionOptions = {};
  if (url.sslcert !== undefined) options.cert = readTlsFile(url.sslcert, 'sslcert', variable);
  if (url.sslkey !== undefined) options.key = readTlsFile(url.sslkey, 'sslkey', variable);
  const verify = url.sslmode === 'verify-ca' || url.sslmode === 'verify-full' || (url.sslmode === 'require' && url.sslrootcert !== undefined);
  if (!verify) return { options: { ...options, rejectUnauthorized: false }, fallbackToPlain: url.sslmode === 'prefer' };
  const rootcert = url.sslrootcert ?? defaultRootCert();
  if (rootcert === undefined) {
    throw usageError('store_tls_no_ca', `${variable} asks for sslmode=${url.sslmode} but names no sslrootcert, and ~/.postgresql/root.crt does not exist.`,
      'Add sslrootcert=/path/to/ca.crt to the URL (or sslrootcert=system for the CAs Node trusts).');
  }
  if (rootcert !== 'system') options.ca = readTlsFile(rootcert, 'sslrootcert', variable);
  options.rejectUnauthorized = true;
  const host = url.host;
  if (url.sslmode === 'verify-full') {
    // node-postgres sends SNI only for names; the check is ours, against the URL's host as written.
    if (isIP(host) === 0 && !host.startsWith('/')) options.servername = host;
    options.checkServerIdentity = (_name, cert) => tls.checkServerIdentity(host, cert);
  } else {
    options.checkServerIdentity = () => undefined;
  }
  return { options, fallbackToPlain: false };
}

function defaultRootCert(): string | undefined {
  try {
    const file = join(homedir(), '.postgresql', 'root.crt');
    readFileSync(file);
    return file;
  } catch {
    return undefined;
  }
}

function readTlsFile(file: string, parameter: string, variable: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw usageError('store_tls_file', `${variable} names ${parameter}=${file}, which cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'}).`);
  }
}
