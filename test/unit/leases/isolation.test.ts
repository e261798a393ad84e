/**
 * Revocation isolation with fake servers: a target that hangs (connect never answers until
 * it is abandoned) holds its own attempt until the attempt's deadline, and nothing else.
 * The sweep and the daemon go on claiming and revoking on the other targets meanwhile; the
 * leases of the hanging target due meanwhile wait for its attempt and share its failure;
 * nothing is claimed twice, and attempts in flight are bounded.
 */
import { type DaemonEvent, runDaemon } from '../../../src/daemon/loop.js';
import type { LeaseDeps } from '../../../src/leases/deps.js';
import type { RevokeOutcome } from '../../../src/leases/revoke.js';
import { sweep } from '../../../src/leases/sweep.js';
import { MINUTE, SECOND } from '../../helpers/fake-clock.js';
import type { FakeServer } from '../../helpers/fake-target.js';
import { FAKE_HOST, type LeaseHarness, leaseHarness } from '../../helpers/lease-harness.js';

let h: LeaseHarness;

beforeEach(async () => {
  h = await leaseHarness();
});

afterEach(() => h.cleanup());

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A fake PostgreSQL server on its own port with a recipe on it; returns the recipe's path and the server. */
async function target(name: string, port: number): Promise<{ path: string; server: FakeServer }> {
  await h.base(`db:pg:${name}-root`, { port });
  await h.dynamic(`db:pg:${name}`, {}, `db:pg:${name}-root`);
  return { path: `db:pg:${name}`, server: h.servers.server(FAKE_HOST, port) };
}

/** LeaseDeps whose connect counts the connections being attempted at once. */
function counting(deps: LeaseDeps) {
  const seen = { now: 0, max: 0 };
  const wrapped: LeaseDeps = {
    ...deps,
    connect: async (connection, options) => {
      seen.now++;
      seen.max = Math.max(seen.max, seen.now);
      try {
        return await deps.connect(connection, options);
      } finally {
        seen.now--;
      }
    },
  };
  return { deps: wrapped, seen };
}

const connectsTo = (server: FakeServer) => h.servers.callsOf('connect').filter((c) => c.server === server.address).length;

describe('the sweep', () => {
  test('a target that hangs delays no other: the others are claimed and revoked while it is tried, and it fails at its own deadline', async () => {
    const dead = await target('dead', 6001);
    const ok = await target('ok', 6002);
    const deadLease = await h.issue(dead.path, 60);
    const okLeases = [await h.issue(ok.path, 61), await h.issue(ok.path, 62), await h.issue(ok.path, 63)];
    h.clock.advance(2 * MINUTE);
    dead.server.hanging = true;
    const order: RevokeOutcome[] = [];
    // One lease per claim: the healthy ones come in batches claimed after the hanging attempt began.
    const report = await sweep(h.deps, { batchSize: 1, targetMs: 400, onOutcome: (o) => order.push(o) });
    expect(report).toMatchObject({ revoked: 3, failed: 1 });
    expect(order.map((o) => o.lease.id)).toEqual([...okLeases.map((l) => l.lease_id), deadLease.lease_id]);
    expect(order[3].error).toMatch(/^The revocation on db\.sy\.invalid:6001 did not finish within 0\.4 s; it is retried later\.$/);
    expect(await h.lease(deadLease.lease_id)).toMatchObject({ state: 'failed', attempts: 1 });
    expect(okLeases.map((l) => ok.server.has(l.username))).toEqual([false, false, false]);
    // Each healthy lease had its own attempt, started while the hanging one was still waiting.
    expect(h.servers.callsOf('revoke').filter((c) => c.server === ok.server.address)).toHaveLength(3);
  });

  test('an attempt is given up before its leases\' claims lapse, so no other process takes them over while it runs', async () => {
    const dead = await target('dead', 6001);
    const lease = await h.issue(dead.path, 60);
    h.clock.advance(2 * MINUTE);
    dead.server.hanging = true;
    const report = await sweep(h.deps, { claimMs: 2_500, targetMs: 60_000 });
    expect(report.errors.map((e) => e.error)).toEqual([expect.stringMatching(/did not finish within 1\.5 s/)]);
    // Settled under its own claim: the claim had not lapsed.
    expect(await h.lease(lease.lease_id)).toMatchObject({ state: 'failed', attempts: 1 });
    expect(h.audit().filter((e) => e.lease_id === lease.lease_id && e.action === 'sweep.revoke')).toHaveLength(1);
  });

  test('attempts in flight are bounded: when all are taken by hanging targets, the next target waits for one to give up', async () => {
    const hanging: { path: string; server: FakeServer }[] = [];
    for (let i = 0; i < 6; i++) hanging.push(await target(`dead${i}`, 6100 + i));
    const ok = await target('ok', 6200);
    for (const [i, t] of hanging.entries()) await h.issue(t.path, 60 + i);
    // Due last: it waits behind every hanging target in the claim's order.
    const okLease = await h.issue(ok.path, 90);
    h.clock.advance(2 * MINUTE);
    for (const t of hanging) t.server.hanging = true;

    // Two young attempts and three in all: the healthy target waits for a hanging one to give up.
    const bounded = counting(h.deps);
    const order: string[] = [];
    const report = await sweep(bounded.deps, { targetMs: 300, limits: { young: 2, total: 3, slowAfterMs: 50 }, onOutcome: (o) => order.push(o.lease.id) });
    expect(report).toMatchObject({ revoked: 1, failed: 6 });
    expect(bounded.seen.max).toBe(3);
    expect(order.indexOf(okLease.lease_id)).toBeGreaterThan(0);
  });

  test('with room for the slow ones, the healthy target goes through the young lane before any hanging target gives up', async () => {
    const hanging: { path: string; server: FakeServer }[] = [];
    for (let i = 0; i < 6; i++) hanging.push(await target(`dead${i}`, 6100 + i));
    const ok = await target('ok', 6200);
    for (const [i, t] of hanging.entries()) await h.issue(t.path, 60 + i);
    const okLease = await h.issue(ok.path, 90);
    h.clock.advance(2 * MINUTE);
    for (const t of hanging) t.server.hanging = true;

    const counted = counting(h.deps);
    const order: string[] = [];
    const report = await sweep(counted.deps, { targetMs: 1000, limits: { young: 2, total: 16, slowAfterMs: 50 }, onOutcome: (o) => order.push(o.lease.id) });
    expect(report).toMatchObject({ revoked: 1, failed: 6 });
    expect(order[0]).toBe(okLease.lease_id);
    expect(counted.seen.max).toBe(7);
    expect(hanging.map((t) => connectsTo(t.server))).toEqual(hanging.map(() => 2)); // the issue's and one attempt
  });
});

describe('the daemon', () => {
  test('goes on revoking on healthy targets while one hangs; the hanging target\'s leases are claimed once and share its failure', async () => {
    const dead = await target('dead', 6001);
    const ok = await target('ok', 6002);
    // Leases on the fake clock set to now; the daemon reads the real clock.
    h.clock.set(Date.now());
    const deadFirst = await h.issue(dead.path, 1);
    const deadLater = await h.issue(dead.path, 2);
    const okLeases = [await h.issue(ok.path, 2), await h.issue(ok.path, 3)];
    const deps: LeaseDeps = { ...h.deps, now: Date.now };
    const controller = new AbortController();
    const events: DaemonEvent[] = [];
    const done = runDaemon(deps, { intervalMs: 60_000, reapEveryMs: 3_600_000, once: false, signal: controller.signal, targetMs: 2_500 }, (e) => events.push(e));
    try {
      // Its first pass has run the reaper on both servers, which then leaves them alone.
      while (h.servers.callsOf('list').length < 2) await sleep(20);
      dead.server.hanging = true;
      const connectsBefore = connectsTo(dead.server);
      const ended = (id: string) => events.some((e) => (e.event === 'revoked' || e.event === 'revoke_failed') && e.lease_id === id);
      const deadline = Date.now() + 15 * SECOND;
      while (![deadFirst, deadLater, ...okLeases].every((l) => ended(l.lease_id)) && Date.now() < deadline) await sleep(50);

      const settled = events.filter((e) => e.event === 'revoked' || e.event === 'revoke_failed').map((e) => [e.event, e.lease_id]);
      // The healthy leases, due after the hanging attempt began, are revoked before it gives up.
      expect(settled).toEqual([
        ['revoked', okLeases[0].lease_id],
        ['revoked', okLeases[1].lease_id],
        ['revoke_failed', deadFirst.lease_id],
        ['revoke_failed', deadLater.lease_id],
      ]);
      // One attempt on the hanging target: the lease due while it ran waited for it and shares its failure.
      expect(connectsTo(dead.server) - connectsBefore).toBe(1);
      const failures = events.filter((e) => e.event === 'revoke_failed');
      expect(failures.map((e) => e.error)).toEqual([expect.stringMatching(/did not finish within 2\.5 s/), expect.stringMatching(/did not finish within 2\.5 s/)]);
      expect(await h.lease(deadLater.lease_id)).toMatchObject({ state: 'failed', attempts: 1 });
    } finally {
      controller.abort();
      await done;
    }
  }, 30_000);
});
