import type { FastifyInstance, FastifyRequest } from 'fastify';
import { usageError } from '../../errors.js';
import { issuedLease, leaseDetails, leaseSummary } from '../../io/lease-view.js';
import { issueLease } from '../../leases/issue.js';
import type { LeaseDeps } from '../../leases/deps.js';
import { renewLease } from '../../leases/renew.js';
import { revokeLease } from '../../leases/revoke.js';
import { clientActor, type ClientRecord } from '../../model/client.js';
import type { LeaseRecord } from '../../model/lease.js';
import { MAX_LEASE_SECONDS, type SecretRef } from '../../model/secret.js';
import { followLink } from '../../secrets/lookup.js';
import { canonicalPath, secretRef } from '../../secrets/path.js';
import { getSecret } from '../../secrets/service.js';
import { kindOf } from '../../secrets/validate.js';
import { forbidden } from '../../errors.js';
import { LeaseCaps, checkPath, checkTtl, ownLease } from './guard.js';

/** What the routes need: the daemon's lease deps (store, connector, clock) and who asks. */
export interface RouteDeps {
  /** The lease deps once the store is open; throws (503) until then. */
  deps(): LeaseDeps;
  /** The authenticated client of a request (set by the auth hook). */
  caller(request: FastifyRequest): ClientRecord;
  /** A lease was issued (metrics). */
  issued?(lease: { pool?: string; engine: string }): void;
}

const API = '/api/sm/v1';
const leaseId = { type: 'string', minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9-]+$' } as const;
const idParams = { type: 'object', required: ['id'], properties: { id: leaseId } } as const;
const leaseBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    record_uid: { type: 'string', minLength: 1, maxLength: 64 },
    path: { type: 'string', minLength: 1, maxLength: 256 },
    ttl_seconds: { type: 'integer', minimum: 1, maximum: MAX_LEASE_SECONDS },
  },
} as const;
const renewBody = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: { increment_seconds: { type: 'integer', minimum: 1, maximum: MAX_LEASE_SECONDS } },
} as const;
const listQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    record_uid: { type: 'string', maxLength: 64 },
    path: { type: 'string', maxLength: 256 },
    all: { type: 'string', enum: ['true', 'false', '1', '0'] },
    limit: { type: 'string', pattern: '^[1-9][0-9]{0,5}$' },
    offset: { type: 'string', pattern: '^[0-9]{1,9}$' },
  },
} as const;
const secretQuery = { type: 'object', additionalProperties: false, properties: { version: { type: 'string', pattern: '^[1-9][0-9]{0,8}$' } } } as const;

/**
 * The lease API of PRODUCT.md. Every handler acts for the authenticated client only: the
 * audit log names it (`client:NAME`), its leases carry its name, and its patterns and caps
 * are checked before any database is touched.
 */
export function registerRoutes(app: FastifyInstance, r: RouteDeps): void {
  const caps = new LeaseCaps();
  const forClient = (client: ClientRecord): LeaseDeps => ({ ...r.deps(), actor: clientActor(client.name), progress: undefined, warn: undefined });

  app.post(`${API}/dynamic/lease`, { schema: { body: leaseBody } }, async (request, reply) => {
    const { store } = r.deps();
    const client = r.caller(request);
    const body = (request.body ?? {}) as { record_uid?: string; path?: string; ttl_seconds?: number };
    if ((body.record_uid === undefined) === (body.path === undefined)) {
      throw usageError('missing_secret', 'Give record_uid or path, not both.');
    }
    const ref: SecretRef = body.path !== undefined ? { path: canonicalPath(body.path) } : { id: body.record_uid! };
    if ('path' in ref) checkPath(client, ref.path);
    const secret = await getSecret(store, ref);
    checkPath(client, secret.path);
    if (kindOf(secret.attributes) !== 'dynamic') throw usageError('not_dynamic', `${secret.path} is not a dynamic secret.`);
    let ttlSeconds = body.ttl_seconds;
    if (ttlSeconds !== undefined) checkTtl(client, ttlSeconds);
    else if (client.maxTtl !== undefined) {
      const { recipe } = await followLink(store, secret.attributes, secret.data, secret.path);
      ttlSeconds = Math.min(recipe.ttl, client.maxTtl);
    }
    const release = await caps.reserve(store, client);
    try {
      const issued = await issueLease(forClient(client), { secret }, { ttlSeconds, client: client.name });
      r.issued?.({ engine: issued.engine, pool: typeof secret.attributes.pool === 'string' ? secret.attributes.pool : undefined });
      return reply.code(201).send(issuedLease(issued));
    } finally {
      release();
    }
  });

  app.get(`${API}/dynamic/leases`, { schema: { querystring: listQuery } }, async (request) => {
    const { store } = r.deps();
    const client = r.caller(request);
    const q = request.query as { record_uid?: string; path?: string; all?: string; limit?: string; offset?: string };
    const path = q.path === undefined ? undefined : canonicalPath(q.path);
    const all = q.all === 'true' || q.all === '1';
    const leases = await store.leases.list({ client: client.name, secretId: q.record_uid, path, all, limit: Number(q.limit ?? 1000), offset: Number(q.offset ?? 0) });
    return { data: leases.map(leaseSummary) };
  });

  app.get(`${API}/dynamic/leases/:id`, { schema: { params: idParams } }, async (request) => {
    const { store } = r.deps();
    const lease = await ownLease(store, r.caller(request), (request.params as { id: string }).id);
    return details(lease, Date.now());
  });

  app.post(`${API}/dynamic/leases/:id/renew`, { schema: { params: idParams, body: renewBody } }, async (request) => {
    const { store } = r.deps();
    const client = r.caller(request);
    const lease = await ownLease(store, client, (request.params as { id: string }).id);
    let increment = (request.body as { increment_seconds?: number } | null)?.increment_seconds;
    if (increment !== undefined) checkTtl(client, increment);
    else if (client.maxTtl !== undefined) increment = Math.min(client.maxTtl, Math.round((lease.expiresAt - lease.createdAt) / 1000));
    const result = await renewLease(forClient(client), lease.id, increment);
    return { ...details(result.lease, Date.now()), capped: result.capped, unchanged: result.unchanged };
  });

  app.delete(`${API}/dynamic/leases/:id`, { schema: { params: idParams } }, async (request, reply) => {
    const { store } = r.deps();
    const client = r.caller(request);
    const lease = await ownLease(store, client, (request.params as { id: string }).id);
    await revokeLease(forClient(client), lease.id);
    return reply.code(204).send();
  });

  app.get(`${API}/secrets/*`, { schema: { querystring: secretQuery } }, async (request) => {
    const { store } = r.deps();
    const client = r.caller(request);
    const ref = secretRef((request.params as { '*': string })['*']);
    if ('path' in ref) checkPath(client, ref.path);
    const version = (request.query as { version?: string }).version;
    const secret = await getSecret(store, ref, version === undefined ? undefined : Number(version));
    checkPath(client, secret.path);
    const path = secret.path;
    const kind = kindOf(secret.attributes);
    // Admin credentials never leave the daemons, whatever a client's patterns say.
    if (kind === 'base') throw forbidden('base_secret', `${path} is a base secret: its admin credentials are never served to clients.`);
    if (kind === 'dynamic') throw usageError('dynamic_secret', `${path} is a dynamic secret: ask for a lease of it (POST ${API}/dynamic/lease).`);
    return secret;
  });
}

/** `lease lookup`'s JSON (it names the client the lease was issued for). */
const details = (lease: LeaseRecord, now: number) => leaseDetails(lease, now);
