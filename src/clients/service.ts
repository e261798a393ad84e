/**
 * The clients of the lease API, as the admin commands manage them: every change is checked,
 * done on the store, and audited (`client.create`, `client.update`, `client.delete`, with the
 * patterns, caps and the key's fingerprint, never a key). Takes typed values (seconds,
 * numbers, PEM text), returns values, never prints.
 */
import type { AuditEvent } from '../audit/chain.js';
import { SyError, failed, notFound, usageError } from '../errors.js';
import type { LeaseDeps } from '../leases/deps.js';
import { revokeLease } from '../leases/revoke.js';
import { CLIENT_NAME, type ClientRecord, DEFAULT_MAX_LEASES } from '../model/client.js';
import { LIVE_LEASE_STATES } from '../model/lease.js';
import { MAX_LEASE_SECONDS } from '../model/secret.js';
import type { Store } from '../store/store.js';
import { isoSeconds } from '../util/time.js';
import { type ClientKeyPair, keyFingerprint, newClientKeyPair } from './keys.js';
import { canonicalPattern } from './patterns.js';

/** The most leases one client may be allowed to hold at once. */
export const MAX_LEASES_CAP = 100_000;

export interface ClientSettings {
  allow?: string[];
  /** Seconds. */
  maxTtl?: number;
  maxLeases?: number;
  /** SPKI PEM, already checked (keys.ts). */
  publicKey?: string;
}

/** A client as listings show it: its key only as a fingerprint. */
export interface ClientView {
  name: string;
  allow: string[];
  max_ttl: number | null;
  max_leases: number;
  /** Its leases that are not ended (a user may exist for each). */
  active_leases: number;
  key_fingerprint: string;
  created_at: string;
  updated_at: string;
}

export function checkClientName(name: string): string {
  if (typeof name !== 'string' || !CLIENT_NAME.test(name)) {
    throw usageError('invalid_client_name', `${JSON.stringify(String(name).slice(0, 80))} is not a valid client name: use 1 to 64 letters, digits, dots, underscores, @ and -.`);
  }
  return name;
}

/** Patterns in their canonical spelling, each once; at least one. */
export function checkPatterns(patterns: readonly string[]): string[] {
  if (patterns.length === 0) throw usageError('missing_allow', 'Give at least one --allow pattern (a path, a path ending in ":*", or "*").');
  return [...new Set(patterns.map(canonicalPattern))];
}

export function checkMaxTtl(seconds: number): number {
  if (!(seconds >= 1) || seconds > MAX_LEASE_SECONDS) {
    throw usageError('ttl_too_long', `--max-ttl must be between 1 and ${MAX_LEASE_SECONDS} seconds (24 hours).`);
  }
  return seconds;
}

export async function createClient(store: Store, name: string, settings: ClientSettings, now: number): Promise<{ client: ClientView; privateKey?: string }> {
  checkClientName(name);
  const allow = checkPatterns(settings.allow ?? []);
  if (settings.maxTtl !== undefined) checkMaxTtl(settings.maxTtl);
  const pair: ClientKeyPair | undefined = settings.publicKey === undefined ? newClientKeyPair() : undefined;
  const record: ClientRecord = {
    name,
    publicKey: settings.publicKey ?? pair!.publicKey,
    allow,
    ...(settings.maxTtl === undefined ? {} : { maxTtl: settings.maxTtl }),
    maxLeases: settings.maxLeases ?? DEFAULT_MAX_LEASES,
    createdAt: now,
    updatedAt: now,
  };
  await audited(store, { action: 'client.create', detail: auditDetail(name, record) }, () => store.clients.create(record));
  return { client: clientView(record, 0), privateKey: pair?.privateKey };
}

export async function updateClient(store: Store, name: string, settings: ClientSettings, now: number): Promise<ClientView> {
  checkClientName(name);
  const allow = settings.allow === undefined ? undefined : checkPatterns(settings.allow);
  if (settings.maxTtl !== undefined) checkMaxTtl(settings.maxTtl);
  if (allow === undefined && settings.maxTtl === undefined && settings.maxLeases === undefined && settings.publicKey === undefined) {
    throw usageError('nothing_to_update', 'Nothing to change: give --allow, --max-ttl, --max-leases or --public-key.');
  }
  const current = await store.clients.get(name);
  if (!current) throw clientNotFound(name);
  const next: ClientRecord = {
    ...current,
    ...(allow === undefined ? {} : { allow }),
    ...(settings.maxTtl === undefined ? {} : { maxTtl: settings.maxTtl }),
    ...(settings.maxLeases === undefined ? {} : { maxLeases: settings.maxLeases }),
    ...(settings.publicKey === undefined ? {} : { publicKey: settings.publicKey }),
    updatedAt: now,
  };
  const detail = { ...auditDetail(name, next), ...(settings.publicKey !== undefined && settings.publicKey !== current.publicKey ? { new_key: true } : {}) };
  await audited(store, { action: 'client.update', detail }, () => store.clients.update(next));
  return clientView(next, await activeLeaseCount(store, name));
}

export async function describeClient(store: Store, name: string): Promise<ClientView> {
  checkClientName(name);
  const client = await store.clients.get(name);
  if (!client) throw clientNotFound(name);
  return clientView(client, await activeLeaseCount(store, name));
}

export async function listClients(store: Store): Promise<ClientView[]> {
  const clients = await store.clients.list();
  if (clients.length === 0) return [];
  // One listing of every live lease (checked against the census on the way), counted by client.
  const counts = new Map<string, number>();
  for (const lease of await store.leases.list({ limit: Number.MAX_SAFE_INTEGER })) {
    if (lease.client !== undefined) counts.set(lease.client, (counts.get(lease.client) ?? 0) + 1);
  }
  return clients.map((client) => clientView(client, counts.get(client.name) ?? 0));
}

export interface DeletedClient {
  name: string;
  /** Leases revoked with --revoke-leases. */
  revoked_leases: string[];
  /** Its leases left to run out (without --revoke-leases), or that could not be revoked now (retried by the sweep). */
  remaining_leases: string[];
}

/**
 * Deletes the client first, so that no daemon issues it another lease, then (with
 * `revokeLeases`) revokes every lease it holds. A lease that cannot be revoked now stays
 * with the sweep, which retries it; the deletion is then reported as failed (exit 1).
 */
export async function deleteClient(deps: LeaseDeps, name: string, options: { revokeLeases: boolean }): Promise<DeletedClient> {
  const { store } = deps;
  checkClientName(name);
  const existing = await store.clients.get(name);
  if (!existing) throw clientNotFound(name);
  await audited(store, { action: 'client.delete', detail: auditDetail(name, existing) }, async () => {
    if (!(await store.clients.delete(name))) throw clientNotFound(name);
  });
  const live = await store.leases.list({ client: name, limit: Number.MAX_SAFE_INTEGER });
  const result: DeletedClient = { name, revoked_leases: [], remaining_leases: [] };
  if (!options.revokeLeases) {
    result.remaining_leases = live.map((lease) => lease.id);
    return result;
  }
  const errors: string[] = [];
  for (const lease of live) {
    try {
      const ended = await revokeLease(deps, lease.id);
      if ((LIVE_LEASE_STATES as readonly string[]).includes(ended.state)) result.remaining_leases.push(lease.id);
      else result.revoked_leases.push(lease.id);
    } catch (error) {
      if (!(error instanceof SyError) || error.kind !== 'failed') throw error;
      result.remaining_leases.push(lease.id);
      errors.push(error.message);
    }
  }
  if (errors.length > 0) {
    throw failed('client_leases_not_revoked',
      `Client ${name} was deleted, but ${errors.length} of its ${live.length} leases could not be revoked now: ${errors[0]}`,
      'The sweep retries them; see `sy dynamic lease list`.');
  }
  return result;
}

/**
 * Takes back a client just created whose private key never reached the admin (its output
 * could not be written): a client nobody holds the key of is of no use, and is better gone.
 */
export async function withdrawClient(store: Store, name: string, reason: string): Promise<void> {
  await audited(store, { action: 'client.delete', detail: { client: name, reason } }, () => store.clients.delete(name));
}

export const clientNotFound = (name: string) => notFound('client_not_found', `No client named ${name}.`);

async function activeLeaseCount(store: Store, name: string): Promise<number> {
  return (await store.leases.list({ client: name, limit: Number.MAX_SAFE_INTEGER })).length;
}

export function clientView(client: ClientRecord, activeLeases: number): ClientView {
  return {
    name: client.name,
    allow: client.allow,
    max_ttl: client.maxTtl ?? null,
    max_leases: client.maxLeases,
    active_leases: activeLeases,
    key_fingerprint: fingerprintOf(client.publicKey),
    created_at: isoSeconds(client.createdAt),
    updated_at: isoSeconds(client.updatedAt),
  };
}

function fingerprintOf(publicKey: string): string {
  try {
    return keyFingerprint(publicKey);
  } catch {
    return 'unreadable';
  }
}

function auditDetail(name: string, client: ClientRecord): Record<string, unknown> {
  return { client: name, allow: client.allow, max_ttl: client.maxTtl ?? null, max_leases: client.maxLeases, key_fingerprint: fingerprintOf(client.publicKey) };
}

/** Refuses a log the append would refuse before anything changes; records the outcome either way. */
async function audited<T>(store: Store, event: Omit<AuditEvent, 'outcome' | 'error'>, operation: () => Promise<T>): Promise<T> {
  await store.audit.check();
  try {
    const result = await operation();
    await store.audit.append([{ ...event, outcome: 'success' }]);
    return result;
  } catch (error) {
    if (error instanceof SyError && error.kind !== 'store') await store.audit.append([{ ...event, outcome: 'failure', error: error.message }]);
    throw error;
  }
}
