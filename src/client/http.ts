import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { signToken } from '../clients/token.js';
import { type ErrorKind, SyError, failed, unauthorized } from '../errors.js';
import type { IssuedLease, LeaseDetails, LeaseSummary } from '../io/lease-view.js';
import type { Secret, SecretRef } from '../model/secret.js';
import type { ClientCredentials } from './credentials.js';
import type { LeaseService, RenewResult } from './lease-service.js';

/** A token lives this long: one command's requests, and no more. */
const TOKEN_SECONDS = 120;
/** A lease create may wait on a slow target server (its connect timeout is 10 s). */
const REQUEST_TIMEOUT_MS = 60_000;
const API = '/api/sm/v1';

/**
 * The server's answer as the CLI's exit codes (PRODUCT.md): refused key or token 4,
 * patterns or caps 5, not found 3, bad input 2, the rest (target refused, store away,
 * too many requests) 1.
 */
const KIND_OF_STATUS: Record<number, ErrorKind> = {
  400: 'usage',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  413: 'usage',
};

/** TLS failures of the server's certificate: as a client, exit 4. */
const CERTIFICATE_ERRORS = /CERT|SELF_SIGNED|UNABLE_TO_|HOSTNAME|ERR_TLS/;

interface Answer {
  status: number;
  body: unknown;
}

/** The lease service of a pool's daemons, through the lease API (`SY_SERVER`). */
export function httpLeaseService(credentials: ClientCredentials): LeaseService {
  let token: Promise<string> | undefined;
  const bearer = () => (token ??= signToken({ clientId: credentials.clientId, privateKeyPem: credentials.privateKeyPem, audience: credentials.origin, ttlSeconds: TOKEN_SECONDS }));

  const call = async (method: string, path: string, body?: unknown): Promise<Answer> => {
    const answer = await send(credentials, method, path, await bearer(), body);
    if (answer.status >= 400) throw serverError(answer);
    return answer;
  };

  return {
    async issue(ref, request) {
      const body = { ...refBody(ref), ...(request.ttlSeconds === undefined ? {} : { ttl_seconds: request.ttlSeconds }) };
      return (await call('POST', `${API}/dynamic/lease`, body)).body as IssuedLease;
    },
    async list(filter) {
      const query = new URLSearchParams();
      if (filter.recordUid !== undefined) query.set('record_uid', filter.recordUid);
      if (filter.path !== undefined) query.set('path', filter.path);
      if (filter.all) query.set('all', 'true');
      if (filter.limit !== undefined) query.set('limit', String(filter.limit));
      if (filter.offset !== undefined) query.set('offset', String(filter.offset));
      const suffix = query.size > 0 ? `?${query}` : '';
      return ((await call('GET', `${API}/dynamic/leases${suffix}`)).body as { data: LeaseSummary[] }).data;
    },
    async lookup(leaseId) {
      return (await call('GET', `${API}/dynamic/leases/${encodeURIComponent(leaseId)}`)).body as LeaseDetails;
    },
    async renew(leaseId, incrementSeconds) {
      const body = incrementSeconds === undefined ? {} : { increment_seconds: incrementSeconds };
      const answer = (await call('POST', `${API}/dynamic/leases/${encodeURIComponent(leaseId)}/renew`, body)).body as LeaseDetails & { capped: boolean; unchanged: boolean };
      const { capped, unchanged, ...lease } = answer;
      return { lease, capped, unchanged } satisfies RenewResult;
    },
    async revoke(leaseId) {
      await call('DELETE', `${API}/dynamic/leases/${encodeURIComponent(leaseId)}`);
    },
    async read(ref, request) {
      const name = 'path' in ref ? ref.path : ref.id;
      const version = request.version === undefined ? '' : `?version=${request.version}`;
      try {
        return { secret: (await call('GET', `${API}/secrets/${name.split(/[:/]/).map(encodeURIComponent).join('/')}${version}`)).body as Secret };
      } catch (error) {
        if (!(error instanceof SyError) || error.code !== 'dynamic_secret') throw error;
        return { lease: await this.issue(ref, { ttlSeconds: request.ttlSeconds }) };
      }
    },
    async close() {},
  };
}

function refBody(ref: SecretRef): { path: string } | { record_uid: string } {
  return 'path' in ref ? { path: ref.path } : { record_uid: ref.id };
}

function serverError(answer: Answer): SyError {
  const error = (answer.body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  const code = typeof error?.code === 'string' ? error.code : `http_${answer.status}`;
  const message = typeof error?.message === 'string' ? error.message : `The server answered ${answer.status}.`;
  return new SyError(KIND_OF_STATUS[answer.status] ?? 'failed', code, message);
}

function send(credentials: ClientCredentials, method: string, path: string, token: string, body: unknown): Promise<Answer> {
  const url = new URL(path, credentials.origin);
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const headers: Record<string, string | number> = { authorization: `Bearer ${token}`, accept: 'application/json' };
  if (payload) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = payload.length;
  }
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, ca: credentials.ca, timeout: REQUEST_TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', (error) => reject(transportError(credentials.origin, error)));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown;
        try {
          parsed = text === '' ? undefined : JSON.parse(text);
        } catch {
          parsed = undefined;
        }
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', (error) => reject(transportError(credentials.origin, error)));
    req.end(payload);
  });
}

function transportError(origin: string, error: Error): SyError {
  const code = (error as NodeJS.ErrnoException).code ?? '';
  if (CERTIFICATE_ERRORS.test(code)) {
    return unauthorized('server_certificate', `The certificate of ${origin} was refused (${code}).`, 'Set SY_CA_CERT to the CA file that signed it.');
  }
  return failed('server_unreachable', `The server ${origin} could not be reached (${code || error.message}).`);
}
