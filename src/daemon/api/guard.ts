import { patternsAllow } from '../../clients/patterns.js';
import { forbidden, notFound } from '../../errors.js';
import type { ClientRecord } from '../../model/client.js';
import type { LeaseRecord } from '../../model/lease.js';
import type { Store } from '../../store/store.js';

/**
 * What a client may do (PRODUCT.md, "Clients and the lease API"): its patterns decide which
 * paths it reaches (403), its caps how long and how many leases (403), and it sees only its
 * own leases (another client's is 404, as if it did not exist).
 */
export function checkPath(client: ClientRecord, path: string): void {
  if (!patternsAllow(client.allow, path)) throw forbidden('path_not_allowed', `Client ${client.name} is not allowed ${path}.`);
}

export function checkTtl(client: ClientRecord, ttlSeconds: number): void {
  if (client.maxTtl !== undefined && ttlSeconds > client.maxTtl) {
    throw forbidden('ttl_over_client_cap', `A TTL of ${ttlSeconds} seconds is above client ${client.name}'s max TTL of ${client.maxTtl} seconds.`);
  }
}

/** The client's own lease, or 404 for no such lease and for another client's. */
export async function ownLease(store: Store, client: ClientRecord, leaseId: string): Promise<LeaseRecord> {
  const lease = await store.leases.get(leaseId);
  if (!lease || lease.client !== client.name) throw notFound('lease_not_found', `No lease with id ${leaseId}.`);
  return lease;
}

/**
 * `--max-leases`: its live leases in the store plus the creates this daemon has in flight
 * for it, so that a burst of concurrent requests to one daemon cannot pass the cap. Creates
 * in flight on other daemons of the pool at the same instant are not seen: the cap can be
 * passed by at most one lease per other daemon.
 */
export class LeaseCaps {
  private readonly inFlight = new Map<string, number>();

  async reserve(store: Store, client: ClientRecord): Promise<() => void> {
    const mine = this.inFlight.get(client.name) ?? 0;
    this.inFlight.set(client.name, mine + 1);
    const release = () => {
      const left = (this.inFlight.get(client.name) ?? 1) - 1;
      if (left <= 0) this.inFlight.delete(client.name);
      else this.inFlight.set(client.name, left);
    };
    try {
      // Counted, not listed: a client near a cap of thousands must not pay for reading them all on each create.
      const live = await store.leases.countLive(client.name);
      if (live + mine >= client.maxLeases) {
        throw forbidden('too_many_leases', `Client ${client.name} already holds ${client.maxLeases} active lease${client.maxLeases === 1 ? '' : 's'}, its cap.`);
      }
    } catch (error) {
      release();
      throw error;
    }
    return release;
  }
}
