/**
 * Leases issued for an API client: the lease records its client, and the audit log names the
 * client as the actor of what was done for it (deps.actor, set per request by a daemon on a
 * shared store handle), while the handle's own actor stays on everything else.
 */
import { clientActor } from '../../../src/model/client.js';
import { issueLease } from '../../../src/leases/issue.js';
import { renewLease } from '../../../src/leases/renew.js';
import { revokeLease } from '../../../src/leases/revoke.js';
import { type LeaseHarness, leaseHarness } from '../../helpers/lease-harness.js';

let h: LeaseHarness;

beforeEach(async () => {
  h = await leaseHarness();
  await h.dynamic('db:pg:app');
});

afterEach(() => h.cleanup());

test('issue, renew and revoke for a client: the lease is its, each line names it; the same handle acts for itself after', async () => {
  const forClient = { ...h.deps, actor: clientActor('ci-runner') };
  const issued = await issueLease(forClient, { path: 'db:pg:app' }, { ttlSeconds: 60, client: 'ci-runner' });
  expect(await h.lease(issued.leaseId)).toMatchObject({ client: 'ci-runner', state: 'active' });
  expect((await h.store.leases.list({ client: 'ci-runner', limit: 10 })).map((l) => l.id)).toEqual([issued.leaseId]);
  await renewLease(forClient, issued.leaseId, 120);
  await revokeLease(forClient, issued.leaseId);

  const own = await issueLease(h.deps, { path: 'db:pg:app' }, { ttlSeconds: 60 });
  expect(await h.lease(own.leaseId)).not.toHaveProperty('client');
  await revokeLease(h.deps, own.leaseId);

  expect(h.audit().map((e) => [e.action, e.actor, e.lease_id])).toEqual([
    ['lease.create', 'client:ci-runner', issued.leaseId],
    ['lease.renew', 'client:ci-runner', issued.leaseId],
    ['lease.revoke', 'client:ci-runner', issued.leaseId],
    ['lease.create', 'unit@test', own.leaseId],
    ['lease.revoke', 'unit@test', own.leaseId],
  ]);
  // The actor sits where it always does: second, after the time (lines read alike).
  expect(Object.keys(h.audit()[0]).slice(0, 3)).toEqual(['time', 'actor', 'action']);
});
