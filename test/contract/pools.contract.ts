import { FORGET_MEMBERS_AFTER_MS, type StoreWatch } from '../../src/store/pools.js';
import { type Fixture, T0 } from './fixture.js';

const member = (pool?: string, pid = 4100) => ({ ...(pool === undefined ? {} : { pool }), host: 'node-a.example', pid, version: '9.9.9' });

/** The pool registry (store.pools) and the optional watch capability (store.watch). */
export function describePools(fx: Fixture): void {
  describe('pools', () => {
    test('join, list, heartbeat and leave; a member without a pool stays without one', async () => {
      const a = await fx.store.pools.join(member('blue'), T0);
      const b = await fx.store.pools.join(member(undefined, 4101), T0 + 1);
      expect(a).not.toBe(b);
      expect(await fx.store.pools.list()).toEqual([
        { id: a, pool: 'blue', host: 'node-a.example', pid: 4100, version: '9.9.9', startedAt: T0, lastSeen: T0 },
        { id: b, host: 'node-a.example', pid: 4101, version: '9.9.9', startedAt: T0 + 1, lastSeen: T0 + 1 },
      ]);
      expect(await fx.store.pools.heartbeat(a, T0 + 5000)).toBe(true);
      expect((await fx.store.pools.list()).find((m) => m.id === a)).toMatchObject({ startedAt: T0, lastSeen: T0 + 5000 });
      await fx.store.pools.leave(a);
      expect((await fx.store.pools.list()).map((m) => m.id)).toEqual([b]);
      // Gone: a heartbeat says so (the daemon joins again), and leaving again is no error.
      expect(await fx.store.pools.heartbeat(a, T0 + 10_000)).toBe(false);
      await fx.store.pools.leave(a);
      expect(await fx.store.pools.heartbeat('no-such-member', T0)).toBe(false);
    });

    test('every handle sees the same members', async () => {
      const other = await fx.other();
      const ids = await Promise.all([
        fx.store.pools.join(member('p1', 1), T0),
        other.pools.join(member('p1', 2), T0),
        fx.store.pools.join(member('p2', 3), T0),
        other.pools.join(member(undefined, 4), T0),
      ]);
      expect(new Set(ids).size).toBe(4);
      const seen = (await other.pools.list()).map((m) => m.id).sort();
      expect(seen).toEqual([...ids].sort());
      expect((await fx.store.pools.list()).map((m) => m.id).sort()).toEqual(seen);
      await other.pools.heartbeat(ids[0], T0 + 7000);
      expect((await fx.store.pools.list()).find((m) => m.id === ids[0])?.lastSeen).toBe(T0 + 7000);
    });

    test('a join forgets members silent for a day (a SIGKILLed daemon leaves its row)', async () => {
      const dead = await fx.store.pools.join(member('p', 1), T0 - FORGET_MEMBERS_AFTER_MS - 1);
      const quiet = await fx.store.pools.join(member('p', 2), T0 - FORGET_MEMBERS_AFTER_MS + 60_000);
      const fresh = await fx.store.pools.join(member('p', 3), T0);
      expect((await fx.store.pools.list()).map((m) => m.id).sort()).toEqual([quiet, fresh].sort());
      expect(dead).toBeDefined();
    });

    test('watch (when the store has it): another handle recording, activating or renewing a lease is heard; close stops it', async () => {
      if (!fx.store.watch) return;
      const other = await fx.other();
      const pair = await fx.dynamicPair();
      const heard: (string | undefined)[] = [];
      const errors: unknown[] = [];
      let watch: StoreWatch | undefined;
      try {
        watch = await fx.store.watch({ change: (pool) => heard.push(pool), error: (e) => errors.push(e) });
        const hear = async (what: string, act: () => Promise<unknown>) => {
          heard.length = 0;
          await act();
          const deadline = Date.now() + 3000;
          while (heard.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
          expect({ what, heard: heard.length > 0 }).toEqual({ what, heard: true });
          // A store that says which pool names the lease's.
          expect(heard.filter((p) => p !== undefined && p !== 'default')).toEqual([]);
        };
        const lease = fx.lease(pair);
        await hear('recordIntent', () => other.leases.recordIntent(lease));
        await hear('activation', () => other.leases.transition(lease.id, ['intent'], 'active'));
        await hear('renewal', () => other.leases.transition(lease.id, ['active'], 'active', { expiresAt: lease.expiresAt + 60_000 }));
      } finally {
        await watch?.close();
      }
      expect(errors).toEqual([]);
      heard.length = 0;
      await other.leases.recordIntent(fx.lease(pair));
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(heard).toEqual([]);
    });
  });
}
