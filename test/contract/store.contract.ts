/**
 * The contract every Store implementation passes: `describeStoreContract(name, harness)`
 * runs it against the store the harness opens (test/contract/sqlite.test.ts for SQLite).
 * It covers every method of secrets, leases and audit, and info(); compare-and-set races
 * and claims across two handles; concurrent writers; rows and logs edited without the key;
 * the audit chain; the pool registry and the optional watch. Nothing in it knows the
 * engine: what is specific to one is the harness's.
 */
import { describeAudit } from './audit.contract.js';
import { describeClients } from './clients.contract.js';
import { Fixture, type StoreHarness, newSecret } from './fixture.js';
import { describeLeases } from './leases.contract.js';
import { describePools } from './pools.contract.js';
import { describeRaces } from './races.contract.js';
import { describeSecrets } from './secrets.contract.js';
import { describeTamper } from './tamper.contract.js';

export type { OpenOptions, StoreHarness, StoreUnderTest, TamperHooks } from './fixture.js';

export function describeStoreContract(name: string, harness: StoreHarness): void {
  describe(`the Store contract: ${name}`, () => {
    const fx = new Fixture(harness);
    beforeEach(() => fx.open());
    afterEach(async () => {
      // A store that works never warns.
      const warnings = fx.warnings;
      await fx.close();
      expect(warnings).toEqual([]);
    });

    describe('the store', () => {
      test('kind, location, and info() of an empty store', async () => {
        expect(['sqlite', 'postgresql']).toContain(fx.store.kind);
        expect(typeof fx.store.location).toBe('string');
        expect(fx.store.location.length).toBeGreaterThan(0);
        const info = await fx.store.info();
        expect(info).toEqual({ schemaVersion: expect.any(Number), secrets: 0, secretVersions: 0, leases: {}, auditLines: 0, clients: 0 });
        expect(Number.isSafeInteger(info.schemaVersion) && info.schemaVersion > 0).toBe(true);
      });

      test('info() counts secrets, versions, leases per state and audit lines, on every handle', async () => {
        const pair = await fx.dynamicPair();
        const secret = await fx.store.secrets.create(newSecret({ path: 'app:counted', kind: 'static' }));
        await fx.store.secrets.addVersion(secret.id, 1, { description: '', attributes: {}, data: { v: 2 } });
        await fx.leaseIn(pair, 'intent');
        await fx.leaseIn(pair, 'active');
        await fx.leaseIn(pair, 'active');
        await fx.leaseIn(pair, 'revoked');
        await fx.store.audit.append([{ action: 'one', outcome: 'success' }, { action: 'two', outcome: 'failure' }]);
        await fx.store.clients.create(fx.client());
        const expected = { schemaVersion: (await fx.store.info()).schemaVersion, secrets: 3, secretVersions: 4, leases: { intent: 1, active: 2, revoked: 1 }, auditLines: 2, clients: 1 };
        expect(await fx.store.info()).toEqual(expected);
        expect(await (await fx.other()).info()).toEqual(expected);
      });

      test('close() ends one handle; the store stays for the others', async () => {
        const secret = await fx.store.secrets.create(newSecret({ path: 'app:kept', kind: 'static' }));
        const extra = await fx.another();
        await extra.close();
        expect(await fx.store.secrets.get({ id: secret.id })).toEqual(secret);
        const again = await fx.another();
        expect(await again.secrets.get({ id: secret.id })).toEqual(secret);
      });
    });

    describeSecrets(fx);
    describeLeases(fx);
    describeAudit(fx);
    describeRaces(fx);
    describeTamper(fx);
    describePools(fx);
    describeClients(fx);
  });
}
