/**
 * The columns of the store's rows, the same in every kind of store: both MAC the same values
 * (records.ts), so `sy store copy` moves rows between them unchanged. Each store adds its
 * row's `mac` (nullable in SQLite, where schema-1 rows had none until migrated).
 */
import { open, seal } from '../keys/crypto.js';
import type { ClientRecord } from '../model/client.js';
import type { LeaseChanges, LeaseRecord, LeaseRevocation, LeaseState, NewLease } from '../model/lease.js';
import type { RecordMac } from './records.js';
import type { SecretKind } from '../model/secret.js';

export interface SecretColumns {
  id: string;
  path: string;
  kind: SecretKind;
  linked_path: string | null;
  current_version: number;
  created: string;
  last_modified: string;
}

export interface VersionColumns {
  secret_id: string;
  version: number;
  created: string;
  sealed: Buffer;
}

export interface LeaseColumns {
  id: string;
  secret_id: string;
  base_id: string;
  path: string;
  pool: string;
  engine: string;
  target: string;
  username: string;
  state: LeaseState;
  created_at: number;
  expires_at: number;
  max_expires_at: number;
  attempts: number;
  next_attempt_at: number | null;
  last_error: string | null;
  ended_at: number | null;
  owner_pid: number | null;
  owner_host: string | null;
  claimant: string | null;
  claimed_until: number | null;
  /** The API client the lease was issued for (store schema 4 on); absent in older rows. */
  client?: string | null;
  sealed: Buffer;
}

/** The associated data that binds a lease's sealed part to its id. */
export const leaseAad = (id: string): string => `sy/lease/v1/${id}`;

/** A lease's row, already checked against its MAC, as the record the lease code uses. */
export function leaseRecord(row: LeaseColumns, dataKey: Buffer): LeaseRecord {
  const revocation = JSON.parse(open(dataKey, row.sealed, leaseAad(row.id)).toString('utf8')) as LeaseRevocation;
  return {
    id: row.id,
    secretId: row.secret_id,
    baseId: row.base_id,
    path: row.path,
    pool: row.pool,
    engine: row.engine,
    target: row.target,
    username: row.username,
    state: row.state,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    maxExpiresAt: row.max_expires_at,
    attempts: row.attempts,
    nextAttemptAt: row.next_attempt_at ?? undefined,
    lastError: row.last_error ?? undefined,
    endedAt: row.ended_at ?? undefined,
    ...(row.client != null ? { client: row.client } : {}),
    revocation,
  };
}

/** Every column but the sealed payload and the MAC, in the order the MAC covers them. */
export const LEASE_COLUMNS = [
  'id', 'secret_id', 'base_id', 'path', 'pool', 'engine', 'target', 'username', 'state', 'created_at', 'expires_at',
  'max_expires_at', 'attempts', 'next_attempt_at', 'last_error', 'ended_at', 'owner_pid', 'owner_host', 'claimant', 'claimed_until',
] as const;

/**
 * The values a lease's MAC covers: LEASE_COLUMNS, then the client when there is one. A lease
 * without a client keeps the MAC it had before the column existed (no store needs re-MACing
 * to upgrade), while a client added to, removed from or changed on a row breaks its MAC: the
 * array's length and last value are both covered.
 */
export function leaseMacValues(row: LeaseColumns): unknown[] {
  const values: unknown[] = LEASE_COLUMNS.map((c) => row[c]);
  if (row.client != null) values.push({ client: row.client });
  return values;
}

export function leaseMac(macs: RecordMac, row: LeaseColumns): Buffer {
  return macs.of('lease', leaseMacValues(row), row.sealed);
}

/** Checks a lease row's MAC (as read, possibly absent). */
export function leaseMacHolds(macs: RecordMac, row: LeaseColumns & { mac: Buffer | null }): boolean {
  return macs.check(row.mac, 'lease', leaseMacValues(row), row.sealed) !== undefined;
}

/** The row after a state change, MACed again: the same for every store. */
export function nextLeaseRow<Row extends LeaseColumns & { mac: Buffer | null }>(
  macs: RecordMac,
  row: Row,
  to: LeaseState,
  changes: LeaseChanges,
  claim: { claimant: string | null; claimedUntil: number | null },
): Row & { mac: Buffer } {
  const next = {
    ...row,
    state: to,
    expires_at: changes.expiresAt ?? row.expires_at,
    attempts: changes.attempts ?? row.attempts,
    next_attempt_at: changes.nextAttemptAt === undefined ? row.next_attempt_at : changes.nextAttemptAt,
    last_error: changes.lastError === undefined ? row.last_error : changes.lastError,
    ended_at: changes.endedAt === undefined ? row.ended_at : changes.endedAt,
    claimant: claim.claimant,
    claimed_until: claim.claimedUntil,
  };
  return { ...next, mac: leaseMac(macs, next) };
}

/** The row of a new lease's intent, its revocation sealed to its id: the same in every store. */
export function intentRow(lease: NewLease, dataKey: Buffer): LeaseColumns {
  const sealed = seal(dataKey, Buffer.from(JSON.stringify(lease.revocation)), leaseAad(lease.id));
  return {
    id: lease.id, secret_id: lease.secretId, base_id: lease.baseId, path: lease.path, pool: lease.pool, engine: lease.engine,
    target: lease.target, username: lease.username, state: 'intent', created_at: lease.createdAt, expires_at: lease.expiresAt,
    max_expires_at: lease.maxExpiresAt, attempts: 0, next_attempt_at: null, last_error: null, ended_at: null,
    owner_pid: lease.ownerPid, owner_host: lease.ownerHost, claimant: null, claimed_until: null, client: lease.client ?? null, sealed,
  };
}

/**
 * A client of the lease API: plain columns (nothing in it is secret; its key is the public
 * half), every one covered by the row's MAC, so patterns, caps and key change only with the
 * store key. `allow` is the patterns as a JSON array.
 */
export interface ClientColumns {
  name: string;
  public_key: string;
  allow: string;
  max_ttl: number | null;
  max_leases: number;
  created_at: number;
  updated_at: number;
}

export const CLIENT_COLUMNS = ['name', 'public_key', 'allow', 'max_ttl', 'max_leases', 'created_at', 'updated_at'] as const;

/** The meta row of the census of clients (every row: a client deleted or brought back behind sy's back is found by any read). */
export const CLIENT_CENSUS = 'client_census';
export const CLIENT_CENSUS_WHAT = 'its clients';

export const clientMac = (macs: RecordMac, row: ClientColumns): Buffer => macs.of('client', CLIENT_COLUMNS.map((c) => row[c]));

export function clientRow(record: ClientRecord): ClientColumns {
  return {
    name: record.name,
    public_key: record.publicKey,
    allow: JSON.stringify(record.allow),
    max_ttl: record.maxTtl ?? null,
    max_leases: record.maxLeases,
    created_at: record.createdAt,
    updated_at: record.updatedAt,
  };
}

/** A client's row, already checked against its MAC, as the record. */
export function clientRecord(row: ClientColumns): ClientRecord {
  return {
    name: row.name,
    publicKey: row.public_key,
    allow: JSON.parse(row.allow) as string[],
    ...(row.max_ttl === null ? {} : { maxTtl: row.max_ttl }),
    maxLeases: row.max_leases,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
