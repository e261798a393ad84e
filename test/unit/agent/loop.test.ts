/**
 * The agent's loop against a fake LeaseService and a virtual clock: renewal at two thirds,
 * rotation with overlap before the max TTL, drain, a lease that stops working, an unreachable
 * service, and the stop that revokes everything.
 */
import { failed, notFound, usageError } from '../../../src/errors.js';
import type { LeaseService, RenewResult } from '../../../src/client/lease-service.js';
import type { IssuedLease, LeaseDetails } from '../../../src/io/lease-view.js';
import { type AgentDeps, type AgentSummary, type SessionCount, runAgent } from '../../../src/agent/loop.js';
import type { AgentEvent } from '../../../src/agent/events.js';

const S = 1000;
const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** Time moves only when every task waits: the earliest sleeper wakes next. */
class VirtualTime {
  now = Date.UTC(2030, 0, 1);
  private timers: { at: number; resolve: () => void }[] = [];

  sleep = (ms: number, signal: AbortSignal): Promise<void> =>
    new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const onAbort = () => {
        this.timers = this.timers.filter((t) => t !== timer);
        resolve();
      };
      const timer = {
        at: this.now + ms,
        resolve: () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      this.timers.push(timer);
      signal.addEventListener('abort', onAbort, { once: true });
    });

  async settle(): Promise<void> {
    for (let i = 0; i < 30; i++) await new Promise((r) => setImmediate(r));
  }

  /** Runs until `done()` or until virtual time passes `limit`. */
  async runUntil(done: () => boolean, limit: number): Promise<void> {
    const end = this.now + limit;
    for (;;) {
      await this.settle();
      if (done() || this.timers.length === 0) return;
      this.timers.sort((a, b) => a.at - b.at);
      const next = this.timers.shift()!;
      if (next.at > end) {
        this.timers.unshift(next);
        return;
      }
      this.now = Math.max(this.now, next.at);
      next.resolve();
    }
  }
}

interface FakeLease {
  id: string;
  state: string;
  createdAt: number;
  expiresAt: number;
  maxExpiresAt: number;
}

class FakeService implements LeaseService {
  leases = new Map<string, FakeLease>();
  calls: string[] = [];
  down = false;
  private n = 0;
  constructor(private readonly time: VirtualTime, private readonly ttl: number, private readonly maxTtl: number) {}

  private check(): void {
    if (this.down) throw failed('unreachable', 'The server could not be reached.');
  }

  async issue(): Promise<IssuedLease> {
    this.check();
    const id = `lease-${++this.n}`;
    const now = this.time.now;
    const lease = { id, state: 'active', createdAt: now, expiresAt: now + this.ttl * S, maxExpiresAt: now + this.maxTtl * S };
    this.leases.set(id, lease);
    this.calls.push(`issue ${id}`);
    return {
      lease_id: id, record_uid: 'r', path: 'db:pg:app', engine: 'postgresql', host: 'h', port: 5432, database: 'd',
      username: `user${this.n}`, password: 'secret-password', connection_string: 'postgresql://x', created_at: iso(now),
      expires_at: iso(lease.expiresAt), lease_duration: this.ttl, renewable: lease.expiresAt < lease.maxExpiresAt,
    };
  }

  details(l: FakeLease): LeaseDetails {
    return {
      lease_id: l.id, record_uid: 'r', path: 'db:pg:app', username: 'u', state: l.state, created_at: iso(l.createdAt),
      expires_at: iso(l.expiresAt), engine: 'postgresql', target: 't', pool: 'default', ttl: 0, max_expires_at: iso(l.maxExpiresAt),
      renewable: l.state === 'active' && l.expiresAt < l.maxExpiresAt, attempts: 0, last_error: null, ended_at: null, client: null,
    };
  }

  async list() {
    return [];
  }

  async read(): Promise<never> {
    throw new Error('the agent never reads a static secret');
  }

  async lookup(id: string): Promise<LeaseDetails> {
    this.check();
    const l = this.leases.get(id);
    if (!l) throw notFound('lease_not_found', `No lease with id ${id}.`);
    return this.details(l);
  }

  async renew(id: string): Promise<RenewResult> {
    this.check();
    const l = this.leases.get(id)!;
    if (l.state !== 'active') throw failed('lease_not_active', `Lease ${id} is ${l.state} and cannot be renewed.`);
    const wanted = this.time.now + this.ttl * S;
    l.expiresAt = Math.min(wanted, l.maxExpiresAt);
    this.calls.push(`renew ${id}`);
    return { lease: this.details(l), capped: l.expiresAt < wanted, unchanged: false };
  }

  async revoke(id: string): Promise<void> {
    this.check();
    this.leases.get(id)!.state = 'revoked';
    this.calls.push(`revoke ${id}`);
  }

  async close() {}
}

interface Run {
  time: VirtualTime;
  service: FakeService;
  events: (AgentEvent & { at: number })[];
  published: { id: string; at: number }[];
  sessions: Map<string, SessionCount>;
  stop(): void;
  result: Promise<AgentSummary>;
  done: () => boolean;
}

function start(options: { ttl: number; maxTtl: number; drainMs?: number; down?: boolean; publish?: AgentDeps['publish'] }): Run {
  const time = new VirtualTime();
  const service = new FakeService(time, options.ttl, options.maxTtl);
  service.down = options.down ?? false;
  const events: Run['events'] = [];
  const published: Run['published'] = [];
  const sessions = new Map<string, SessionCount>();
  const controller = new AbortController();
  let finished = false;
  const result = runAgent(
    { ref: { path: 'db:pg:app' }, drainMs: options.drainMs ?? 300 * S },
    {
      service,
      publish: options.publish ?? (async (lease) => void published.push({ id: lease.lease_id, at: time.now })),
      sessions: async (lease) => sessions.get(lease.lease_id) ?? 0,
      now: () => time.now,
      sleep: time.sleep,
      emit: (event) => events.push({ ...event, at: time.now }),
    },
    controller.signal,
  ).finally(() => {
    finished = true;
  });
  return { time, service, events, published, sessions, stop: () => controller.abort(), result, done: () => finished };
}

test('renews at two thirds of the current duration, and never rewrites the file for a renewal', async () => {
  const run = start({ ttl: 60, maxTtl: 3600 });
  const t0 = run.time.now;
  await run.time.runUntil(() => false, 130 * S);
  const renewals = run.events.filter((e) => e.event === 'renewed').map((e) => (e.at - t0) / S);
  expect(renewals).toEqual([40, 80, 120]);
  expect(run.published.map((p) => p.id)).toEqual(['lease-1']);
  run.stop();
  expect(await run.result).toEqual({ revoked: 1, failed: 0 });
  expect(run.service.leases.get('lease-1')!.state).toBe('revoked');
});

test('before the max TTL it issues and publishes the next lease first, and revokes the old one only after that', async () => {
  const run = start({ ttl: 60, maxTtl: 100 });
  await run.time.runUntil(() => run.published.length === 2, 200 * S);
  await run.time.runUntil(() => run.service.calls.includes('revoke lease-1'), 10 * S);
  const order = run.service.calls;
  expect(order.indexOf('issue lease-2')).toBeLessThan(order.indexOf('revoke lease-1'));
  const old = run.service.leases.get('lease-1')!;
  const publishedAt = run.published[1].at;
  // The successor is out while the old lease still has time left, and the old one goes once drained.
  expect(publishedAt).toBeLessThan(old.maxExpiresAt);
  expect(run.events.find((e) => e.event === 'revoked')).toMatchObject({ lease_id: 'lease-1', reason: 'no session left' });
  run.stop();
  await run.result;
});

test("an open session of the old user delays its revocation until it closes, and the drain deadline bounds the wait", async () => {
  const closes = start({ ttl: 60, maxTtl: 100, drainMs: 30 * S });
  closes.sessions.set('lease-1', 2);
  await closes.time.runUntil(() => closes.published.length === 2, 200 * S);
  const rotatedAt = closes.time.now;
  await closes.time.runUntil(() => false, 5 * S);
  expect(closes.service.leases.get('lease-1')!.state).toBe('active');
  expect(closes.events.find((e) => e.event === 'draining')).toMatchObject({ lease_id: 'lease-1', sessions: 2 });
  closes.sessions.set('lease-1', 0);
  await closes.time.runUntil(() => closes.service.leases.get('lease-1')!.state === 'revoked', 5 * S);
  expect(closes.service.leases.get('lease-1')!.state).toBe('revoked');
  expect(closes.time.now - rotatedAt).toBeLessThan(30 * S);
  closes.stop();
  await closes.result;

  const stays = start({ ttl: 60, maxTtl: 100, drainMs: 10 * S });
  stays.sessions.set('lease-1', 1);
  await stays.time.runUntil(() => stays.published.length === 2, 200 * S);
  const at = stays.time.now;
  await stays.time.runUntil(() => stays.service.leases.get('lease-1')!.state === 'revoked', 60 * S);
  expect(stays.time.now - at).toBeGreaterThanOrEqual(10 * S - 1000);
  expect(stays.time.now - at).toBeLessThanOrEqual(11 * S);
  expect(stays.events.find((e) => e.event === 'revoked' && e.lease_id === 'lease-1')).toMatchObject({ reason: 'drain deadline' });
  stays.stop();
  await stays.result;
});

test('a lease revoked behind its back, or whose user can no longer log in, is replaced within a check interval', async () => {
  const run = start({ ttl: 600, maxTtl: 3600 });
  await run.time.runUntil(() => run.published.length === 1, S);
  const t = run.time.now;
  run.service.leases.get('lease-1')!.state = 'revoked';
  await run.time.runUntil(() => run.published.length === 2, 120 * S);
  expect(run.published[1].at - t).toBeLessThanOrEqual(30 * S);
  run.sessions.set('lease-2', 'gone');
  await run.time.runUntil(() => run.published.length === 3, 120 * S);
  expect(run.events.filter((e) => e.event === 'rotating').map((e) => (e as { reason: string }).reason)).toEqual([
    'it is revoked',
    'its user can no longer log in',
  ]);
  run.stop();
  await run.result;
});

test('an unreachable service is retried with backoff, and the file keeps the current lease while it lives', async () => {
  const run = start({ ttl: 60, maxTtl: 3600 });
  await run.time.runUntil(() => run.published.length === 1, S);
  run.service.down = true;
  await run.time.runUntil(() => false, 55 * S);
  const retries = run.events.filter((e) => e.event === 'retry');
  expect(retries.length).toBeGreaterThan(1);
  const delays = retries.map((e) => (e as { delay_ms: number }).delay_ms);
  expect(delays[1]).toBeGreaterThan(delays[0]);
  expect(run.published).toHaveLength(1);
  run.service.down = false;
  await run.time.runUntil(() => run.events.some((e) => e.event === 'renewed'), 30 * S);
  expect(run.service.leases.get('lease-1')!.state).toBe('active');
  expect(run.published).toHaveLength(1);
  run.stop();
  await run.result;
});

test('a lease that expired while nothing could be reached is replaced once the service is back', async () => {
  const run = start({ ttl: 30, maxTtl: 3600 });
  await run.time.runUntil(() => run.published.length === 1, S);
  run.service.down = true;
  await run.time.runUntil(() => false, 60 * S);
  run.service.down = false;
  await run.time.runUntil(() => run.published.length === 2, 120 * S);
  expect(run.events.some((e) => e.event === 'rotating')).toBe(true);
  run.stop();
  await run.result;
});

test('stopping revokes the current lease and the ones still draining', async () => {
  const run = start({ ttl: 60, maxTtl: 100 });
  run.sessions.set('lease-1', 1);
  await run.time.runUntil(() => run.published.length === 2, 200 * S);
  expect(run.service.leases.get('lease-1')!.state).toBe('active');
  run.stop();
  await run.time.runUntil(() => run.done(), S);
  expect(await run.result).toEqual({ revoked: 2, failed: 0 });
  expect([...run.service.leases.values()].map((l) => l.state)).toEqual(['revoked', 'revoked']);
});

test('a first lease refused for good (bad path, TTL over the cap) fails at once; a transient refusal is retried', async () => {
  const time = new VirtualTime();
  const service = new FakeService(time, 60, 100);
  service.issue = async () => {
    throw usageError('ttl_too_long', 'A TTL of 999999 seconds is above the maximum.');
  };
  const deps = { service, publish: async () => {}, sessions: async () => 0 as const, now: () => time.now, sleep: time.sleep, emit: () => {} };
  await expect(runAgent({ ref: { path: 'p' }, drainMs: S }, deps, new AbortController().signal)).rejects.toMatchObject({ code: 'ttl_too_long' });

  const run = start({ ttl: 60, maxTtl: 100, down: true });
  await run.time.runUntil(() => false, 5 * S);
  expect(run.published).toHaveLength(0);
  run.service.down = false;
  await run.time.runUntil(() => run.published.length === 1, 60 * S);
  expect(run.published).toHaveLength(1);
  run.stop();
  await run.result;
});

test('a lease whose file could not be written is given back and tried again', async () => {
  let failOnce = true;
  const run = start({
    ttl: 60,
    maxTtl: 100,
    publish: async () => {
      if (failOnce) {
        failOnce = false;
        throw failed('output_failed', 'Could not write /x (ENOSPC).');
      }
    },
  });
  await run.time.runUntil(() => run.service.leases.size === 2, 30 * S);
  expect(run.service.leases.get('lease-1')!.state).toBe('revoked');
  expect(run.service.leases.get('lease-2')!.state).toBe('active');
  run.stop();
  await run.result;
});
