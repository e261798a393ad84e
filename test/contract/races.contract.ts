import type { LeaseState } from '../../src/model/lease.js';
import type { Store } from '../../src/store/store.js';
import { type Fixture, T0, newSecret } from './fixture.js';

const CLAIM_MS = 60_000;

/** Handle A and B in turn, `count` calls in all, started together. */
function together<T>(stores: Store[], count: number, fn: (store: Store, i: number) => Promise<T>): Promise<T[]> {
  return Promise.all(Array.from({ length: count }, (_, i) => fn(stores[i % stores.length], i)));
}

/** Compare-and-set races, claims and concurrent writers, across two handles on one store. */
export function describeRaces(fx: Fixture): void {
  describe('races between handles', () => {
    let both: Store[];
    beforeEach(async () => {
      both = [fx.store, await fx.other()];
    });

    test('concurrent transitions from the same state: exactly one winner per step', async () => {
      const pair = await fx.dynamicPair();
      const lease = await fx.leaseIn(pair, 'active');
      const steps: [LeaseState, LeaseState][] = [
        ['active', 'revoking'],
        ['revoking', 'failed'],
        ['failed', 'revoking'],
        ['revoking', 'irrevocable'],
        ['irrevocable', 'revoking'],
        ['revoking', 'revoked'],
      ];
      for (const [step, [from, to]] of steps.entries()) {
        const results = await together(both, 8, (store, i) => store.leases.transition(lease.id, [from], to, { attempts: step * 10 + i }));
        const winners = results.filter((r) => r !== undefined);
        expect(winners).toHaveLength(1);
        expect(winners[0]).toMatchObject({ state: to });
        expect(await fx.store.leases.get(lease.id)).toEqual(winners[0]);
      }
    });

    test('concurrent addVersion from the same version: exactly one winner per step, versions contiguous', async () => {
      const secret = await fx.staticSecret('app:contended', { round: 0 });
      const winners = [secret];
      for (let version = 1; version <= 5; version++) {
        const results = await together(both, 6, (store, i) => store.secrets.addVersion(secret.id, version, { description: '', attributes: {}, data: { round: version, writer: i } }));
        const won = results.filter((r) => r !== undefined);
        expect(won).toHaveLength(1);
        expect(won[0]?.version).toBe(version + 1);
        winners.push(won[0]!);
      }
      const other = both[1];
      for (const winner of winners) {
        expect(await other.secrets.get({ id: secret.id }, winner.version)).toMatchObject({ version: winner.version, data: winner.data });
      }
      expect(await fx.store.secrets.get({ id: secret.id }, 7)).toBeUndefined();
      expect((await fx.store.info()).secretVersions).toBe(6);
    });

    test('claimDue on two handles at once hands each lease to exactly one claimant', async () => {
      const pair = await fx.dynamicPair();
      const now = T0 + 1_000_000;
      const ids: string[] = [];
      for (let i = 0; i < 30; i++) ids.push((await fx.leaseIn(pair, 'active', { expiresAt: now - 1 - i })).id);
      const drain = async (store: Store, claimant: string): Promise<string[]> => {
        const got: string[] = [];
        for (;;) {
          const batch = await store.leases.claimDue({ now, limit: 3, staleIntentBefore: now - 120_000, claimMs: CLAIM_MS }, claimant);
          if (batch.length === 0) return got;
          got.push(...batch.map((l) => l.id));
        }
      };
      const [a, b, c] = await Promise.all([drain(both[0], 'a'), drain(both[1], 'b'), drain(both[0], 'c')]);
      const all = [...a, ...b, ...c];
      expect(all.sort()).toEqual([...ids].sort());
      expect(new Set(all).size).toBe(30);
      // Each settles exactly what it claimed, and nothing of the others'.
      const settled = await both[1].leases.settleAll('b', ids.map((id) => ({ id, to: 'revoked' as const, changes: { endedAt: now } })));
      expect(settled.filter((r) => r !== undefined).map((r) => r!.id).sort()).toEqual([...b].sort());
      expect(await fx.store.leases.countByState()).toEqual({ ...(b.length ? { revoked: b.length } : {}), ...(a.length + c.length ? { revoking: a.length + c.length } : {}) });
    });

    test('a lapsed claim is taken over by claim and by claimDue on another handle; the old claimant can no longer settle it', async () => {
      const pair = await fx.dynamicPair();
      const now = T0 + 1_000_000;
      const one = await fx.leaseIn(pair, 'active', { expiresAt: now - 10 });
      const two = await fx.leaseIn(pair, 'active', { expiresAt: now - 10 });
      expect(await both[0].leases.claimDue({ now, limit: 10, staleIntentBefore: 0, claimMs: 1_000 }, 'dead')).toHaveLength(2);
      expect(await both[1].leases.claim(one.id, 'live', now + 999, CLAIM_MS)).toBeUndefined();
      expect(await both[1].leases.claimDue({ now: now + 999, limit: 10, staleIntentBefore: 0, claimMs: CLAIM_MS }, 'live')).toEqual([]);
      expect(await both[1].leases.claim(one.id, 'live', now + 1_000, CLAIM_MS)).toMatchObject({ id: one.id, state: 'revoking' });
      expect((await both[1].leases.claimDue({ now: now + 1_000, limit: 10, staleIntentBefore: 0, claimMs: CLAIM_MS }, 'live')).map((l) => l.id)).toEqual([two.id]);
      expect(await both[0].leases.settleAll('dead', [{ id: one.id, to: 'revoked' }, { id: two.id, to: 'revoked' }])).toEqual([undefined, undefined]);
      expect((await both[1].leases.settleAll('live', [{ id: one.id, to: 'revoked' }, { id: two.id, to: 'revoked' }])).map((r) => r?.state)).toEqual(['revoked', 'revoked']);
    });

    test('two handles creating secrets and recording intents at once lose nothing', async () => {
      const pair = await fx.dynamicPair();
      const paths = Array.from({ length: 20 }, (_, i) => `app:parallel-${String(i).padStart(2, '0')}`);
      const leases = Array.from({ length: 20 }, () => fx.lease(pair));
      await Promise.all([
        together(both, 20, (store, i) => store.secrets.create(newSecret({ path: paths[i], kind: 'static', data: { i } }))),
        together(both, 20, (store, i) => store.leases.recordIntent(leases[i])),
      ]);
      const third = await fx.another('contract-c');
      for (const store of [...both, third]) {
        const found = (await store.secrets.search({ query: 'app:parallel-', limit: 100 })).map((s) => s.path);
        expect(found).toEqual(paths);
        expect((await store.secrets.search({ limit: 100 })).length).toBe(22);
        expect((await store.leases.list({ limit: 100 })).map((l) => l.id).sort()).toEqual(leases.map((l) => l.id).sort());
        expect(await store.leases.liveUsernames()).toEqual(new Set(leases.map((l) => l.username)));
        expect(await store.info()).toMatchObject({ secrets: 22, secretVersions: 22, leases: { intent: 20 } });
      }
    });
  });
}
