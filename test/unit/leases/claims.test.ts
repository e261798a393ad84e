/**
 * Claims: several sy processes (CLIs sweeping before their command, daemons) share one
 * ledger, and a lease is revoked by one of them at a time, never by two.
 */
import { CLAIM_MS } from '../../../src/leases/deps.js';
import { revokeLease } from '../../../src/leases/revoke.js';
import { sweep } from '../../../src/leases/sweep.js';
import { MINUTE } from '../../helpers/fake-clock.js';
import { type LeaseHarness, leaseHarness } from '../../helpers/lease-harness.js';

let h: LeaseHarness;

beforeEach(async () => {
  h = await leaseHarness();
  await h.dynamic('db:pg:app');
});

afterEach(() => h.cleanup());

test('two processes sweeping the same due leases at once never both revoke one of them', async () => {
  const ids = new Set<string>();
  for (let i = 0; i < 20; i++) ids.add((await h.issue('db:pg:app', 60)).lease_id);
  h.clock.advance(MINUTE);
  const other = await h.otherProcess();
  // Each revocation yields, so the two sweeps interleave claim for claim.
  h.pg.beforeRevoke = () => new Promise((resolve) => setTimeout(resolve, 5));
  const reports = await Promise.all([sweep(h.deps, { batchSize: 3 }), sweep(other.deps, { batchSize: 3 })]);
  expect(reports[0].revoked + reports[1].revoked).toBe(20);
  expect(reports[0].revoked).toBeGreaterThan(0);
  expect(reports[1].revoked).toBeGreaterThan(0);
  const revokedNames = h.servers.callsOf('revoke').flatMap((c) => c.usernames);
  expect(revokedNames).toHaveLength(20);
  expect(new Set(revokedNames).size).toBe(20);
  const sweepLines = h.audit().filter((e) => e.action === 'sweep.revoke');
  expect(new Set(sweepLines.map((e) => e.lease_id))).toEqual(ids);
  expect(sweepLines).toHaveLength(20);
});

test('a live claim cannot be taken; an expired one can, and the first claimant can no longer settle', async () => {
  const { lease_id } = await h.issue('db:pg:app');
  const other = await h.otherProcess();
  const now = h.clock.peek();
  expect(await other.store.leases.claim(lease_id, other.deps.claimant, now, CLAIM_MS)).toMatchObject({ state: 'revoking' });
  expect(await h.store.leases.claim(lease_id, h.deps.claimant, now + CLAIM_MS - 1, CLAIM_MS)).toBeUndefined();
  expect(await h.store.leases.claim(lease_id, h.deps.claimant, now + CLAIM_MS, CLAIM_MS)).toMatchObject({ state: 'revoking' });
  expect(await other.store.leases.settleAll(other.deps.claimant, [{ id: lease_id, to: 'revoked' }])).toEqual([undefined]);
  expect((await h.lease(lease_id)).state).toBe('revoking');
  expect(await h.store.leases.settleAll(h.deps.claimant, [{ id: lease_id, to: 'revoked', changes: { endedAt: now } }])).toEqual([
    expect.objectContaining({ state: 'revoked' }),
  ]);
});

test('an ended lease cannot be claimed', async () => {
  const { lease_id } = await h.issue('db:pg:app');
  await revokeLease(h.deps, lease_id);
  expect(await h.store.leases.claim(lease_id, 'someone', h.clock.peek(), CLAIM_MS)).toBeUndefined();
});

test('revoke of a lease another process is revoking waits for it, and does not revoke it a second time', async () => {
  const { lease_id, username } = await h.issue('db:pg:app');
  const other = await h.otherProcess();
  await other.store.leases.claim(lease_id, other.deps.claimant, h.clock.peek(), CLAIM_MS);
  const finished = new Promise((resolve) => setTimeout(resolve, 50)).then(() => {
    h.pg.users.delete(username);
    return other.store.leases.settleAll(other.deps.claimant, [{ id: lease_id, to: 'revoked', changes: { endedAt: h.clock.peek() } }]);
  });
  const lease = await revokeLease(h.deps, lease_id);
  // The other process settled it; this one only waited.
  expect(await finished).toEqual([expect.objectContaining({ state: 'revoked' })]);
  expect(lease.state).toBe('revoked');
  expect(h.servers.callsOf('revoke')).toEqual([]);
});

test('revoke gives up when another process keeps the claim past the wait, and says another process has it', async () => {
  const { lease_id } = await h.issue('db:pg:app');
  const other = await h.otherProcess();
  await other.store.leases.claim(lease_id, other.deps.claimant, h.clock.peek(), 10 * CLAIM_MS);
  // The clock moves past revoke's 15 s wait while it sleeps between tries.
  const timer = setTimeout(() => h.clock.advance(16_000), 20);
  await expect(revokeLease(h.deps, lease_id).finally(() => clearTimeout(timer))).rejects.toMatchObject({ code: 'revoke_busy', message: expect.stringContaining('another sy process') });
  expect((await h.lease(lease_id)).state).toBe('revoking');
  expect(h.servers.callsOf('revoke')).toEqual([]);
});
