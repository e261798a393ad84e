import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { SyError, failed, usageError } from '../errors.js';
import { kindOf } from '../secrets/validate.js';
import { followLink } from '../secrets/lookup.js';
import { getSecret } from '../secrets/service.js';
import { MAX_LEASE_SECONDS, type SecretRef } from '../model/secret.js';
import { ENGINES, type Engine } from '../model/engines.js';
import { newPassword, newUserName } from '../targets/names.js';
import type { RevokeOptions, Target } from '../targets/target.js';
import { type ClientTls, clientTls, defaultDatabase, targetLabel } from './connection.js';
import { CONNECT_TIMEOUT_MS, type LeaseDeps, REAP_GRACE_MS } from './deps.js';
import { unattendedPoolWarning } from './pool.js';

/** Checks a TTL (the secret's own when none is asked for) against the 24-hour ceiling and the secret's maxTtl. */
export function resolveTtl(requested: number | undefined, defaultTtl: number, maxTtl: number): number {
  const ttl = requested ?? defaultTtl;
  if (ttl > MAX_LEASE_SECONDS) {
    throw usageError('ttl_too_long', `A TTL of ${ttl} seconds is above the maximum of ${MAX_LEASE_SECONDS} seconds (24 hours).`);
  }
  if (ttl > maxTtl) {
    throw usageError('ttl_too_long', `A TTL of ${ttl} seconds is above this secret's maxTtl of ${maxTtl} seconds.`);
  }
  return ttl;
}

export interface IssueRequest {
  /** The lease's length; the secret's ttl when not given. */
  ttlSeconds?: number;
  /** Issue from this version of the dynamic secret (`secret read --version`); the current one when not given. */
  version?: number;
  /** The API client the lease is issued for: recorded on the lease (and its caps are the caller's to check). */
  client?: string;
}

/**
 * A lease just issued: where its user lives, how clients reach it, and the only copy of its
 * password (sy never stores it). The CLI turns it into PRODUCT.md's lease JSON (io/lease-view.ts).
 */
export interface IssuedCredentials {
  leaseId: string;
  /** The dynamic secret's id. */
  secretId: string;
  path: string;
  engine: Engine;
  host: string;
  port: number;
  /** Where clients land: the base's database, else the first schema the recipe grants on. */
  database?: string;
  /** TLS as sy reaches the server; none when the base secret has none. */
  tls?: ClientTls;
  username: string;
  password: string;
  createdAt: number;
  expiresAt: number;
  maxExpiresAt: number;
  /** Seconds from creation to expiry. */
  ttl: number;
}

/**
 * Issues a lease of the dynamic secret `ref` names, for `request.ttlSeconds` (parsed by the
 * command: this layer never sees flag text). It records an intent, creates the user, then
 * marks the lease active. A crash between the first two steps leaves an intent that the
 * sweep resolves by dropping the user if it exists; the user's name carries its reap-after
 * bound for the reaper.
 */
export async function issueLease(deps: LeaseDeps, ref: SecretRef, request: IssueRequest = {}): Promise<IssuedCredentials> {
  const { store } = deps;
  const secret = await getSecret(store, ref, request.version);
  if (kindOf(secret.attributes) !== 'dynamic') {
    throw usageError('not_dynamic', `${secret.path} is not a dynamic secret.`);
  }
  const { base, engine, connection, recipe } = await followLink(store, secret.attributes, secret.data, secret.path);
  const ttl = resolveTtl(request.ttlSeconds, recipe.ttl, recipe.maxTtl);

  const createdAt = deps.now();
  const expiresAt = createdAt + ttl * 1000;
  const maxExpiresAt = createdAt + recipe.maxTtl * 1000;
  const username = newUserName(engine, new Date(maxExpiresAt + REAP_GRACE_MS), recipe.userPrefix);
  const password = newPassword();
  const leaseId = randomUUID();
  const target = targetLabel(connection);
  const audit = { actor: deps.actor, path: secret.path, lease_id: leaseId, db_user: username, target, ttl };

  await store.leases.recordIntent({
    id: leaseId,
    secretId: secret.id,
    baseId: base.id,
    path: secret.path,
    pool: recipe.pool,
    engine,
    target,
    username,
    createdAt,
    expiresAt,
    maxExpiresAt,
    ownerPid: process.pid,
    ownerHost: hostname(),
    client: request.client,
    revocation: { connection: { ...connection }, username, revocationStatements: recipe.revocationStatements, reassignTo: recipe.reassignTo },
  });

  let client: Target | undefined;
  try {
    deps.progress?.(`Connecting to ${ENGINES[engine].label} at ${connection.host}:${connection.port}`);
    client = await deps.connect(connection, { connectTimeoutMs: CONNECT_TIMEOUT_MS });
    deps.progress?.(`Creating ${username}`);
    await client.createUser({
      username,
      password,
      expiresAt: new Date(expiresAt),
      grants: recipe.grants,
      creationStatements: recipe.creationStatements,
      reassignTo: recipe.reassignTo,
    });
  } catch (error) {
    await settleFailedCreate(deps, leaseId, client, username, { revocationStatements: recipe.revocationStatements, reassignTo: recipe.reassignTo }, error);
    await deps.store.audit.append([{ action: 'lease.create', ...audit, outcome: 'failure', error: errorText(error) }]);
    throw error;
  } finally {
    await client?.close().catch(() => undefined);
  }

  const active = await store.leases.transition(leaseId, ['intent'], 'active');
  if (!active) {
    // A sweep decided the intent was abandoned while we worked: the user is being dropped.
    await deps.store.audit.append([{ action: 'lease.create', ...audit, outcome: 'failure', error: 'the intent was swept before it completed' }]);
    throw failed('lease_swept', 'The lease was revoked by a concurrent sweep before it was ready; try again.');
  }
  await deps.store.audit.append([{ action: 'lease.create', ...audit, outcome: 'success' }]);
  const unattended = await unattendedPoolWarning(store, recipe.pool, deps.now());
  if (unattended) deps.warn?.(unattended);

  return {
    leaseId,
    secretId: secret.id,
    path: secret.path,
    engine,
    host: connection.host,
    port: connection.port,
    database: defaultDatabase(connection) ?? firstSchema(recipe.grants),
    tls: clientTls(connection),
    username,
    password,
    createdAt,
    expiresAt,
    maxExpiresAt,
    ttl,
  };
}

function firstSchema(grants: { schema: string }[]): string | undefined {
  return grants.find((g) => g.schema !== '*')?.schema;
}

/**
 * After a failed create: when the admin connection never opened, no user can exist and the
 * lease ends at once. Otherwise the target has tried to drop its half-made user; if that is
 * uncertain the lease is left for the sweep to retry the drop.
 */
async function settleFailedCreate(
  deps: LeaseDeps,
  leaseId: string,
  client: Target | undefined,
  username: string,
  revokeOptions: RevokeOptions,
  error: unknown,
): Promise<void> {
  const now = deps.now();
  const reason = errorText(error);
  if (client) {
    let gone = false;
    try {
      gone = (await client.revokeUsers([username], revokeOptions)).failed.length === 0;
    } catch {
      gone = false;
    }
    if (!gone) {
      await deps.store.leases.transition(leaseId, ['intent'], 'failed', { attempts: 1, nextAttemptAt: now, lastError: reason });
      return;
    }
  }
  await deps.store.leases.transition(leaseId, ['intent'], 'revoked', { endedAt: now, lastError: reason });
}

export function errorText(error: unknown): string {
  if (error instanceof SyError) return error.message;
  return error instanceof Error ? error.message : String(error);
}
