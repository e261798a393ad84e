import { notFound } from '../errors.js';
import { issuedLease, leaseDetails, leaseSummary } from '../io/lease-view.js';
import type { LeaseDeps } from '../leases/deps.js';
import type { LeaseService } from './lease-service.js';

/** The LeaseService of a store: the lease operations themselves, with the master key. */
export function localLeaseService(leaseDeps: () => Promise<LeaseDeps>): LeaseService {
  return {
    async issue(ref, request) {
      const { issueLease } = await import('../leases/issue.js');
      return issuedLease(await issueLease(await leaseDeps(), ref, request));
    },
    async list(filter) {
      const { store } = await leaseDeps();
      const leases = await store.leases.list({ secretId: filter.recordUid, path: filter.path, all: Boolean(filter.all), limit: 1000 });
      return leases.map(leaseSummary);
    },
    async lookup(leaseId) {
      const lease = await (await leaseDeps()).store.leases.get(leaseId);
      if (!lease) throw notFound('lease_not_found', `No lease with id ${leaseId}.`);
      return leaseDetails(lease, Date.now());
    },
    async renew(leaseId, incrementSeconds) {
      const { renewLease } = await import('../leases/renew.js');
      const { lease, capped, unchanged } = await renewLease(await leaseDeps(), leaseId, incrementSeconds);
      return { lease: leaseDetails(lease, Date.now()), capped, unchanged };
    },
    async revoke(leaseId) {
      const { revokeLease } = await import('../leases/revoke.js');
      await revokeLease(await leaseDeps(), leaseId);
    },
    async close() {
      // The caller opened the store and closes it.
    },
  };
}
