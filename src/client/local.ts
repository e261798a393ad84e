import type { LeaseDeps } from '../leases/deps.js';
import type { Store } from '../store/store.js';
import { notFound } from '../errors.js';
import { issuedLease, leaseDetails, leaseSummary } from '../io/lease-view.js';
import { issueLease } from '../leases/issue.js';
import { renewLease } from '../leases/renew.js';
import { revokeLease } from '../leases/revoke.js';
import { canonicalPath } from '../secrets/path.js';
import { getSecret } from '../secrets/service.js';
import { kindOf } from '../secrets/validate.js';
import type { LeaseService } from './lease-service.js';

/** What the local service needs of the CLI's context: the store, opened on first use. */
export interface LocalStoreAccess {
  store(): Promise<Store>;
  leaseDeps(): Promise<LeaseDeps>;
  close(): Promise<void>;
}

/** Leases on the store itself, with the master key: what every command did before clients. */
export function localLeaseService(ctx: LocalStoreAccess): LeaseService {
  return {
    async issue(ref, request) {
      return issuedLease(await issueLease(await ctx.leaseDeps(), ref, request));
    },
    async list(filter) {
      const store = await ctx.store();
      const path = filter.path === undefined ? undefined : canonicalPath(filter.path);
      const leases = await store.leases.list({ secretId: filter.recordUid, path, all: Boolean(filter.all), limit: filter.limit ?? 1000, offset: filter.offset });
      return leases.map(leaseSummary);
    },
    async lookup(leaseId) {
      const lease = await (await ctx.store()).leases.get(leaseId);
      if (!lease) throw notFound('lease_not_found', `No lease with id ${leaseId}.`);
      return leaseDetails(lease, Date.now());
    },
    async renew(leaseId, incrementSeconds) {
      const { lease, capped, unchanged } = await renewLease(await ctx.leaseDeps(), leaseId, incrementSeconds);
      return { lease: leaseDetails(lease, Date.now()), capped, unchanged };
    },
    async revoke(leaseId) {
      await revokeLease(await ctx.leaseDeps(), leaseId);
    },
    async read(ref, request) {
      const secret = await getSecret(await ctx.store(), ref, request.version);
      if (kindOf(secret.attributes) !== 'dynamic') return { secret };
      // Pinned to what was read, so the lease comes from that very version.
      const deps = await ctx.leaseDeps();
      return { lease: issuedLease(await issueLease(deps, { id: secret.id }, { ttlSeconds: request.ttlSeconds, version: secret.version })) };
    },
    close: () => ctx.close(),
  };
}
