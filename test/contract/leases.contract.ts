import { spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import type { LeaseRecord, NewLease } from '../../src/model/lease.js';
import type { Secret } from '../../src/model/secret.js';
import { type Fixture, T0 } from './fixture.js';

type Pair = { base: Secret; dynamic: Secret };

/** The record `get` returns for a lease just recorded. */
function asRecorded(lease: NewLease): Partial<LeaseRecord> {
  const { ownerPid: _pid, ownerHost: _host, ...record } = lease;
  return { ...record, state: 'intent', attempts: 0 };
}

const CLAIM_MS = 60_000;
const due = (now: number, extra: { pool?: string; limit?: number; staleIntentBefore?: number } = {}) => ({
  now,
  limit: extra.limit ?? 100,
  pool: extra.pool,
  staleIntentBefore: extra.staleIntentBefore ?? now - 120_000,
  claimMs: CLAIM_MS,
});

/** LeaseLedger: every method, on one handle. Races and claims across handles are in races.contract.ts. */
export function describeLeases(fx: Fixture): void {
  describe('leases', () => {
    let pair: Pair;
    beforeEach(async () => {
      pair = await fx.dynamicPair();
    });

    test('recordIntent, then get: every field back, the sealed revocation included', async () => {
      const lease = fx.lease(pair);
      await fx.store.leases.recordIntent(lease);
      const got = await fx.store.leases.get(lease.id);
      expect(got).toEqual(asRecorded(lease));
      expect(got?.nextAttemptAt).toBeUndefined();
      expect(got?.lastError).toBeUndefined();
      expect(got?.endedAt).toBeUndefined();
      expect(await fx.store.leases.get('00000000-0000-4000-8000-000000000000')).toBeUndefined();
    });

    test('transition: compare-and-set of the state, with its changes; from a wrong state or of no lease it is undefined', async () => {
      const lease = await fx.leaseIn(pair, 'active');
      expect(await fx.store.leases.transition(lease.id, ['intent'], 'revoked')).toBeUndefined();
      expect(await fx.store.leases.transition('00000000-0000-4000-8000-000000000000', ['active'], 'revoked')).toBeUndefined();
      expect((await fx.store.leases.get(lease.id))?.state).toBe('active');

      const failed = await fx.store.leases.transition(lease.id, ['revoking', 'active'], 'failed', { attempts: 2, nextAttemptAt: T0 + 5_000, lastError: 'refused' });
      expect(failed).toMatchObject({ id: lease.id, state: 'failed', attempts: 2, nextAttemptAt: T0 + 5_000, lastError: 'refused', expiresAt: lease.expiresAt });
      expect(await fx.store.leases.get(lease.id)).toEqual(failed);

      const renewed = await fx.store.leases.transition(lease.id, ['failed'], 'active', { expiresAt: lease.expiresAt + 1_000, nextAttemptAt: null, lastError: null });
      expect(renewed).toMatchObject({ state: 'active', expiresAt: lease.expiresAt + 1_000, attempts: 2 });
      expect(renewed?.nextAttemptAt).toBeUndefined();
      expect(renewed?.lastError).toBeUndefined();

      const ended = await fx.store.leases.transition(lease.id, ['active'], 'revoked', { endedAt: T0 + 9_000 });
      expect(ended).toMatchObject({ state: 'revoked', endedAt: T0 + 9_000 });
      expect(ended?.revocation).toEqual(lease.revocation);
    });

    test('list: live leases by default, every lease with all, filtered, in creation order, paged', async () => {
      const other = await fx.dynamicPair();
      const a = await fx.leaseIn(pair, 'active');
      const b = await fx.leaseIn(pair, 'revoked');
      const c = await fx.leaseIn(other, 'failed', { pool: 'blue' });
      const d = await fx.leaseIn(pair, 'intent', { pool: 'blue' });
      const e = await fx.leaseIn(other, 'forgotten');
      const ids = async (query: Parameters<typeof fx.store.leases.list>[0]) => (await fx.store.leases.list(query)).map((l) => l.id);
      expect(await ids({ limit: 50 })).toEqual([a.id, c.id, d.id]);
      expect(await ids({ all: true, limit: 50 })).toEqual([a.id, b.id, c.id, d.id, e.id]);
      expect(await ids({ secretId: pair.dynamic.id, limit: 50 })).toEqual([a.id, d.id]);
      expect(await ids({ secretId: pair.dynamic.id, all: true, limit: 50 })).toEqual([a.id, b.id, d.id]);
      expect(await ids({ path: other.dynamic.path, all: true, limit: 50 })).toEqual([c.id, e.id]);
      expect(await ids({ pool: 'blue', limit: 50 })).toEqual([c.id, d.id]);
      expect(await ids({ all: true, limit: 2 })).toEqual([a.id, b.id]);
      expect(await ids({ all: true, limit: 2, offset: 2 })).toEqual([c.id, d.id]);
      expect(await ids({ all: true, limit: 2, offset: 4 })).toEqual([e.id]);
      expect((await fx.store.leases.list({ limit: 50 }))[0]).toEqual(await fx.store.leases.get(a.id));
    });

    test('list pathPrefix: paths that start with it, % and _ taken literally', async () => {
      const leases: Record<string, NewLease> = {};
      for (const path of ['team:a:one', 'team:a:two', 'team:ab', 'team%:x', 'teamxa:y', 'other:team:a']) {
        leases[path] = fx.lease(pair, { path });
        await fx.store.leases.recordIntent(leases[path]);
      }
      const paths = async (pathPrefix: string) => (await fx.store.leases.list({ pathPrefix, limit: 50 })).map((l) => l.path);
      expect(await paths('team:a:')).toEqual(['team:a:one', 'team:a:two']);
      expect(await paths('team:a')).toEqual(['team:a:one', 'team:a:two', 'team:ab']);
      expect(await paths('team%')).toEqual(['team%:x']);
      expect(await paths('team_a')).toEqual([]);
    });

    test('claimDue takes what is due, and only that: expired, retry time reached, claim lapsed, intent stale', async () => {
      const now = T0 + 1_000_000;
      const expired = await fx.leaseIn(pair, 'active', { expiresAt: now - 1 });
      const notYet = await fx.leaseIn(pair, 'active', { expiresAt: now + 60_000 });
      const retry = await fx.leaseIn(pair, 'active');
      await fx.store.leases.transition(retry.id, ['active'], 'failed', { attempts: 1, nextAttemptAt: now - 10 });
      const later = await fx.leaseIn(pair, 'active');
      await fx.store.leases.transition(later.id, ['active'], 'failed', { attempts: 1, nextAttemptAt: now + 10 });
      const stuck = await fx.leaseIn(pair, 'active');
      await fx.store.leases.transition(stuck.id, ['active'], 'irrevocable', { attempts: 8, nextAttemptAt: now - 10 });
      const lapsed = await fx.leaseIn(pair, 'active', { expiresAt: now + 60_000 });
      expect(await fx.store.leases.claim(lapsed.id, 'dead-claimant', now - CLAIM_MS - 1, CLAIM_MS)).toBeDefined();
      const held = await fx.leaseIn(pair, 'active', { expiresAt: now + 60_000 });
      expect(await fx.store.leases.claim(held.id, 'live-claimant', now, CLAIM_MS)).toBeDefined();
      const staleIntent = await fx.leaseIn(pair, 'intent', { createdAt: now - 200_000, expiresAt: now + 60_000 });
      const freshIntent = await fx.leaseIn(pair, 'intent', { createdAt: now - 1_000, expiresAt: now + 60_000 });
      const ended = await fx.leaseIn(pair, 'revoked', { expiresAt: now - 1 });

      const claimed = await fx.store.leases.claimDue(due(now), 'sweeper');
      expect(claimed.map((l) => l.id).sort()).toEqual([expired.id, retry.id, stuck.id, lapsed.id, staleIntent.id].sort());
      expect(claimed.every((l) => l.state === 'revoking')).toBe(true);
      for (const lease of [notYet, later, held, freshIntent, ended]) {
        expect((await fx.store.leases.get(lease.id))?.state).toBe({ [notYet.id]: 'active', [later.id]: 'failed', [held.id]: 'revoking', [freshIntent.id]: 'intent', [ended.id]: 'revoked' }[lease.id]);
      }
      // What was claimed is not due again while the claim lasts.
      expect(await fx.store.leases.claimDue(due(now + 1), 'another-sweeper')).toEqual([]);
    });

    test('claimDue: an intent whose process on this host is gone is due at once', async () => {
      const gone = spawnSync(process.execPath, ['-e', '']).pid!;
      const now = T0 + 1_000;
      const orphan = await fx.leaseIn(pair, 'intent', { ownerHost: hostname(), ownerPid: gone, createdAt: now - 1, expiresAt: now + 60_000 });
      const alive = await fx.leaseIn(pair, 'intent', { ownerHost: hostname(), ownerPid: process.pid, createdAt: now - 1, expiresAt: now + 60_000 });
      expect((await fx.store.leases.claimDue(due(now), 'sweeper')).map((l) => l.id)).toEqual([orphan.id]);
      expect((await fx.store.leases.get(alive.id))?.state).toBe('intent');
    });

    test('claimDue keeps to its pool and its limit', async () => {
      const now = T0 + 1_000_000;
      const blue = await fx.leaseIn(pair, 'active', { pool: 'blue', expiresAt: now - 5 });
      for (let i = 0; i < 5; i++) await fx.leaseIn(pair, 'active', { expiresAt: now - 5 });
      expect((await fx.store.leases.claimDue(due(now, { pool: 'blue' }), 'blue-sweeper')).map((l) => l.id)).toEqual([blue.id]);
      expect(await fx.store.leases.claimDue(due(now, { pool: 'blue' }), 'blue-sweeper')).toEqual([]);
      expect(await fx.store.leases.claimDue(due(now, { limit: 2 }), 'sweeper')).toHaveLength(2);
      expect(await fx.store.leases.claimDue(due(now, { limit: 10 }), 'sweeper')).toHaveLength(3);
    });

    test('claim: one claimant at a time; a lapsed claim is taken over; an ended lease or none is undefined', async () => {
      const now = T0 + 1_000;
      const lease = await fx.leaseIn(pair, 'active');
      const first = await fx.store.leases.claim(lease.id, 'first', now, CLAIM_MS);
      expect(first).toMatchObject({ id: lease.id, state: 'revoking' });
      expect(await fx.store.leases.claim(lease.id, 'second', now + CLAIM_MS - 1, CLAIM_MS)).toBeUndefined();
      expect(await fx.store.leases.claim(lease.id, 'second', now + CLAIM_MS, CLAIM_MS)).toMatchObject({ state: 'revoking' });
      // The first claimant's claim is gone: settling it changes nothing.
      expect(await fx.store.leases.settleAll('first', [{ id: lease.id, to: 'revoked', changes: { endedAt: now } }])).toEqual([undefined]);
      expect(await fx.store.leases.settleAll('second', [{ id: lease.id, to: 'revoked', changes: { endedAt: now } }])).toEqual([expect.objectContaining({ state: 'revoked', endedAt: now })]);
      expect(await fx.store.leases.claim(lease.id, 'third', now + 10 * CLAIM_MS, CLAIM_MS)).toBeUndefined();
      expect(await fx.store.leases.claim('00000000-0000-4000-8000-000000000000', 'third', now, CLAIM_MS)).toBeUndefined();
    });

    test('settleAll settles only its own claims, in one go, each result in the order asked', async () => {
      const now = T0 + 1_000;
      const mine = await fx.leaseIn(pair, 'active');
      const also = await fx.leaseIn(pair, 'active');
      const theirs = await fx.leaseIn(pair, 'active');
      const unclaimed = await fx.leaseIn(pair, 'active');
      await fx.store.leases.claim(mine.id, 'me', now, CLAIM_MS);
      await fx.store.leases.claim(also.id, 'me', now, CLAIM_MS);
      await fx.store.leases.claim(theirs.id, 'them', now, CLAIM_MS);
      const results = await fx.store.leases.settleAll('me', [
        { id: mine.id, to: 'revoked', changes: { endedAt: now } },
        { id: theirs.id, to: 'revoked', changes: { endedAt: now } },
        { id: unclaimed.id, to: 'revoked', changes: { endedAt: now } },
        { id: also.id, to: 'failed', changes: { attempts: 1, nextAttemptAt: now + 5_000, lastError: 'refused' } },
      ]);
      expect(results.map((r) => r?.state)).toEqual(['revoked', undefined, undefined, 'failed']);
      expect(results[3]).toMatchObject({ id: also.id, attempts: 1, nextAttemptAt: now + 5_000, lastError: 'refused' });
      expect((await fx.store.leases.get(theirs.id))?.state).toBe('revoking');
      expect((await fx.store.leases.get(unclaimed.id))?.state).toBe('active');
      // Released, a lease can be claimed by anyone at once.
      expect(await fx.store.leases.claim(also.id, 'them', now + 1, CLAIM_MS)).toBeDefined();
    });

    test('countByState: leases per state, states with none left out, by pool', async () => {
      expect(await fx.store.leases.countByState()).toEqual({});
      await fx.leaseIn(pair, 'active');
      await fx.leaseIn(pair, 'active', { pool: 'blue' });
      await fx.leaseIn(pair, 'intent');
      await fx.leaseIn(pair, 'revoked', { pool: 'blue' });
      expect(await fx.store.leases.countByState()).toEqual({ active: 2, intent: 1, revoked: 1 });
      expect(await fx.store.leases.countByState('blue')).toEqual({ active: 1, revoked: 1 });
      expect(await fx.store.leases.countByState('nobody')).toEqual({});
    });

    test('nextDue: the earliest expiry, retry, claim end or intent; by pool; undefined when nothing can come due', async () => {
      expect(await fx.store.leases.nextDue()).toBeUndefined();
      await fx.leaseIn(pair, 'revoked', { expiresAt: T0 + 10 });
      expect(await fx.store.leases.nextDue()).toBeUndefined();
      await fx.leaseIn(pair, 'active', { expiresAt: T0 + 50_000 });
      expect(await fx.store.leases.nextDue()).toBe(T0 + 50_000);
      const retry = await fx.leaseIn(pair, 'active', { expiresAt: T0 + 90_000 });
      await fx.store.leases.transition(retry.id, ['active'], 'failed', { attempts: 1, nextAttemptAt: T0 + 40_000 });
      expect(await fx.store.leases.nextDue()).toBe(T0 + 40_000);
      const claimed = await fx.leaseIn(pair, 'active', { pool: 'blue', expiresAt: T0 + 90_000 });
      await fx.store.leases.claim(claimed.id, 'me', T0, 30_000);
      expect(await fx.store.leases.nextDue()).toBe(T0 + 30_000);
      expect(await fx.store.leases.nextDue('blue')).toBe(T0 + 30_000);
      await fx.leaseIn(pair, 'intent', { pool: 'green', createdAt: T0 + 20_000, expiresAt: T0 + 90_000 });
      expect(await fx.store.leases.nextDue()).toBe(T0 + 20_000);
      expect(await fx.store.leases.nextDue('green')).toBe(T0 + 20_000);
      expect(await fx.store.leases.nextDue('nobody')).toBeUndefined();
    });

    test('liveUsernames: the users in use or in flight (intent, active, revoking), not those waiting for a retry or ended', async () => {
      const names: Record<string, string> = {};
      for (const state of ['intent', 'active', 'revoking', 'failed', 'irrevocable', 'revoked', 'forgotten'] as const) {
        names[state] = (await fx.leaseIn(pair, state)).username;
      }
      expect([...(await fx.store.leases.liveUsernames())].sort()).toEqual([names.intent, names.active, names.revoking].sort());
    });
  });
}
