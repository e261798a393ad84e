import type { Store } from '../../src/store/store.js';
import { type Fixture, T0, expectTampered, newSecret, rejection } from './fixture.js';

const TAMPERED_OR_LOG = /^(store_tampered|audit_log_tampered)$/;

/** `sy audit verify` refuses: the store's records throw (exit 4), or the log is reported not intact. */
async function expectVerifyRefused(store: Store): Promise<void> {
  const result = await store.audit.verify().catch((error: unknown) => error);
  if (result instanceof Error) {
    const error = await rejection(Promise.reject(result));
    expect({ exitCode: error.exitCode, code: error.code }).toEqual({ exitCode: 4, code: expect.stringMatching(TAMPERED_OR_LOG) });
  } else {
    expect(result).toMatchObject({ ok: false });
  }
}

/** Everything a sweep, the reaper, a new lease and `audit verify` do first: each refuses the store. */
async function expectLedgerRefused(fx: Fixture, named: RegExp = /./): Promise<void> {
  const fresh = await fx.another();
  const now = T0 + 1_000_000;
  const error = await rejection(fresh.leases.claimDue({ now, limit: 10, staleIntentBefore: 0, claimMs: 60_000 }, 'sweeper'));
  expect({ exitCode: error.exitCode, code: error.code }).toEqual({ exitCode: 4, code: expect.stringMatching(TAMPERED_OR_LOG) });
  expect(error.message).toMatch(named);
  await expectTampered((await fx.another()).leases.liveUsernames(), TAMPERED_OR_LOG);
  await expectTampered((await fx.another()).leases.list({ limit: 100 }), TAMPERED_OR_LOG);
  await expectVerifyRefused(await fx.another());
}

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

  describe('records put back without the key: a census replayed, older rows mixed with newer', () => {
    test('a live lease deleted and the older census of live leases put back: the sweep, the reaper, the listing and verify refuse', async () => {
      const pair = await fx.dynamicPair();
      const lease = fx.lease(pair);
      const putBack = await fx.tamper.keep(['lease_census', `lease:${lease.id}`]);
      await fx.store.leases.recordIntent(lease);
      await fx.store.leases.transition(lease.id, ['intent'], 'active');
      await fx.store.audit.append([{ action: 'lease.create', lease_id: lease.id, outcome: 'success' }]);
      await putBack();
      await expectLedgerRefused(fx, /its live leases/);
      await expectTampered((await fx.another()).leases.recordIntent(fx.lease(pair)));
    });

    test('the same with the generation put back too: the audit head that moved since tells', async () => {
      const pair = await fx.dynamicPair();
      const lease = fx.lease(pair);
      const putBack = await fx.tamper.keep(['lease_census', 'generation', `lease:${lease.id}`]);
      await fx.store.leases.recordIntent(lease);
      await fx.store.leases.transition(lease.id, ['intent'], 'active');
      await fx.store.audit.append([{ action: 'lease.create', lease_id: lease.id, outcome: 'success' }]);
      await putBack();
      await expectLedgerRefused(fx);
      await expectTampered((await fx.another()).secrets.get({ id: pair.dynamic.id }));
    });

    test('the same with the audit head put back too: the lines written after it tell', async () => {
      const pair = await fx.dynamicPair();
      await fx.store.audit.append([{ action: 'secret.create', outcome: 'success' }]);
      const lease = fx.lease(pair);
      const putBack = await fx.tamper.keep(['lease_census', 'generation', 'audit_head', `lease:${lease.id}`]);
      await fx.store.leases.recordIntent(lease);
      await fx.store.leases.transition(lease.id, ['intent'], 'active');
      await fx.store.audit.append([{ action: 'lease.create', lease_id: lease.id, outcome: 'success' }]);
      await putBack();
      await expectLedgerRefused(fx);
      await expectTampered((await fx.another()).audit.append([{ action: 'next', outcome: 'success' }]), TAMPERED_OR_LOG);
    });

    test('an older lease row with the older census, under a newer audit head: a revoked lease set back to active is refused', async () => {
      const pair = await fx.dynamicPair();
      const lease = await fx.leaseIn(pair, 'active');
      const putBack = await fx.tamper.keep(['lease_census', `lease:${lease.id}`]);
      expect(await fx.store.leases.claim(lease.id, 'revoker', T0 + 1_000, 60_000)).toMatchObject({ state: 'revoking' });
      await fx.store.leases.settleAll('revoker', [{ id: lease.id, to: 'revoked', changes: { endedAt: T0 + 2_000 } }]);
      await fx.store.audit.append([{ action: 'lease.revoke', lease_id: lease.id, outcome: 'success' }]);
      await putBack();
      await expectLedgerRefused(fx, /its live leases/);
      await expectTampered((await fx.another()).leases.claim(lease.id, 'again', T0 + 3_000, 60_000));
    });

    test('a dynamic secret rolled back to its older, wider version with the older census of secrets: reading it refuses', async () => {
      const pair = await fx.dynamicPair();
      const putBack = await fx.tamper.keep([`secret:${pair.dynamic.id}`, 'secret_census']);
      const narrower = { ...pair.dynamic, attributes: { ...pair.dynamic.attributes, grantPermissions: { what: 'SELECT', where: 'one.table' } } };
      expect(await fx.store.secrets.addVersion(pair.dynamic.id, 1, { ...narrower, linkedPath: pair.base.path })).toMatchObject({ version: 2 });
      await fx.store.audit.append([{ action: 'secret.update', path: pair.dynamic.path, outcome: 'success' }]);
      await putBack();
      const fresh = await fx.another();
      const error = await rejection(fresh.secrets.get({ path: pair.dynamic.path }));
      expect({ exitCode: error.exitCode, code: error.code }).toEqual({ exitCode: 4, code: 'store_tampered' });
      expect(error.message).toMatch(/its secrets/);
      await expectTampered(fresh.secrets.get({ id: pair.dynamic.id }));
      await expectTampered(fresh.secrets.search({ limit: 100 }));
      await expectTampered(fresh.secrets.addVersion(pair.dynamic.id, 1, { ...narrower, linkedPath: pair.base.path }));
      await expectVerifyRefused(fresh);
    });

    test('the same with the generation put back too: reading the secret refuses', async () => {
      const pair = await fx.dynamicPair();
      const putBack = await fx.tamper.keep([`secret:${pair.dynamic.id}`, 'secret_census', 'generation']);
      expect(await fx.store.secrets.addVersion(pair.dynamic.id, 1, { ...pair.dynamic, linkedPath: pair.base.path })).toMatchObject({ version: 2 });
      await fx.store.audit.append([{ action: 'secret.update', path: pair.dynamic.path, outcome: 'success' }]);
      await putBack();
      await expectTampered((await fx.another()).secrets.get({ path: pair.dynamic.path }));
      await expectVerifyRefused(await fx.another());
    });

    test('an older secret row and version with the newer census: the listing refuses, and so does verify', async () => {
      const pair = await fx.dynamicPair();
      const putBack = await fx.tamper.keep([`secret:${pair.dynamic.id}`]);
      await fx.store.secrets.addVersion(pair.dynamic.id, 1, { ...pair.dynamic, linkedPath: pair.base.path });
      await putBack();
      await expectTampered((await fx.another()).secrets.search({ limit: 100 }));
    });

    test('the audit head put back alone: every write, every read of a secret and verify refuse', async () => {
      const pair = await fx.dynamicPair();
      const secret = await fx.store.secrets.create(newSecret({ path: fx.unique('app:h'), kind: 'static' }));
      await fx.store.audit.append([{ action: 'one', outcome: 'success' }]);
      const putBack = await fx.tamper.keep(['audit_head']);
      await fx.store.audit.append([{ action: 'two', outcome: 'success' }]);
      await putBack();
      const fresh = await fx.another();
      const error = await rejection(fresh.secrets.get({ id: secret.id }));
      expect(error.message).toMatch(/the audit log's end/);
      await expectTampered(fresh.audit.append([{ action: 'three', outcome: 'success' }]), TAMPERED_OR_LOG);
      await expectTampered(fresh.secrets.create(newSecret({ path: fx.unique('app:h'), kind: 'static' })));
      await expectTampered(fresh.leases.recordIntent(fx.lease(pair)));
      await expectVerifyRefused(fresh);
    });
  });
}
