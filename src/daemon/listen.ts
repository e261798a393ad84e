import { isIP } from 'node:net';
import { usageError } from '../errors.js';

export interface Listen {
  host: string;
  port: number;
  tls?: { cert: string; key: string };
}

/**
 * `--listen HOST:PORT` (`[::1]:8200` for IPv6) with its TLS files. Plain HTTP is for
 * loopback only: a token crosses the network only inside TLS.
 */
export function parseListen(value: string, tlsCert: string | undefined, tlsKey: string | undefined): Listen {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw usageError('invalid_listen', `--listen takes HOST:PORT, such as 127.0.0.1:8200 or 0.0.0.0:8443; "${value}" is not one.`);
  const host = match[1] ?? match[2];
  if ((tlsCert === undefined) !== (tlsKey === undefined)) throw usageError('tls_pair', '--tls-cert and --tls-key go together.');
  if (tlsCert === undefined && !isLoopback(host)) {
    throw usageError('listen_without_tls', `Without TLS, --listen takes only a loopback address (127.0.0.1, ::1, localhost); ${host} needs --tls-cert and --tls-key.`);
  }
  return { host, port, tls: tlsCert === undefined ? undefined : { cert: tlsCert, key: tlsKey! } };
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}
