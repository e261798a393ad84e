/**
 * Revoking a lease: it is `revoking` (claimed) while the server works, `revoked` only when
 * the server reports the user gone, otherwise `failed` with the reason and a backoff, and
 * `irrevocable` after MAX_ATTEMPTS; `--force` forgets it.
 */
import { CLAIM_MS, MAX_ATTEMPTS, retryDelayMs } from '../../../src/leases/deps.js';
import { revokeClaimed, revokeLease } from '../../../src/leases/revoke.js';
import { sweep } from '../../../src/leases/sweep.js';
import type { LeaseRecord } from '../../../src/model/lease.js';
import { SECOND } from '../../helpers/fake-clock.js';
import { FAKE_HOST, type LeaseHarness, leaseHarness } from '../../helpers/lease-harness.js';

let h: LeaseHarness;

beforeEach(async () => {
  h = await leaseHarness();
  await h.dynamic('db:pg:app');
});

afterEach(() => h.cleanup());

test('active → revoking (claimed by this process) while the server drops the user → revoked once it is gone', async () => {
  const { lease_id, username } = await h.issue('db:pg:app');
  let during: LeaseRecord | undefined;
  h.pg.beforeRevoke = async () => {
    during = await h.lease(lease_id);
  };
  h.clock.advance(10 * SECOND);
  const lease = await revokeLease(h.deps, lease_id);
  expect(during?.state).toBe('revoking');
  expect(lease).toMatchObject({ state: 'revoked', endedAt: h.clock.peek() });
  expect(h.pg.has(username)).toBe(false);
  expect(h.servers.open).toBe(0);
  expect(h.audit().at(-1)).toMatchObject({ action: 'lease.revoke', outcome: 'success', lease_id, db_user: username });
});

test('revoking an ended lease again succeeds without asking the server', async () => {
  const { lease_id } = await h.issue('db:pg:app');
  const first = await revokeLease(h.deps, lease_id);
  const calls = h.servers.calls.length;
  expect(await revokeLease(h.deps, lease_id)).toEqual(first);
  expect(h.servers.calls.length).toBe(calls);
});

test('a user the server reports still present after the drop: failed, with its reason and a backoff', async () => {
  const { lease_id, username } = await h.issue('db:pg:app');
  h.pg.keepAfterDrop(username, 'role has dependent objects');
  const error = await revokeLease(h.deps, lease_id).catch((e: unknown) => e);
  expect(error).toMatchObject({ code: 'revoke_failed', message: expect.stringContaining('role has dependent objects') });
  expect(await h.lease(lease_id)).toMatchObject({
    state: 'failed',
    attempts: 1,
    nextAttemptAt: h.clock.peek() + retryDelayMs(1),
    lastError: expect.stringContaining('role has dependent objects'),
  });
  expect(h.pg.has(username)).toBe(true);
  expect(h.audit().at(-1)).toMatchObject({ action: 'lease.revoke', outcome: 'failure', detail: { attempts: 1, state: 'failed' } });
});

test('the backoff doubles from 5 s, capped at an hour; after MAX_ATTEMPTS every 6 hours', () => {
  expect([1, 2, 3, 4].map(retryDelayMs)).toEqual([5_000, 10_000, 20_000, 40_000]);
  expect(retryDelayMs(MAX_ATTEMPTS - 1)).toBe(Math.min(5_000 * 2 ** (MAX_ATTEMPTS - 2), 3600_000));
  expect(retryDelayMs(20)).toBe(6 * 3600_000);
});

test('failed leases are retried by the sweep only once their backoff has passed, then become irrevocable', async () => {
  const { lease_id, username } = await h.issue('db:pg:app');
  h.pg.unreachable = true;
  await expect(revokeLease(h.deps, lease_id)).rejects.toMatchObject({ code: 'revoke_failed' });
  for (let attempts = 1; attempts < MAX_ATTEMPTS; attempts++) {
    const lease = await h.lease(lease_id);
    expect(lease).toMatchObject({ state: 'failed', attempts });
    // Just before it is due: nothing happens.
    h.clock.set(lease.nextAttemptAt! - 1);
    expect(await sweep(h.deps)).toMatchObject({ revoked: 0, failed: 0 });
    h.clock.set(lease.nextAttemptAt!);
    expect(await sweep(h.deps)).toMatchObject({ revoked: 0, failed: 1, irrevocable: attempts + 1 === MAX_ATTEMPTS ? 1 : 0 });
  }
  const irrevocable = await h.lease(lease_id);
  expect(irrevocable).toMatchObject({ state: 'irrevocable', attempts: MAX_ATTEMPTS, nextAttemptAt: h.clock.peek() + 6 * 3600_000 });
  expect(irrevocable.lastError).toMatch(/connection refused/);

  // Still retried, rarely: once the server is back, it is revoked.
  h.pg.unreachable = false;
  h.clock.set(irrevocable.nextAttemptAt!);
  expect(await sweep(h.deps)).toMatchObject({ revoked: 1, failed: 0 });
  expect(await h.lease(lease_id)).toMatchObject({ state: 'revoked', lastError: undefined, nextAttemptAt: undefined });
  expect(h.pg.has(username)).toBe(false);
});

test('--force on an unreachable server forgets the lease, says the user may remain, and does not fail', async () => {
  const { lease_id, username } = await h.issue('db:pg:app');
  h.pg.unreachable = true;
  const lease = await revokeLease(h.deps, lease_id, { force: true });
  expect(lease).toMatchObject({ state: 'forgotten', endedAt: h.clock.peek(), lastError: expect.stringContaining('connection refused') });
  expect(h.warnings).toEqual([`Forgot lease ${lease_id} without revoking it: ${username} may remain on ${FAKE_HOST}:5432/postgres.`]);
  expect(h.audit().at(-1)).toMatchObject({ action: 'lease.revoke', outcome: 'failure', error: expect.stringMatching(/^forgotten with --force: /) });
  // --force still revokes what it can: a reachable server drops the user.
  h.pg.unreachable = false;
  const second = await h.issue('db:pg:app');
  expect((await revokeLease(h.deps, second.lease_id, { force: true })).state).toBe('revoked');
  expect(h.pg.has(second.username)).toBe(false);
});

test('leases on one server are revoked in one connection and one batch; another server gets its own', async () => {
  await h.base('db:pg2:root', { port: 5433 });
  await h.dynamic('db:pg2:app', {}, 'db:pg2:root');
  const leases = [await h.issue('db:pg:app'), await h.issue('db:pg:app'), await h.issue('db:pg:app'), await h.issue('db:pg2:app')];
  h.servers.calls.length = 0;
  const claimed: LeaseRecord[] = [];
  for (const lease of leases) claimed.push((await h.store.leases.claim(lease.lease_id, h.deps.claimant, h.clock.peek(), CLAIM_MS))!);
  const outcomes = await revokeClaimed(h.deps, claimed);
  expect(outcomes.map((o) => [o.revoked, o.lease.state])).toEqual(leases.map(() => [true, 'revoked']));
  expect(h.servers.callsOf('connect').map((c) => c.server).sort()).toEqual([`${FAKE_HOST}:5432`, `${FAKE_HOST}:5433`]);
  const batches = h.servers.callsOf('revoke').map((c) => [c.server, c.usernames.sort()]);
  expect(batches).toEqual(
    expect.arrayContaining([
      [`${FAKE_HOST}:5432`, leases.slice(0, 3).map((l) => l.username).sort()],
      [`${FAKE_HOST}:5433`, [leases[3].username]],
    ]),
  );
  expect(batches).toHaveLength(2);
});

test('in a batch, each lease is settled by what the server saw of its own user', async () => {
  const kept = await h.issue('db:pg:app');
  const dropped = await h.issue('db:pg:app');
  h.pg.keepAfterDrop(kept.username);
  const claimed = [
    (await h.store.leases.claim(kept.lease_id, h.deps.claimant, h.clock.peek(), CLAIM_MS))!,
    (await h.store.leases.claim(dropped.lease_id, h.deps.claimant, h.clock.peek(), CLAIM_MS))!,
  ];
  const outcomes = await revokeClaimed(h.deps, claimed);
  expect(outcomes.map((o) => [o.lease.id, o.revoked, o.lease.state])).toEqual([
    [kept.lease_id, false, 'failed'],
    [dropped.lease_id, true, 'revoked'],
  ]);
});

test('a user already gone from the server counts as revoked', async () => {
  const { lease_id, username } = await h.issue('db:pg:app');
  h.pg.users.delete(username);
  expect((await revokeLease(h.deps, lease_id)).state).toBe('revoked');
  expect(h.servers.callsOf('revoke').at(-1)!.usernames).toEqual([username]);
});

test('the admin credentials of the base secret as it is now are used while it points at the same server', async () => {
  const { lease_id } = await h.issue('db:pg:app');
  h.pg.admins.add('rotated');
  const base = (await h.store.secrets.get({ path: 'db:pg:root' }))!;
  await h.store.secrets.addVersion(base.id, base.version, { description: '', attributes: base.attributes, data: { ...base.data, username: 'rotated' } });
  expect((await revokeLease(h.deps, lease_id)).state).toBe('revoked');
  expect(h.servers.callsOf('connect').at(-1)!.admin).toBe('rotated');
});

test('an unknown lease is not found', async () => {
  await expect(revokeLease(h.deps, '00000000-0000-4000-8000-000000000000')).rejects.toMatchObject({ code: 'lease_not_found' });
});
