import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { SyError, failed, interrupted, usageError } from '../errors.js';
import { kindOf } from '../secrets/validate.js';
import { followLink, type LinkedBase } from '../secrets/lookup.js';
import { getSecret } from '../secrets/service.js';
import { MAX_LEASE_SECONDS, type Secret, type SecretRef } from '../model/secret.js';
import { ENGINES, type Engine } from '../model/engines.js';
import { newPassword, newUserName } from '../targets/names.js';
import type { RevokeOptions, Target } from '../targets/target.js';
import { clockSkewRefusal, readServerClock } from './clock.js';
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
  /**
   * Aborted when the user interrupts (Ctrl-C). Issuing stops at the next safe point and leaves
   * nothing: before the user is created the intent is closed at once (no user can exist);
   * after, the user is dropped. A CREATE in flight is let finish, then dropped.
   */
  signal?: AbortSignal;
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
 * command: this layer never sees flag text). It connects and reads the server's clock, which
 * the lease's times follow (refused when this machine's is more than a minute off), records
 * an intent, creates the user, then marks the lease active. A crash between recording and
 * creating leaves an intent that the sweep resolves by dropping the user if it exists; the
 * user's name carries its reap-after bound for the reaper. `ref` may also carry the secret
 * itself, as its caller read it (the API does, to check the client's patterns first).
 */
export async function issueLease(deps: LeaseDeps, ref: SecretRef | { secret: Secret }, request: IssueRequest = {}): Promise<IssuedCredentials> {
  const { store } = deps;
  const { signal } = request;
  stopIfInterrupted(signal);
  const secret = 'secret' in ref ? ref.secret : await getSecret(store, ref, request.version);
  if (kindOf(secret.attributes) !== 'dynamic') {
    throw usageError('not_dynamic', `${secret.path} is not a dynamic secret.`);
  }
  const link = await followLink(store, secret.attributes, secret.data, secret.path);
  const { engine, connection, recipe } = link;
  const ttl = resolveTtl(request.ttlSeconds, recipe.ttl, recipe.maxTtl);

  let client: Target | undefined;
  try {
    // Before anything is recorded: the lease's times come from the server's clock.
    let createdAt: number;
    /** What ends the lease before its user is made: no connection, or clocks that disagree. */
    let refusal: unknown;
    try {
      deps.progress?.(`Connecting to ${ENGINES[engine].label} at ${connection.host}:${connection.port}`);
      client = await unlessInterrupted(deps.connect(connection, { connectTimeoutMs: CONNECT_TIMEOUT_MS }), signal);
      const clock = await readServerClock(deps, client);
      createdAt = clock.server;
      refusal = clockSkewRefusal(clock, connection);
      if (refusal !== undefined) createdAt = deps.now();
    } catch (error) {
      // Interrupted before anything was recorded or sent: nothing to undo.
      if (signal?.aborted) throw interrupted();
      refusal = error;
      createdAt = deps.now();
    }
    return await issueOn(deps, client, refusal, { secret, link, ttl, createdAt, client: request.client, signal });
  } finally {
    // issueOn closes it as soon as the user is made; this is for a failure before that.
    await client?.close().catch(() => undefined);
  }
}

interface IssuePlan {
  secret: Secret;
  link: LinkedBase;
  ttl: number;
  /** By the server's clock, or this machine's when the server's could not be used. */
  createdAt: number;
  /** The API client the lease is issued for. */
  client?: string;
  /** Aborted on Ctrl-C: see IssueRequest.signal. */
  signal?: AbortSignal;
}

/**
 * Records the intent, then creates the user on `client` (unless `refusal` says why not: the
 * intent then ends revoked at once, nothing having been made), then marks the lease active.
 */
async function issueOn(deps: LeaseDeps, client: Target | undefined, refusal: unknown, plan: IssuePlan): Promise<IssuedCredentials> {
  const { store } = deps;
  const { secret, ttl, createdAt } = plan;
  const { base, engine, connection, recipe } = plan.link;
  const expiresAt = createdAt + ttl * 1000;
  const maxExpiresAt = createdAt + recipe.maxTtl * 1000;
  const username = newUserName(engine, new Date(maxExpiresAt + REAP_GRACE_MS), recipe.userPrefix);
  const password = newPassword();
  const leaseId = randomUUID();
  const target = targetLabel(connection);
  const audit = { actor: deps.actor, path: secret.path, lease_id: leaseId, db_user: username, target, ttl };

  stopIfInterrupted(plan.signal);
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
    client: plan.client,
    revocation: { connection: { ...connection }, username, revocationStatements: recipe.revocationStatements, reassignTo: recipe.reassignTo },
  });

  try {
    if (refusal !== undefined || client === undefined) throw refusal;
    stopIfInterrupted(plan.signal);
    deps.progress?.(`Creating ${username}`);
    await client.createUser({
      username,
      password,
      expiresAt: new Date(expiresAt),
      grants: recipe.grants,
      creationStatements: recipe.creationStatements,
      reassignTo: recipe.reassignTo,
      connectionLimit: recipe.connectionLimit,
    });
    // Interrupted while the user was being made: nobody will receive it, so it is dropped below.
    stopIfInterrupted(plan.signal);
  } catch (caught) {
    const error = plan.signal?.aborted ? interrupted() : caught;
    const made = refusal === undefined ? client : undefined;
    await settleFailedCreate(deps, leaseId, made, username, { revocationStatements: recipe.revocationStatements, reassignTo: recipe.reassignTo }, error);
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
  // Only for someone who reads warnings (not a daemon serving the API): it reads the pool registry.
  if (deps.warn) {
    const unattended = await unattendedPoolWarning(store, recipe.pool, deps.now());
    if (unattended) deps.warn(unattended);
  }

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

function stopIfInterrupted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw interrupted();
}

/**
 * `work`, or the interrupted error as soon as `signal` aborts. A connection that opens after
 * that is closed at once: no statement was sent on it, so no user can exist.
 */
function unlessInterrupted(work: Promise<Target>, signal: AbortSignal | undefined): Promise<Target> {
  if (!signal) return work;
  return new Promise<Target>((resolve, reject) => {
    const onAbort = () => {
      work.then((late) => late.close().catch(() => undefined), () => undefined);
      reject(interrupted());
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (client) => {
        signal.removeEventListener('abort', onAbort);
        resolve(client);
      },
      (error) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
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
