import { type Fixture, T0, expectTampered } from './fixture.js';

/** Rows edited without the key: every read of them is refused with exit 4, and nothing is acted on. */
export function describeTamper(fx: Fixture): void {
  describe('rows edited without the key', () => {
    test('a secret\'s path: refused by get, search, addVersion and delete; put back, it is as it was', async () => {
      const secret = await fx.staticSecret('app:mine', { password: 'p' });
      await fx.tamper.editSecret(secret.id, { path: 'app:theirs' });
      await expectTampered(fx.store.secrets.get({ id: secret.id }));
      await expectTampered(fx.store.secrets.get({ path: 'app:theirs' }));
      await expectTampered(fx.store.secrets.search({ limit: 10 }));
      await expectTampered(fx.store.secrets.addVersion(secret.id, 1, { description: '', attributes: {}, data: { password: 'changed' } }));
      await expectTampered(fx.store.secrets.delete(secret.id, { force: true }));
      await expectTampered((await fx.another()).secrets.get({ id: secret.id }));

      await fx.tamper.editSecret(secret.id, { path: 'app:mine' });
      expect(await fx.store.secrets.get({ id: secret.id })).toEqual(secret);
      expect((await fx.store.info()).secretVersions).toBe(1);
    });

    test('a secret\'s current version moved back: refused', async () => {
      const secret = await fx.staticSecret('app:moved', { v: 1 });
      await fx.store.secrets.addVersion(secret.id, 1, { description: '', attributes: {}, data: { v: 2 } });
      await fx.tamper.editSecret(secret.id, { currentVersion: 1 });
      await expectTampered(fx.store.secrets.get({ path: 'app:moved' }));
      await expectTampered(fx.store.secrets.addVersion(secret.id, 1, { description: '', attributes: {}, data: { v: 'again' } }));
      await fx.tamper.editSecret(secret.id, { currentVersion: 2 });
      expect(await fx.store.secrets.get({ path: 'app:moved' })).toMatchObject({ version: 2, data: { v: 2 } });
    });

    test('a live lease made to look ended: refused by get, transition, the listing and the live users; put back, untouched', async () => {
      const pair = await fx.dynamicPair();
      const lease = await fx.leaseIn(pair, 'active');
      const before = await fx.store.leases.get(lease.id);
      await fx.tamper.editLease(lease.id, { state: 'revoked' });
      await expectTampered(fx.store.leases.get(lease.id));
      await expectTampered(fx.store.leases.transition(lease.id, ['revoked', 'active'], 'forgotten'));
      await expectTampered(fx.store.leases.list({ all: true, limit: 10 }));
      await expectTampered(fx.store.leases.liveUsernames());
      await expectTampered((await fx.another()).leases.liveUsernames());

      await fx.tamper.editLease(lease.id, { state: 'active' });
      expect(await fx.store.leases.get(lease.id)).toEqual(before);
    });

    test('a revoked lease set back to its older active row: a claim of it, from a fresh handle, is refused', async () => {
      const pair = await fx.dynamicPair();
      const lease = await fx.leaseIn(pair, 'active');
      const putBack = await fx.tamper.keepLeaseRow(lease.id);
      const claimed = await fx.store.leases.claim(lease.id, 'revoker', T0 + 1_000, 60_000);
      expect(claimed?.state).toBe('revoking');
      expect(await fx.store.leases.settleAll('revoker', [{ id: lease.id, to: 'revoked', changes: { endedAt: T0 + 2_000 } }])).toMatchObject([{ state: 'revoked' }]);
      // Every value of the old row is one the key wrote: only the census of live leases tells.
      await putBack();
      const fresh = await fx.another();
      await expectTampered(fresh.leases.claim(lease.id, 'again', T0 + 3_000, 60_000));
    });

    test('a due lease\'s path edited: claimDue claims nothing at all; put back, every lease is still active', async () => {
      const pair = await fx.dynamicPair();
      const now = T0 + 1_000_000;
      const edited = await fx.leaseIn(pair, 'active', { expiresAt: now - 2 });
      const other = await fx.leaseIn(pair, 'active', { expiresAt: now - 1 });
      await fx.tamper.editLease(edited.id, { path: 'db:elsewhere' });
      for (const store of [fx.store, await fx.another()]) {
        await expectTampered(store.leases.claimDue({ now, limit: 10, staleIntentBefore: 0, claimMs: 60_000 }, 'sweeper'));
        await expectTampered(store.leases.claim(edited.id, 'sweeper', now, 60_000));
      }
      await fx.tamper.editLease(edited.id, { path: edited.path });
      expect((await fx.store.leases.get(edited.id))?.state).toBe('active');
      expect((await fx.store.leases.get(other.id))?.state).toBe('active');
      expect(await fx.store.leases.countByState()).toEqual({ active: 2 });
    });
  });
}
