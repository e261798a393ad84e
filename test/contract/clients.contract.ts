import { type Fixture, T0, expectTampered, rejection } from './fixture.js';

/**
 * ClientRegistry: the clients of the lease API, with the integrity of every other record
 * (a MAC over every column, a census of the whole set), and the client a lease carries.
 */
export function describeClients(fx: Fixture): void {
  describe('clients', () => {
    test('create, get, list (by name), update (createdAt kept), delete; the same on another handle', async () => {
      const b = fx.client('b-client', { allow: ['db:postgresql:dyn1', 'app/*'], maxTtl: 900, maxLeases: 3 });
      const a = fx.client('a.client@ci', { allow: ['*'] });
      await fx.store.clients.create(b);
      await fx.store.clients.create(a);
      expect(await fx.store.clients.get('b-client')).toEqual(b);
      expect(await fx.store.clients.get('a.client@ci')).toEqual(a);
      expect(a).not.toHaveProperty('maxTtl');
      expect(await fx.store.clients.get('nobody')).toBeUndefined();
      expect((await fx.store.clients.list()).map((c) => c.name)).toEqual(['a.client@ci', 'b-client']);

      const changed = { ...b, allow: ['db:mysql:*'], maxTtl: undefined, maxLeases: 7, publicKey: fx.client('other-key').publicKey, createdAt: T0 + 99, updatedAt: T0 + 5 };
      await fx.store.clients.update(changed);
      const { maxTtl: _none, ...expected } = { ...changed, createdAt: b.createdAt };
      const other = await fx.other();
      expect(await other.clients.get('b-client')).toEqual(expected);
      expect(await other.clients.list()).toEqual([a, expected]);

      expect(await other.clients.delete('a.client@ci')).toBe(true);
      expect(await fx.store.clients.delete('a.client@ci')).toBe(false);
      expect(await fx.store.clients.get('a.client@ci')).toBeUndefined();
      expect(await fx.store.clients.list()).toEqual([expected]);
    });

    test('a name taken: exit 2, the first kept; an update of no client: exit 3, nothing made', async () => {
      const first = fx.client('taken');
      await fx.store.clients.create(first);
      const taken = await rejection((await fx.other()).clients.create(fx.client('taken', { allow: ['*'] })));
      expect({ exitCode: taken.exitCode, code: taken.code }).toEqual({ exitCode: 2, code: 'client_exists' });
      expect(taken.message).toMatch(/taken/);
      expect(await fx.store.clients.get('taken')).toEqual(first);

      const missing = await rejection(fx.store.clients.update(fx.client('ghost')));
      expect({ exitCode: missing.exitCode, code: missing.code }).toEqual({ exitCode: 3, code: 'client_not_found' });
      expect(await fx.store.clients.list()).toEqual([first]);
    });

    test('concurrent creates of one name from two handles: exactly one wins', async () => {
      const other = await fx.other();
      const results = await Promise.allSettled(
        Array.from({ length: 6 }, (_v, i) => (i % 2 ? other : fx.store).clients.create(fx.client('race', { maxLeases: i + 1 }))),
      );
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'client_exists', exitCode: 2 });
      expect(await fx.store.clients.list()).toHaveLength(1);
    });

    test('concurrent updates from two handles: each lands whole, the census holds, the last one stays', async () => {
      await fx.store.clients.create(fx.client('busy'));
      await fx.store.clients.create(fx.client('bystander'));
      const other = await fx.other();
      const updates = Array.from({ length: 12 }, (_v, i) => fx.client('busy', { allow: [`app:n${i}:*`], maxLeases: i + 1, updatedAt: T0 + i }));
      await Promise.all(updates.map((u, i) => (i % 2 ? other : fx.store).clients.update(u)));
      const final = await (await fx.another()).clients.get('busy');
      const landed = updates.find((u) => u.maxLeases === final?.maxLeases);
      expect(final).toEqual(landed);
      expect((await fx.store.clients.list()).map((c) => c.name)).toEqual(['busy', 'bystander']);
      // Delete and update at once: either order leaves a consistent set.
      await Promise.allSettled([other.clients.delete('busy'), fx.store.clients.update(fx.client('busy', { maxLeases: 50 }))]);
      expect((await fx.store.clients.list()).map((c) => c.name)).toEqual(['bystander']);
    });

    test('a row edited without the key (wider patterns, a bigger cap): refused by get, list, update and delete on every handle', async () => {
      const client = fx.client('edited', { allow: ['app:one'] });
      await fx.store.clients.create(client);
      await fx.store.clients.create(fx.client('innocent'));
      await fx.tamper.editClient('edited', { allow: '["*"]' });
      await expectTampered(fx.store.clients.get('edited'));
      await expectTampered(fx.store.clients.list());
      await expectTampered(fx.store.clients.update({ ...client, updatedAt: T0 + 1 }));
      await expectTampered(fx.store.clients.delete('edited'));
      await expectTampered((await fx.another()).clients.get('edited'));
      // Any client's read checks the whole set: one bad row refuses them all.
      await expectTampered(fx.store.clients.get('innocent'));
      await fx.tamper.editClient('edited', { allow: '["app:one"]' });
      expect(await fx.store.clients.get('edited')).toEqual(client);
      await fx.tamper.editClient('edited', { maxLeases: 100000 });
      const error = await rejection(fx.store.clients.get('edited'));
      expect({ exitCode: error.exitCode, code: error.code }).toEqual({ exitCode: 4, code: 'store_tampered' });
      expect(error.message).toMatch(/client edited/);
    });

    test('a client row deleted, or brought back after sy deleted it, or set back to an older row: found by the census', async () => {
      await fx.store.clients.create(fx.client('stays'));
      await fx.store.clients.create(fx.client('removed'));
      await fx.tamper.deleteClientRow('removed');
      await expectTampered(fx.store.clients.list());
      await expectTampered((await fx.another()).clients.get('stays'));
      await expectTampered(fx.store.clients.get('removed'));
    });

    test('a deleted client brought back, and an updated one set back to its old key: refused', async () => {
      const revived = fx.client('revived');
      await fx.store.clients.create(revived);
      const putBack = await fx.tamper.keepClientRow('revived');
      expect(await fx.store.clients.delete('revived')).toBe(true);
      await putBack();
      await expectTampered(fx.store.clients.get('revived'));
      await fx.tamper.deleteClientRow('revived');
      expect(await fx.store.clients.list()).toEqual([]);

      await fx.store.clients.create(fx.client('rekeyed'));
      const oldKey = await fx.tamper.keepClientRow('rekeyed');
      await fx.store.clients.update(fx.client('rekeyed', { publicKey: fx.client('new-key').publicKey, updatedAt: T0 + 1 }));
      await oldKey();
      await expectTampered((await fx.another()).clients.get('rekeyed'));
    });

    test('a lease carries its client: kept through its states, filtered on, absent when issued on the store', async () => {
      const pair = await fx.dynamicPair();
      const mine = await fx.leaseIn(pair, 'active', { client: 'ci-runner' });
      const theirs = await fx.leaseIn(pair, 'active', { client: 'other-runner' });
      const local = await fx.leaseIn(pair, 'active');
      expect(await fx.store.leases.get(mine.id)).toMatchObject({ client: 'ci-runner', state: 'active' });
      expect(await fx.store.leases.get(local.id)).not.toHaveProperty('client');
      const ids = async (query: { client?: string; all?: boolean }) => (await fx.store.leases.list({ limit: 100, ...query })).map((l) => l.id);
      expect(await ids({ client: 'ci-runner' })).toEqual([mine.id]);
      expect(await ids({ client: 'other-runner' })).toEqual([theirs.id]);
      expect(await ids({ client: 'nobody' })).toEqual([]);
      expect(await ids({})).toEqual([mine.id, theirs.id, local.id]);
      expect(await fx.store.leases.countLive('ci-runner')).toBe(1);
      expect(await fx.store.leases.countLive('nobody')).toBe(0);
      await fx.leaseIn(pair, 'intent', { client: 'other-runner' });
      await fx.leaseIn(pair, 'revoked', { client: 'other-runner' });
      expect(await fx.store.leases.countLive('other-runner')).toBe(2);

      await fx.store.leases.transition(mine.id, ['active'], 'active', { expiresAt: T0 + 120_000 });
      const claimed = await (await fx.other()).leases.claim(mine.id, 'revoker', T0, 60_000);
      expect(claimed).toMatchObject({ client: 'ci-runner', state: 'revoking' });
      const [settled] = await fx.store.leases.settleAll('revoker', [{ id: mine.id, to: 'revoked', changes: { endedAt: T0 + 1 } }]);
      expect(settled).toMatchObject({ client: 'ci-runner', state: 'revoked' });
      expect(await ids({ client: 'ci-runner' })).toEqual([]);
      expect(await fx.store.leases.countLive('ci-runner')).toBe(0);
      expect(await ids({ client: 'ci-runner', all: true })).toEqual([mine.id]);
    });

    test("a lease's client changed, removed or added without the key: refused", async () => {
      const pair = await fx.dynamicPair();
      const owned = await fx.leaseIn(pair, 'active', { client: 'owner' });
      const plain = await fx.leaseIn(pair, 'active');
      await fx.tamper.setLeaseClient(owned.id, 'thief');
      await expectTampered(fx.store.leases.get(owned.id));
      await fx.tamper.setLeaseClient(owned.id, null);
      await expectTampered(fx.store.leases.get(owned.id));
      await fx.tamper.setLeaseClient(owned.id, 'owner');
      expect(await fx.store.leases.get(owned.id)).toMatchObject({ client: 'owner' });
      await fx.tamper.setLeaseClient(plain.id, 'thief');
      await expectTampered(fx.store.leases.get(plain.id));
      await expectTampered((await fx.another()).leases.liveUsernames());
    });
  });
}
