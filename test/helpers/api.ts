/**
 * The lease API end to end: a real `bin/sy daemon --listen` on loopback (plain or with a test
 * CA made here with openssl), clients registered with `sy client create`, and requests made
 * as the seed makes them (curl) or as the CLI does (SY_SERVER).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type SyHome, runSy, type SyResult } from './cli.js';
import { type Daemon, startDaemon } from './revocation.js';

export interface ApiDaemon extends Daemon {
  url: string;
}

/** Starts `sy daemon --listen 127.0.0.1:0` and waits for the line that names its URL. */
export async function startApiDaemon(sy: SyHome, options: { tls?: TestCa; args?: string[]; env?: Record<string, string | undefined> } = {}): Promise<ApiDaemon> {
  const tlsArgs = options.tls ? ['--tls-cert', options.tls.certFile, '--tls-key', options.tls.keyFile] : [];
  const daemon = startDaemon(sy, ['--listen', '127.0.0.1:0', ...tlsArgs, ...(options.args ?? [])], options.env);
  const listening = await daemon.waitForEvent((e) => e.event === 'listening', 30_000);
  // The API listens before the store is open (503 until then); the loop starts once it is.
  await daemon.waitForEvent((e) => e.event === 'start', 30_000);
  let url = (listening as unknown as { url: string }).url;
  // The certificate names localhost: the origin clients use must match it.
  if (options.tls) url = url.replace('127.0.0.1', 'localhost');
  return Object.assign(daemon, { url });
}

export interface RegisteredClient {
  name: string;
  privateKey: string;
}

/** `sy client create NAME --allow ...`: the private key it prints once. */
export async function registerClient(sy: SyHome, name: string, allow: string[], caps: { maxTtl?: string; maxLeases?: number } = {}): Promise<RegisteredClient> {
  const args = ['client', 'create', name, ...allow.flatMap((p) => ['--allow', p]), '--format', 'json'];
  if (caps.maxTtl) args.push('--max-ttl', caps.maxTtl);
  if (caps.maxLeases !== undefined) args.push('--max-leases', String(caps.maxLeases));
  const result = await sy.run(args);
  if (result.exitCode !== 0) throw new Error(`sy client create exited ${result.exitCode}: ${result.stderr}`);
  return { name, privateKey: (JSON.parse(result.stdout) as { private_key: string }).private_key };
}

export async function deleteClient(sy: SyHome, name: string): Promise<void> {
  const result = await sy.run(['client', 'delete', name, '--yes']);
  if (result.exitCode !== 0) throw new Error(`sy client delete exited ${result.exitCode}: ${result.stderr}`);
}

/** What a client pod holds: the server, its name and key (and the CA file): nothing that opens a store. */
export function clientEnv(url: string, client: RegisteredClient, ca?: TestCa): Record<string, string> {
  return {
    SY_SERVER: url,
    SY_CLIENT_ID: client.name,
    SY_PRIVATE_KEY: client.privateKey,
    HOME: tmpdir(),
    ...(ca ? { SY_CA_CERT: ca.caFile } : {}),
  };
}

/** bin/sy as a client: only the client's environment, no SY_HOME, no key of the store. */
export const asClient = (env: Record<string, string>, args: string[], options: { timeout?: number } = {}): Promise<SyResult> => runSy(args, env, options);

export async function tokenFor(env: Record<string, string>, ttl?: string): Promise<string> {
  const result = await asClient(env, ['auth', 'token', ...(ttl ? ['--ttl', ttl] : [])]);
  if (result.exitCode !== 0) throw new Error(`sy auth token exited ${result.exitCode}: ${result.stderr}`);
  return result.stdout.trim();
}

export interface Answer {
  status: number;
  body: any;
  text: string;
}

/** One HTTP(S) request, no client library between the test and the daemon. */
export function call(url: string, method: string, path: string, options: { token?: string; body?: string | Buffer; headers?: Record<string, string>; ca?: TestCa } = {}): Promise<Answer> {
  const target = new URL(path, url);
  const headers: Record<string, string> = { ...(options.token ? { authorization: `Bearer ${options.token}` } : {}), ...options.headers };
  if (options.body !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    // The path exactly as given (no URL normalisation of dot segments), as curl --path-as-is sends it.
    const req = send({ protocol: target.protocol, hostname: target.hostname, port: target.port, path, method, headers, ca: options.ca?.caPem, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => {
        let body: any;
        try {
          body = text ? JSON.parse(text) : undefined;
        } catch {
          body = undefined;
        }
        resolve({ status: res.statusCode ?? 0, body, text });
      });
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

export interface TestCa {
  dir: string;
  caFile: string;
  caPem: string;
  certFile: string;
  keyFile: string;
}

/** A throwaway CA and a server certificate for localhost and 127.0.0.1, made with openssl. */
export function makeTestCa(): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'sy-ca-'));
  const f = (name: string) => join(dir, name);
  const openssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=sy test CA']);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=localhost']);
  writeFileSync(f('ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl(['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.pem'), '-days', '2', '-extfile', f('ext.cnf')]);
  return { dir, caFile: f('ca.pem'), caPem: execFileSync('cat', [f('ca.pem')]).toString(), certFile: f('server.pem'), keyFile: f('server.key') };
}
