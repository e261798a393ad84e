/**
 * The daemon's loop over a store stub: a store that goes away is said once, retried with
 * backoff and said back; a tampered store ends it; the registry sees it join, beat and
 * leave; the ready callback runs only while passes and heartbeats succeed; a watch wakes it.
 */
import { failed, storeError } from '../../src/errors.js';
import { type DaemonEvent, runDaemon } from '../../src/daemon/loop.js';
import type { LeaseDeps } from '../../src/leases/deps.js';
import type { StoreWatcher } from '../../src/store/pools.js';
import type { Store } from '../../src/store/store.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function stub() {
  const state = {
    down: false,
    fatal: undefined as Error | undefined,
    calls: [] as string[],
    nextDueCalls: 0,
    watcher: undefined as StoreWatcher | undefined,
  };
  const gate = async <T>(what: string, value: T): Promise<T> => {
    if (state.fatal) throw state.fatal;
    if (state.down) throw failed('store_unreachable', 'Lost the connection to the store at db:5432; what was being done there was not completed.');
    state.calls.push(what);
    return value;
  };
  const store = {
    kind: 'postgresql',
    location: 'postgresql://db/sy',
    leases: {
      nextDue: async () => {
        state.nextDueCalls++;
        return gate('nextDue', undefined);
      },
      claimDue: async () => gate('claimDue', []),
      liveUsernames: async () => gate('liveUsernames', new Set<string>()),
    },
    secrets: { search: async () => gate('search', []) },
    pools: {
      join: async () => gate('join', 'member-1'),
      heartbeat: async () => gate('heartbeat', true),
      leave: async () => gate('leave', undefined),
      list: async () => [],
    },
    watch: async (watcher: StoreWatcher) => {
      await gate('watch', undefined);
      state.watcher = watcher;
      return { close: async () => void state.calls.push('unwatch') };
    },
    audit: { append: async () => undefined },
  } as unknown as Store;
  const deps: LeaseDeps = { store, connect: async () => { throw new Error('no target'); }, now: Date.now, claimant: 'test' };
  return { state, deps };
}

function start(deps: LeaseDeps, extra: { onHealthy?: () => void; intervalMs?: number } = {}) {
  const controller = new AbortController();
  const events: DaemonEvent[] = [];
  const done = runDaemon(
    deps,
    {
      intervalMs: extra.intervalMs ?? 100,
      reapEveryMs: 60_000,
      once: false,
      signal: controller.signal,
      pool: 'blue',
      member: { host: 'h', pid: 1, version: 'v' },
      heartbeatMs: 40,
      onHealthy: extra.onHealthy,
    },
    (e) => events.push(e),
  );
  return { controller, events, done };
}

test('a store that goes away: one line, retries, one line when it is back; then it stops and leaves', async () => {
  const { state, deps } = stub();
  let healthy = 0;
  const d = start(deps, { onHealthy: () => healthy++ });
  await sleep(200);
  expect(state.calls).toEqual(expect.arrayContaining(['watch', 'join', 'nextDue', 'heartbeat']));
  expect(healthy).toBeGreaterThan(0);

  state.down = true;
  await sleep(1500);
  const healthyWhileDown = healthy;
  await sleep(300);
  expect(healthy).toBe(healthyWhileDown);
  const triesWhileDown = state.nextDueCalls;
  state.down = false;
  // The backoff is at most 5 s; here a handful of tries went by.
  await sleep(2500);
  expect(state.nextDueCalls).toBeGreaterThan(triesWhileDown);
  expect(healthy).toBeGreaterThan(healthyWhileDown);

  d.controller.abort();
  await d.done;
  const kinds = d.events.map((e) => e.event);
  expect(kinds.filter((k) => k === 'store_unreachable')).toHaveLength(1);
  expect(kinds.filter((k) => k === 'store_reconnected')).toHaveLength(1);
  expect(kinds[0]).toBe('start');
  expect(kinds.at(-1)).toBe('stop');
  expect(d.events.find((e) => e.event === 'store_unreachable')?.error).toMatch(/^Lost the connection to the store/);
  expect(d.events.find((e) => e.event === 'store_reconnected')?.after_ms).toBeGreaterThan(1000);
  expect(state.calls.at(-2)).toBe('leave');
  expect(state.calls.at(-1)).toBe('unwatch');
}, 15_000);

test('a store tampered with ends the daemon with the error, after leaving the registry', async () => {
  const { state, deps } = stub();
  const d = start(deps);
  await sleep(150);
  const tampered = storeError('store_tampered', 'The store was changed by someone without the key: lease x.');
  state.fatal = tampered;
  await expect(d.done).rejects.toBe(tampered);
  expect(d.events.map((e) => e.event)).not.toContain('store_unreachable');
  expect(d.events.at(-1)?.event).toBe('stop');
});

test('a change reported by the watch wakes it before its interval; other pools do not', async () => {
  const { state, deps } = stub();
  const d = start(deps, { intervalMs: 60_000 });
  await sleep(200);
  const before = state.nextDueCalls;
  state.watcher!.change('green');
  await sleep(100);
  expect(state.nextDueCalls).toBe(before);
  state.watcher!.change('blue');
  await sleep(100);
  expect(state.nextDueCalls).toBeGreaterThan(before);
  // A lost watch is taken up again at the next pass.
  const watches = state.calls.filter((c) => c === 'watch').length;
  state.watcher!.error(new Error('connection ended'));
  await sleep(100);
  expect(state.calls.filter((c) => c === 'watch').length).toBe(watches + 1);
  d.controller.abort();
  await d.done;
});
