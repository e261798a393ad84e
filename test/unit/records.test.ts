import { jest } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { Census, GENERATION, ROOTS, RecordMac, RootRecords, recordKey, shown } from '../../src/store/records.js';

const key = recordKey(randomBytes(32));

describe('RecordMac', () => {
  const macs = new RecordMac(key, 'store-a');

  test('binds the kind, the store and every value', () => {
    const mac = macs.of('lease', ['id-1', 'alice', 5]);
    expect(macs.check(mac, 'lease', ['id-1', 'alice', 5])).toEqual(mac);
    expect(macs.check(mac, 'lease', ['id-2', 'alice', 5])).toBeUndefined();
    expect(macs.check(mac, 'lease', ['id-1', 'alice', '5'])).toBeUndefined();
    expect(macs.check(mac, 'secret', ['id-1', 'alice', 5])).toBeUndefined();
    expect(new RecordMac(key, 'store-b').check(mac, 'lease', ['id-1', 'alice', 5])).toBeUndefined();
    expect(new RecordMac(recordKey(randomBytes(32)), 'store-a').check(mac, 'lease', ['id-1', 'alice', 5])).toBeUndefined();
  });

  test('values cannot be shifted between columns, and sealed bytes count', () => {
    const sealed = Buffer.from('sealed');
    expect(macs.check(macs.of('lease', ['a,b', 'c']), 'lease', ['a', 'b,c'])).toBeUndefined();
    expect(macs.check(macs.of('lease', ['a', null]), 'lease', ['a', 'null'])).toBeUndefined();
    expect(macs.check(macs.of('lease', ['a'], sealed), 'lease', ['a'], Buffer.from('sealeD'))).toBeUndefined();
    expect(macs.check(null, 'lease', ['a'])).toBeUndefined();
  });
});

describe('Census', () => {
  const macOf = (n: number) => new RecordMac(key, 's').of('lease', [n]);

  test('is the same whatever the order of additions, and removal undoes addition', () => {
    const a = new Census();
    const b = new Census();
    for (const n of [1, 2, 3]) a.add(macOf(n));
    for (const n of [3, 1, 2, 4]) b.add(macOf(n));
    expect(a.equals(b)).toBe(false);
    b.remove(macOf(4));
    expect(a.equals(b)).toBe(true);
    expect(Census.decode(a.encode())!.equals(a)).toBe(true);
  });

  test('tells a replaced member from the original, with the same count', () => {
    const a = new Census();
    const b = new Census();
    a.add(macOf(1));
    b.add(macOf(2));
    expect(a.count).toBe(b.count);
    expect(a.equals(b)).toBe(false);
  });

  test('decodes only what it encoded', () => {
    for (const text of ['', '{}', '{"count": -1, "sum": "0"}', '{"count": 1, "sum": "xyz"}', '{"count": 1.5, "sum": "0"}']) {
      expect(Census.decode(text)).toBeUndefined();
    }
  });
});

test('shown quotes a value with control characters or spaces', () => {
  expect(shown('db:postgresql:app')).toBe('db:postgresql:app');
  expect(shown('a\u001b[31mred')).toBe('"a\\u001b[31mred"');
});

describe('RootRecords', () => {
  const roots = new RootRecords(new RecordMac(key, 'store-a'));
  const first = Object.fromEntries(Object.keys(ROOTS).map((k) => [k, `${k}-v1`]));
  const stored = (rows: [string, string][]) => new Map(rows);
  const apply = (map: Map<string, string>, rows: [string, string][]) => new Map([...map, ...rows]);
  const refusal = (fn: () => unknown): string => {
    try {
      fn();
    } catch (error) {
      expect((error as { exitCode: number }).exitCode).toBe(4);
      return (error as Error).message;
    }
    throw new Error('not refused');
  };

  test('a new store reads back at generation 1; each change takes the next generation, for that root only', () => {
    const v1 = stored(roots.initial(first));
    expect(roots.check(v1)).toMatchObject({ generation: 1, values: new Map(Object.entries(first)) });
    const v2 = apply(v1, roots.next(roots.check(v1), { lease_census: 'leases-v2' }));
    const v3 = apply(v2, roots.next(roots.check(v2), { audit_head: 'head-v3' }));
    expect(roots.check(v3)).toMatchObject({ generation: 3, stamps: { lease_census: 2, audit_head: 3, secret_census: 1 } });
    expect(roots.check(v3).values.get('lease_census')).toBe('leases-v2');
  });

  test('a root put back alone is named; put back with the generation, the root that moved since names the generation', () => {
    const v1 = stored(roots.initial(first));
    const v2 = apply(v1, roots.next(roots.check(v1), { lease_census: 'leases-v2' }));
    const v3 = apply(v2, roots.next(roots.check(v2), { audit_head: 'head-v3' }));
    expect(refusal(() => roots.check(apply(v3, [['lease_census', v1.get('lease_census')!]])))).toMatch(/its live leases/);
    expect(refusal(() => roots.check(apply(v3, [['audit_head', v2.get('audit_head')!]])))).toMatch(/the audit log's end/);
    const censusAndGeneration: [string, string][] = [['lease_census', v1.get('lease_census')!], [GENERATION, v1.get(GENERATION)!]];
    expect(refusal(() => roots.check(apply(v3, censusAndGeneration)))).toMatch(/its generation counter/);
    // Everything put back together is the store as it was: the documented limit.
    expect(roots.check(v1).generation).toBe(1);
  });

  test('a root missing, edited, unstamped or from another key is refused; only a migration may name one absent', () => {
    const v1 = stored(roots.initial(first));
    const without = new Map([...v1].filter(([k]) => k !== 'secret_census'));
    expect(refusal(() => roots.check(without))).toMatch(/its secrets/);
    expect(refusal(() => roots.check(apply(v1, [['secret_census', roots.encode('secret_census', 'secret_census-v1')]])))).toMatch(/its secrets/);
    expect(refusal(() => roots.check(apply(v1, [['secret_census', `${'0'.repeat(64)}:1:x`]])))).toMatch(/its secrets/);
    const other = new RootRecords(new RecordMac(recordKey(randomBytes(32)), 'store-a'));
    expect(refusal(() => roots.check(stored(other.initial(first))))).toMatch(/generation counter/);
    const older = stored(roots.initial(first).filter(([k]) => k !== 'secret_census').map(([k, v]) => (k === GENERATION ? [k, roots.encode(GENERATION, JSON.stringify({ gen: 1, roots: Object.fromEntries(Object.keys(ROOTS).filter((k) => k !== 'secret_census').map((k) => [k, 1])) }))] : [k, v])));
    expect(refusal(() => roots.check(older))).toMatch(/its secrets/);
    const migrated = apply(older, roots.next(roots.check(older, ['secret_census']), { secret_census: 'new' }));
    expect(roots.check(migrated)).toMatchObject({ generation: 2, stamps: { secret_census: 2 } });
  });

  test('a row this handle has checked or written is not MACed again; one byte changed is', () => {
    const macs = new RecordMac(key, 'store-a');
    const handle = new RootRecords(macs);
    const v1 = stored(handle.initial(first));
    const checks = jest.spyOn(macs, 'check');
    handle.check(v1);
    handle.check(v1);
    expect(checks).not.toHaveBeenCalled(); // written by this handle: known
    const edited = v1.get('lease_census')!.replace('lease_census-v1', 'lease_census-v9');
    expect(refusal(() => handle.check(apply(v1, [['lease_census', edited]])))).toMatch(/its live leases/);
    expect(checks).toHaveBeenCalledTimes(1);
    // Another handle (another process) checks what it has not seen, once.
    const reader = new RootRecords(macs);
    reader.check(v1);
    reader.check(v1);
    expect(checks).toHaveBeenCalledTimes(1 + v1.size);
    checks.mockRestore();
  });
});
