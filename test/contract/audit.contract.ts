import { createHmac, randomBytes } from 'node:crypto';
import { type AuditEntry, type AuditEvent, GENESIS_HASH, entryHash } from '../../src/audit/chain.js';
import type { Store } from '../../src/store/store.js';
import { ACTOR, type Fixture, OTHER_ACTOR, expectTampered, newSecret } from './fixture.js';

const event = (action: string, extra: Partial<AuditEvent> = {}): AuditEvent => ({ action, outcome: 'success', ...extra });

/** Every entry follows the one before it, from the genesis hash on. */
function expectOneChain(entries: AuditEntry[]): void {
  entries.forEach((entry, i) => expect(entry.prev).toBe(i === 0 ? GENESIS_HASH : entries[i - 1].hash));
}

async function expectRefused(store: Store): Promise<void> {
  await expectTampered(store.audit.check(), /^audit_log_/);
  await expectTampered(store.audit.append([event('after.tampering')]), /^audit_log_/);
}

/** AuditTrail: appends, reads, the head, verify; one chain across handles; a cut or replaced log. */
export function describeAudit(fx: Fixture): void {
  describe('audit', () => {
    test('an empty log: no entries, the genesis head, a clean verify, a check that passes', async () => {
      await fx.store.audit.check();
      expect(await fx.store.audit.read({})).toEqual([]);
      expect(await fx.store.audit.head()).toMatchObject({ lines: 0, hash: GENESIS_HASH });
      const result = await fx.store.audit.verify();
      expect(result).toMatchObject({ ok: true, lines: 0 });
      expect(result.firstBad).toBeUndefined();
      expect(typeof result.location).toBe('string');
      expect(result.location.length).toBeGreaterThan(0);
    });

    test('append: consecutive chained lines with time and actor filled in, fields left undefined left out', async () => {
      const before = Date.now();
      await fx.store.audit.append([
        event('secret.create', { path: 'app:a' }),
        event('lease.create', { path: 'db:dyn', lease_id: 'lease-1', db_user: 'sy_u', target: 'h:1/d', ttl: 60, error: undefined, detail: { nested: { n: 1 } } }),
      ]);
      await fx.store.audit.append([event('lease.revoke', { lease_id: 'lease-1', outcome: 'failure', error: 'refused' })]);
      const entries = await fx.store.audit.read({});
      expect(entries.map((e) => e.action)).toEqual(['secret.create', 'lease.create', 'lease.revoke']);
      expect(entries[1]).toMatchObject({ actor: ACTOR, path: 'db:dyn', lease_id: 'lease-1', db_user: 'sy_u', target: 'h:1/d', ttl: 60, outcome: 'success', detail: { nested: { n: 1 } } });
      expect(entries[1]).not.toHaveProperty('error');
      expect(entries[2]).toMatchObject({ outcome: 'failure', error: 'refused' });
      for (const entry of entries) {
        expect(Date.parse(entry.time)).toBeGreaterThanOrEqual(before - 1000);
        expect(Date.parse(entry.time)).toBeLessThanOrEqual(Date.now() + 1000);
        expect(entry.hash).toMatch(/^[0-9a-f]{64}$/);
      }
      expectOneChain(entries);
      expect(await fx.store.audit.verify()).toMatchObject({ ok: true, lines: 3 });
    });

    test('the head moves with every append, and not with an empty one', async () => {
      await fx.store.audit.append([event('one'), event('two')]);
      let entries = await fx.store.audit.read({});
      expect(await fx.store.audit.head()).toMatchObject({ lines: 2, hash: entries[1].hash });
      await fx.store.audit.append([]);
      expect(await fx.store.audit.head()).toMatchObject({ lines: 2, hash: entries[1].hash });
      await fx.store.audit.append([event('three')]);
      entries = await fx.store.audit.read({});
      expect(await fx.store.audit.head()).toMatchObject({ lines: 3, hash: entries[2].hash });
      expect(await (await fx.other()).audit.head()).toMatchObject({ lines: 3, hash: entries[2].hash });
    });

    test('read filters by time, lease and path, and keeps the last N', async () => {
      await fx.store.audit.append([event('a', { path: 'app:x' }), event('b', { lease_id: 'L1', path: 'db:dyn' }), event('c', { lease_id: 'L2', path: 'db:dyn' })]);
      const all = await fx.store.audit.read({});
      await new Promise((resolve) => setTimeout(resolve, 15));
      const middle = Date.now();
      await new Promise((resolve) => setTimeout(resolve, 15));
      await fx.store.audit.append([event('d', { lease_id: 'L1', path: 'db:dyn' })]);
      const actions = async (filter: Parameters<Store['audit']['read']>[0]) => (await fx.store.audit.read(filter)).map((e) => e.action);
      expect(await actions({ since: middle })).toEqual(['d']);
      expect(await actions({ since: Date.parse(all[0].time) })).toEqual(['a', 'b', 'c', 'd']);
      expect(await actions({ since: Date.now() + 3600_000 })).toEqual([]);
      expect(await actions({ leaseId: 'L1' })).toEqual(['b', 'd']);
      expect(await actions({ path: 'db:dyn' })).toEqual(['b', 'c', 'd']);
      expect(await actions({ path: 'db:dyn', leaseId: 'L2' })).toEqual(['c']);
      expect(await actions({ limit: 2 })).toEqual(['c', 'd']);
      expect(await actions({ path: 'db:dyn', limit: 1 })).toEqual(['d']);
      expect((await fx.store.audit.read({ leaseId: 'L2' }))[0]).toEqual(all[2]);
    });

    test('appends from two handles at once form one chain that verifies', async () => {
      const other = await fx.other();
      const writer = (store: Store, name: string) => async () => {
        for (let i = 0; i < 10; i++) await store.audit.append(i % 3 === 0 ? [event(`${name}.${i}.a`), event(`${name}.${i}.b`)] : [event(`${name}.${i}`)]);
      };
      await Promise.all([writer(fx.store, 'first')(), writer(other, 'second')(), writer(fx.store, 'third')()]);
      const entries = await other.audit.read({});
      expect(entries).toHaveLength(3 * 14);
      expectOneChain(entries);
      // Each batch is consecutive lines.
      for (const name of ['first', 'second', 'third']) {
        for (const i of [0, 3, 6, 9]) {
          const at = entries.findIndex((e) => e.action === `${name}.${i}.a`);
          expect(entries[at + 1].action).toBe(`${name}.${i}.b`);
        }
      }
      expect(new Set(entries.map((e) => e.actor))).toEqual(new Set([ACTOR, OTHER_ACTOR]));
      expect(entries.filter((e) => e.action.startsWith('second')).every((e) => e.actor === OTHER_ACTOR)).toBe(true);
      expect(await fx.store.audit.verify()).toMatchObject({ ok: true, lines: 42 });
      expect(await fx.store.audit.head()).toMatchObject({ lines: 42, hash: entries[41].hash });
    });

    test('a log cut short is refused by check and append, and reported by verify; put back, it grows again', async () => {
      await fx.store.audit.append([event('one'), event('two'), event('three'), event('four')]);
      const original = await fx.store.audit.read({});
      await fx.tamper.cutAuditLog(2);
      await expectRefused(fx.store);
      await expectRefused(await fx.another());
      expect(await fx.store.audit.verify()).toMatchObject({ ok: false, lines: 2, firstBad: { line: 3, reason: expect.stringMatching(/removed/) } });
      expect((await fx.store.audit.read({})).map((e) => e.action)).toEqual(['one', 'two']);

      await fx.tamper.replaceAuditLog(original);
      await fx.store.audit.check();
      await fx.store.audit.append([event('five')]);
      expect(await fx.store.audit.verify()).toMatchObject({ ok: true, lines: 5 });
    });

    test('a log emptied is refused and reported', async () => {
      await fx.store.audit.append([event('one')]);
      await fx.tamper.cutAuditLog(1);
      await expectRefused(fx.store);
      expect(await fx.store.audit.verify()).toMatchObject({ ok: false, lines: 0, firstBad: { line: 1 } });
    });

    test('a log rewritten consistently without the key is refused, and verify names its first line', async () => {
      await fx.store.audit.append([event('one'), event('two'), event('three')]);
      const wrongKey = randomBytes(32);
      const forge = (text: string) => createHmac('sha256', wrongKey).update(text).digest('hex');
      let prev = GENESIS_HASH;
      const forged = (await fx.store.audit.read({})).map(({ hash: _hash, ...entry }) => {
        const body = { ...entry, prev };
        prev = entryHash(body, forge);
        return { ...body, hash: prev };
      });
      await fx.tamper.replaceAuditLog(forged);
      await expectRefused(fx.store);
      expect(await fx.store.audit.verify()).toMatchObject({ ok: false, lines: 3, firstBad: { line: 1, reason: expect.stringMatching(/edited/) } });
    });

    test('a line edited in the middle, its hash kept, is named by verify', async () => {
      await fx.store.audit.append([event('one'), event('two'), event('three')]);
      const entries = await fx.store.audit.read({});
      await fx.tamper.replaceAuditLog(entries.map((e, i) => (i === 1 ? { ...e, outcome: 'failure' as const } : e)));
      expect(await fx.store.audit.verify()).toMatchObject({ ok: false, firstBad: { line: 2, reason: expect.stringMatching(/edited/) } });
    });

    test('secret changes through the store leave the log alone: the secrets service records them, not the repository', async () => {
      await fx.store.secrets.create(newSecret({ path: 'app:quiet', kind: 'static' }));
      expect(await fx.store.audit.read({})).toEqual([]);
    });
  });
}
