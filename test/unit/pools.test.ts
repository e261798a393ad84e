/**
 * The pool view of `sy pool list` and the warning of `lease create`, over a store stub:
 * which pools appear, which members count as live, what is flagged.
 */
import { LIVE_WINDOW_MS, listPools, unattended, unattendedPoolWarning } from '../../src/leases/pool.js';
import type { LeaseRecord, LeaseState } from '../../src/model/lease.js';
import type { PoolMember } from '../../src/store/pools.js';
import type { Store } from '../../src/store/store.js';

const NOW = Date.parse('2026-04-06T12:00:00Z');

function stubStore(kind: 'sqlite' | 'postgresql', members: PoolMember[], dynamicPools: (string | undefined)[], leases: Partial<LeaseRecord>[]): Store {
  const secrets = dynamicPools.map((pool, i) => ({
    id: `s${i}`,
    path: `db:dyn${i}`,
    version: 1,
    description: '',
    attributes: { linkConfig: { linkType: 'dynamic', linkedSecret: 'db:root' }, ...(pool === undefined ? {} : { pool }) },
    created: '',
    lastModified: '',
  }));
  return {
    kind,
    pools: { list: async () => members },
    secrets: { search: async () => [...secrets, { id: 'b', path: 'db:root', version: 1, description: '', attributes: { type: 'postgresql' }, created: '', lastModified: '' }] },
    leases: { list: async () => leases as LeaseRecord[] },
  } as unknown as Store;
}

const member = (id: string, pool: string | undefined, lastSeen: number): PoolMember => ({
  id, ...(pool === undefined ? {} : { pool }), host: `host-${id}`, pid: 100, version: '1.2.3', startedAt: NOW - 60_000, lastSeen,
});
const lease = (pool: string, state: LeaseState, expiresAt: number): Partial<LeaseRecord> => ({ pool, state, expiresAt });

describe('listPools', () => {
  test('one entry per pool named by a dynamic secret, a lease or a live daemon, sorted, in the documented shape', async () => {
    const store = stubStore(
      'postgresql',
      [member('a', 'blue', NOW - 1000), member('b', 'ghost', NOW - LIVE_WINDOW_MS - 1), member('c', 'green', NOW)],
      ['blue', undefined],
      [lease('blue', 'active', NOW + 5000), lease('blue', 'active', NOW + 3000), lease('blue', 'failed', NOW - 1), lease('orphan', 'active', NOW + 9000)],
    );
    const pools = await listPools(store, NOW);
    expect(pools).toEqual([
      {
        pool: 'blue',
        daemons: [{ host: 'host-a', pid: 100, version: '1.2.3', started_at: '2026-04-06T11:59:00Z', last_seen: '2026-04-06T11:59:59Z' }],
        active_leases: 3,
        next_expiry: '2026-04-06T12:00:03Z',
      },
      { pool: 'default', daemons: [], active_leases: 0, next_expiry: null },
      { pool: 'green', daemons: [expect.objectContaining({ host: 'host-c' })], active_leases: 0, next_expiry: null },
      { pool: 'orphan', daemons: [], active_leases: 1, next_expiry: '2026-04-06T12:00:09Z' },
    ]);
    // A member silent for longer than the window is not listed, and names no pool ("ghost").
    expect(pools.map(unattended)).toEqual([false, false, false, true]);
  });

  test('a daemon without a pool serves, and is listed under, every pool', async () => {
    const store = stubStore('sqlite', [member('all', undefined, NOW)], ['red'], [lease('red', 'active', NOW + 1)]);
    const [red] = await listPools(store, NOW);
    expect(red).toMatchObject({ pool: 'red', daemons: [expect.objectContaining({ host: 'host-all' })], active_leases: 1 });
    expect(unattended(red)).toBe(false);
  });
});

describe('the warning of lease create', () => {
  test('in a shared store, when no live member serves the pool', async () => {
    const stale = stubStore('postgresql', [member('a', 'blue', NOW - LIVE_WINDOW_MS - 1), member('b', 'green', NOW)], [], []);
    expect(await unattendedPoolWarning(stale, 'blue', NOW)).toMatch(/^no live daemon serves pool blue, .*sy daemon --pool blue/);
    expect(await unattendedPoolWarning(stale, 'green', NOW)).toBeUndefined();
    const everyPool = stubStore('postgresql', [member('all', undefined, NOW - 1000)], [], []);
    expect(await unattendedPoolWarning(everyPool, 'blue', NOW)).toBeUndefined();
  });

  test('never in a store of one machine, and never when the registry cannot be read', async () => {
    expect(await unattendedPoolWarning(stubStore('sqlite', [], [], []), 'blue', NOW)).toBeUndefined();
    const broken = { kind: 'postgresql', pools: { list: async () => { throw new Error('lost'); } } } as unknown as Store;
    expect(await unattendedPoolWarning(broken, 'blue', NOW)).toBeUndefined();
  });
});
