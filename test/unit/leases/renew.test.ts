/**
 * Renewing a lease: from now, never shorter, never past the max TTL fixed at issue, never
 * for an expired or ended lease; the server's expiry moves before the ledger's.
 */
import { revokeLease } from '../../../src/leases/revoke.js';
import { SECOND } from '../../helpers/fake-clock.js';
import { type LeaseHarness, leaseHarness } from '../../helpers/lease-harness.js';

let h: LeaseHarness;

beforeEach(async () => {
  h = await leaseHarness();
  await h.dynamic('db:pg:app'); // ttl 600 s, maxTtl 3600 s
});

afterEach(() => h.cleanup());

test('extends the lease from now by the increment, on the server (VALID UNTIL) and in the ledger', async () => {
  const { lease_id, username } = await h.issue('db:pg:app');
  h.clock.advance(100 * SECOND);
  const result = await h.renew(lease_id, 900);
  const expected = h.clock.peek() + 900 * SECOND;
  expect(result).toMatchObject({ capped: false, unchanged: false, lease: { state: 'active', expiresAt: expected } });
  expect((await h.lease(lease_id)).expiresAt).toBe(expected);
  expect(h.pg.users.get(username)!.validUntil).toEqual(new Date(expected));
  expect(h.servers.open).toBe(0);
  expect(h.audit().at(-1)).toMatchObject({ action: 'lease.renew', outcome: 'success', ttl: 900 });
});

test("without an increment, the recipe's ttl", async () => {
  const { lease_id } = await h.issue('db:pg:app', 60);
  h.clock.advance(30 * SECOND);
  const result = await h.renew(lease_id);
  expect(result.lease.expiresAt).toBe(h.clock.peek() + 600 * SECOND);
});

test('never shortens: an increment that would end it sooner keeps the expiry and touches no server', async () => {
  const { lease_id } = await h.issue('db:pg:app');
  const before = await h.lease(lease_id);
  h.clock.advance(100 * SECOND); // 500 s left
  const result = await h.renew(lease_id, 60);
  expect(result).toMatchObject({ unchanged: true, capped: false });
  expect((await h.lease(lease_id)).expiresAt).toBe(before.expiresAt);
  expect(h.servers.callsOf('renew')).toEqual([]);
  expect(h.audit().at(-1)).toMatchObject({ action: 'lease.renew', outcome: 'success', ttl: 500, detail: { unchanged: true } });
});

test('is capped at the max TTL, and says so as a value rather than printing it', async () => {
  const { lease_id } = await h.issue('db:pg:app', 3000);
  const { maxExpiresAt } = await h.lease(lease_id);
  h.clock.advance(2900 * SECOND);
  const result = await h.renew(lease_id, 3600);
  expect(result).toMatchObject({ capped: true, unchanged: false, lease: { expiresAt: maxExpiresAt } });
  expect(h.warnings).toEqual([]);
  // At the max already: capped and unchanged.
  h.clock.advance(100 * SECOND);
  expect(await h.renew(lease_id, 3600)).toMatchObject({ capped: true, unchanged: true });
});

test('an increment over 24 h is refused', async () => {
  const { lease_id } = await h.issue('db:pg:app');
  await expect(h.renew(lease_id, 86401)).rejects.toMatchObject({ code: 'ttl_too_long' });
});

test('an expired lease stays expired: refused, and nothing changes', async () => {
  const { lease_id } = await h.issue('db:pg:app');
  const before = await h.lease(lease_id);
  h.clock.set(before.expiresAt);
  await expect(h.renew(lease_id, 600)).rejects.toMatchObject({ code: 'lease_expired' });
  expect(await h.lease(lease_id)).toEqual(before);
  expect(h.servers.callsOf('renew')).toEqual([]);
});

test('an ended lease cannot be renewed; an unknown one is not found', async () => {
  const { lease_id } = await h.issue('db:pg:app');
  await revokeLease(h.deps, lease_id);
  await expect(h.renew(lease_id, 600)).rejects.toMatchObject({ code: 'lease_not_active', message: expect.stringContaining('revoked') });
  await expect(h.renew('00000000-0000-4000-8000-000000000000')).rejects.toMatchObject({ code: 'lease_not_found' });
});

test('a server that fails the renewal leaves the ledger as it was, and the failure is audited', async () => {
  const { lease_id } = await h.issue('db:pg:app');
  const before = await h.lease(lease_id);
  h.pg.failRenew();
  await expect(h.renew(lease_id, 900)).rejects.toMatchObject({ code: 'target_failed' });
  expect(await h.lease(lease_id)).toEqual(before);
  expect(h.audit().at(-1)).toMatchObject({ action: 'lease.renew', outcome: 'failure' });
});

test('a revoke that lands while the server renews wins: the renewal is refused and the ledger keeps it revoked', async () => {
  const { lease_id } = await h.issue('db:pg:app');
  const other = await h.otherProcess();
  h.pg.beforeRenew = async () => {
    h.pg.beforeRenew = undefined;
    await revokeLease(other.deps, lease_id);
  };
  await expect(h.renew(lease_id, 900)).rejects.toMatchObject({ code: 'lease_not_active' });
  expect((await h.lease(lease_id)).state).toBe('revoked');
});
