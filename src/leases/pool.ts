import { DEFAULT_POOL } from '../model/secret.js';
import { LIVE_LEASE_STATES } from '../model/lease.js';
import { kindOf } from '../secrets/validate.js';
import type { PoolMember } from '../store/pools.js';
import type { Store } from '../store/store.js';
import { isoSeconds } from '../util/time.js';

/** A daemon marks itself seen this often. */
export const HEARTBEAT_MS = 5_000;
/** A member is live while it was seen within three heartbeats. */
export const LIVE_WINDOW_MS = 3 * HEARTBEAT_MS;

export const isLiveMember = (member: PoolMember, now: number): boolean => now - member.lastSeen <= LIVE_WINDOW_MS;

/** Does `member` revoke the leases of `pool`? A daemon started without --pool serves them all. */
export const serves = (member: PoolMember, pool: string): boolean => member.pool === undefined || member.pool === pool;

/** One entry of `sy pool list`, in PRODUCT.md's shape. */
export interface PoolView {
  pool: string;
  daemons: { host: string; pid: number; version: string; started_at: string; last_seen: string }[];
  /** Leases of the pool that `lease list` shows (a user may exist on the target). */
  active_leases: number;
  /** The earliest expiry of the pool's active leases; null when it has none. */
  next_expiry: string | null;
}

/** A pool with leases and no live daemon: nothing revokes them on time. */
export const unattended = (view: PoolView): boolean => view.active_leases > 0 && view.daemons.length === 0;

/** Enough for every secret and every live lease of any store sy is meant for. */
const EVERYTHING = 1_000_000;

/**
 * Every pool named by a dynamic secret, a live lease or a running daemon, with its live
 * members (daemons without a pool are listed under every pool), sorted by name. Leases are
 * read whole (each one checked by the store), not counted from plain columns.
 */
export async function listPools(store: Store, now: number): Promise<PoolView[]> {
  const [members, secrets, leases] = await Promise.all([
    store.pools.list(),
    store.secrets.search({ limit: EVERYTHING }),
    store.leases.list({ limit: EVERYTHING }),
  ]);
  const live = members.filter((m) => isLiveMember(m, now));
  const names = new Set<string>();
  for (const secret of secrets) {
    if (kindOf(secret.attributes) === 'dynamic') names.add(poolOf(secret.attributes.pool));
  }
  for (const lease of leases) names.add(lease.pool);
  for (const member of live) if (member.pool !== undefined) names.add(member.pool);

  return [...names].sort().map((pool) => {
    const own = leases.filter((l) => l.pool === pool && (LIVE_LEASE_STATES as readonly string[]).includes(l.state));
    const expiries = own.filter((l) => l.state === 'active').map((l) => l.expiresAt);
    return {
      pool,
      daemons: live.filter((m) => serves(m, pool)).map((m) => ({
        host: m.host,
        pid: m.pid,
        version: m.version,
        started_at: isoSeconds(m.startedAt),
        last_seen: isoSeconds(m.lastSeen),
      })),
      active_leases: own.length,
      next_expiry: expiries.length ? isoSeconds(Math.min(...expiries)) : null,
    };
  });
}

function poolOf(value: unknown): string {
  return typeof value === 'string' && value !== '' ? value : DEFAULT_POOL;
}

/**
 * The warning of `lease create` in a shared store when no live daemon serves the lease's
 * pool; undefined when one does, or in a store of one machine (its own commands sweep it).
 * A registry that cannot be read is no reason to fail a lease that exists: no warning then.
 */
export async function unattendedPoolWarning(store: Store, pool: string, now: number): Promise<string | undefined> {
  if (!isSharedStore(store)) return undefined;
  let members: PoolMember[];
  try {
    members = await store.pools.list();
  } catch {
    return undefined;
  }
  if (members.some((m) => isLiveMember(m, now) && serves(m, pool))) return undefined;
  return `no live daemon serves pool ${pool}, so this lease will not be revoked on time; start \`sy daemon --pool ${pool}\` (see \`sy pool list\`).`;
}

function isSharedStore(store: Store): boolean {
  return store.kind === 'postgresql';
}
