import { randomBytes } from 'node:crypto';
import { Census, RecordMac, recordKey, shown } from '../../src/store/records.js';

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
