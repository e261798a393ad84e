import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { verifyToken } from '../../clients/token.js';
import { failed, unauthorized } from '../../errors.js';
import type { LeaseDeps } from '../../leases/deps.js';
import type { ClientRecord } from '../../model/client.js';
import { errorBody, httpError } from './http-errors.js';
import { RateLimit } from './rate-limit.js';
import { registerRoutes } from './routes.js';
import { guardSlowClients } from './slow-clients.js';

/** PRODUCT.md: a body over 64 KiB is refused (413). */
export const BODY_LIMIT = 64 * 1024;
/** A client has this long to send its headers, and this long for the whole request. */
const HEADERS_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 20_000;
/** A connection silent both ways this long is closed: longer than the slowest lease create (a 10 s connect, then the statements). */
const IDLE_MS = 120_000;
/** An idle keep-alive connection is closed after this long. */
const KEEP_ALIVE_MS = 5_000;
/** How often Node looks for connections past those timeouts. */
const CHECK_EVERY_MS = 1_000;
/** Per client: a burst of this many requests, then so many a second (429 beyond). */
const RATE_BURST = 500;
const RATE_PER_SECOND = 200;

export interface ApiOptions {
  host: string;
  port: number;
  tls?: { cert: Buffer; key: Buffer };
  /** The lease deps once the store is open; throws a store error (503) until then. */
  deps(): LeaseDeps;
  /** 200 when ready, else a reason for 503. */
  readiness(): Promise<string | undefined>;
  /** Prometheus text and its content type. */
  metrics(): Promise<{ contentType: string; text: string }>;
  /** One request handled (metrics and the log). */
  observed(event: ApiRequestEvent): void;
  issued?(lease: { pool?: string; engine: string }): void;
}

export interface ApiRequestEvent {
  method: string;
  /** The route's pattern, never the URL: a path names a secret. */
  route: string;
  status: number;
  duration_ms: number;
  client?: string;
  jti?: string;
  error?: string;
}

export interface RunningApi {
  /** `http://127.0.0.1:8200` or `https://...`: where it listens. */
  url: string;
  close(): Promise<void>;
}

interface Authenticated {
  client: ClientRecord;
  jti: string;
}

/**
 * The lease API: a sibling of the revocation loop, sharing its store and connector. Schemas
 * validate each request at the edge; errors come from one table (http-errors.ts); tokens are
 * checked on every request against the client's key as the store has it now.
 */
export async function startApi(options: ApiOptions): Promise<RunningApi> {
  const { default: fastify } = await import('fastify');
  const tls = options.tls;
  const serverFactory = (handler: (req: IncomingMessage, res: ServerResponse) => void): Server => {
    const settings = { headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS, keepAliveTimeout: KEEP_ALIVE_MS, connectionsCheckingInterval: CHECK_EVERY_MS };
    const server = (tls ? createHttpsServer({ ...settings, cert: tls.cert, key: tls.key }, handler) : createHttpServer(settings, handler)) as Server;
    guardSlowClients(server, { headersMs: HEADERS_TIMEOUT_MS, bodyMs: REQUEST_TIMEOUT_MS, idleMs: IDLE_MS });
    return server;
  };
  const app = fastify({
    serverFactory,
    bodyLimit: BODY_LIMIT,
    logger: false,
    return503OnClosing: true,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
  });
  const limiter = new RateLimit(RATE_PER_SECOND, RATE_BURST);
  const callers = new WeakMap<FastifyRequest, Authenticated>();
  const started = new WeakMap<FastifyRequest, number>();
  const scheme = tls ? 'https' : 'http';

  app.addHook('onRequest', async (request) => {
    started.set(request, performance.now());
  });

  // Every route but the health and metrics ones needs a valid token of a registered client.
  app.addHook('preValidation', async (request) => {
    if (!request.url.startsWith('/api/')) return;
    const header = request.headers.authorization;
    const token = header?.startsWith('Bearer ') ? header.slice(7).trim() : undefined;
    if (!token) throw unauthorized('no_token', 'The request has no Bearer token.', 'Make one with `sy auth token`.');
    const audience = `${scheme}://${request.headers.host ?? ''}`;
    let record: ClientRecord | undefined;
    const verified = await verifyToken(token, normalOrigin(audience), async (name) => {
      record = await options.deps().store.clients.get(name);
      return record?.publicKey;
    });
    if (!limiter.take(verified.client)) {
      const error = new Error('rate') as Error & { rateLimited: boolean };
      error.rateLimited = true;
      throw error;
    }
    callers.set(request, { client: record!, jti: verified.jti });
  });

  app.setErrorHandler(async (error, request, reply) => {
    if ((error as { rateLimited?: boolean }).rateLimited) {
      return reply.code(429).header('retry-after', '1').send(errorBody('too_many_requests', 'Too many requests from this client; try again in a second.'));
    }
    const { status, body } = httpError(error);
    (reply as FastifyReply & { syError?: string }).syError = body.error.code;
    return reply.code(status).send(body);
  });
  app.setNotFoundHandler(async (_request, reply) => reply.code(404).send(errorBody('no_route', 'There is no such endpoint.')));

  app.addHook('onResponse', async (request, reply) => {
    const begun = started.get(request) ?? performance.now();
    const who = callers.get(request);
    options.observed({
      method: request.method,
      route: request.routeOptions.url ?? 'unknown',
      status: reply.statusCode,
      duration_ms: Math.round((performance.now() - begun) * 10) / 10,
      client: who?.client.name,
      jti: who?.jti,
      error: (reply as FastifyReply & { syError?: string }).syError,
    });
  });

  app.get('/livez', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    const problem = await options.readiness();
    if (problem) return reply.code(503).send({ status: 'not ready', reason: problem });
    return { status: 'ready' };
  });
  app.get('/metrics', async (_request, reply) => {
    const { contentType, text } = await options.metrics();
    return reply.header('content-type', contentType).send(text);
  });

  registerRoutes(app, {
    deps: options.deps,
    caller: (request) => {
      const who = callers.get(request);
      if (!who) throw unauthorized('no_token', 'The request has no Bearer token.');
      return who.client;
    },
    issued: options.issued,
  });

  try {
    await app.listen({ host: options.host, port: options.port });
  } catch (error) {
    await app.close().catch(() => undefined);
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'EADDRINUSE' ? 'the address is in use' : code === 'EADDRNOTAVAIL' ? 'no interface of this machine has that address' : code === 'EACCES' ? 'permission denied' : (error as Error).message;
    throw failed('listen_failed', `Could not listen on ${options.host}:${options.port}: ${why}.`);
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `${scheme}://${host}:${port}`,
    close: () => app.close(),
  };
}

/** `https://h:443` and `https://h` are one origin, as a browser and URL compare them. */
function normalOrigin(origin: string): string {
  try {
    return new URL(origin).origin;
  } catch {
    return origin;
  }
}
