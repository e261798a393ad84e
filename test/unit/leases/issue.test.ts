/**
 * Issuing a lease: the intent is in the ledger before the user exists, the lease is
 * active only once the server has the user, and every failure on the way ends in a state
 * the sweep can finish from. Fake servers, a fake clock, a real SQLite ledger.
 */
import { REAP_GRACE_MS, STALE_INTENT_MS } from '../../../src/leases/deps.js';
import { sweep } from '../../../src/leases/sweep.js';
import { parseManagedName } from '../../../src/targets/names.js';
import { MINUTE, SECOND } from '../../helpers/fake-clock.js';
import { type LeaseHarness, leaseHarness } from '../../helpers/lease-harness.js';

let h: LeaseHarness;

beforeEach(async () => {
  h = await leaseHarness();
  await h.dynamic('db:pg:app');
});

afterEach(() => h.cleanup());

const everyLease = () => h.store.leases.list({ all: true, limit: 100 });

describe('issueLease: intent, then the user, then active', () => {
  test('the ledger holds an intent while the user is being made, and an active lease once it exists', async () => {
    const release = h.pg.holdCreates();
    const issuing = h.issue('db:pg:app');
    // Let the issue reach the server: it connects and reads the clock, then records the intent.
    while ((await everyLease()).length === 0) await new Promise((r) => setImmediate(r));
    const [pending] = await everyLease();
    expect(pending.state).toBe('intent');
    expect(h.pg.has(pending.username)).toBe(false);

    release();
    const lease = await issuing;
    expect(lease.lease_id).toBe(pending.id);
    const record = await h.lease(lease.lease_id);
    expect(record.state).toBe('active');
    expect(h.pg.users.get(lease.username)).toMatchObject({ password: lease.password, validUntil: new Date(record.expiresAt) });
    expect(h.servers.open).toBe(0);
    expect(h.audit().map((e) => [e.action, e.outcome, e.lease_id])).toEqual([['lease.create', 'success', lease.lease_id]]);
  });

  test('the TTL is the recipe ttl by default, the one asked for otherwise; the max TTL is fixed at issue', async () => {
    const start = h.clock.peek();
    const byDefault = await h.issue('db:pg:app');
    expect(byDefault.lease_duration).toBe(600);
    const asked = await h.issue('db:pg:app', 90);
    expect(asked.lease_duration).toBe(90);
    const record = await h.lease(asked.lease_id);
    expect(record).toMatchObject({ createdAt: start, expiresAt: start + 90 * SECOND, maxExpiresAt: start + 3600 * SECOND });
    expect(asked.renewable).toBe(true);
    expect((await h.issue('db:pg:app', 3600)).renewable).toBe(false);
  });

  test("the user's name carries the reap-after bound: the max TTL plus the grace", async () => {
    const lease = await h.issue('db:pg:app');
    const record = await h.lease(lease.lease_id);
    const bound = parseManagedName(lease.username)!.reapAfter.getTime();
    expect(bound).toBeGreaterThanOrEqual(record.maxExpiresAt + REAP_GRACE_MS);
    expect(bound).toBeLessThan(record.maxExpiresAt + REAP_GRACE_MS + SECOND);
  });

  test('a TTL over the max TTL or over 24 h is refused before anything is recorded or connected', async () => {
    await expect(h.issue('db:pg:app', 3601)).rejects.toMatchObject({ code: 'ttl_too_long', message: expect.stringContaining("maxTtl of 3600") });
    await expect(h.issue('db:pg:app', 86401)).rejects.toMatchObject({ code: 'ttl_too_long', message: expect.stringContaining('24 hours') });
    expect(await everyLease()).toEqual([]);
    expect(h.servers.calls).toEqual([]);
    expect(h.audit()).toEqual([]);
  });

  test('only a dynamic secret issues leases', async () => {
    await expect(h.issue('db:pg:root')).rejects.toMatchObject({ code: 'not_dynamic' });
    expect(await everyLease()).toEqual([]);
  });
});

describe('issueLease: when the server fails', () => {
  test('an unreachable server: no user can exist, so the intent ends revoked at once with the reason', async () => {
    h.pg.unreachable = true;
    await expect(h.issue('db:pg:app')).rejects.toMatchObject({ code: 'target_unreachable' });
    const [lease] = await everyLease();
    expect(lease).toMatchObject({ state: 'revoked', endedAt: h.clock.peek(), lastError: expect.stringContaining('connection refused') });
    expect(h.pg.users.size).toBe(0);
    expect(h.audit().map((e) => [e.action, e.outcome])).toEqual([['lease.create', 'failure']]);
    expect(h.audit()[0].error).toMatch(/connection refused/);
  });

  test('a create that fails and cleans up after itself: the drop is confirmed and the lease ends revoked', async () => {
    h.pg.failCreate();
    await expect(h.issue('db:pg:app')).rejects.toMatchObject({ code: 'target_failed' });
    const [lease] = await everyLease();
    expect(lease.state).toBe('revoked');
    expect(h.servers.callsOf('revoke').map((c) => c.usernames)).toEqual([[lease.username]]);
    expect(h.servers.open).toBe(0);
  });

  test('a create that leaves a user the server will not drop: the lease waits as failed for the sweep, due at once', async () => {
    h.pg.createLeavesUser = true;
    h.pg.failCreate();
    await expect(h.issue('db:pg:app')).rejects.toMatchObject({ code: 'target_failed' });
    const [lease] = await everyLease();
    expect(lease).toMatchObject({ state: 'failed', attempts: 1, nextAttemptAt: h.clock.peek(), lastError: expect.stringContaining('permission denied') });
    expect(h.pg.has(lease.username)).toBe(true);

    // Once the server lets it go, the next sweep drops it.
    h.pg.undroppable.clear();
    const report = await sweep(h.deps);
    expect(report).toMatchObject({ revoked: 1, failed: 0 });
    expect((await h.lease(lease.id)).state).toBe('revoked');
    expect(h.pg.has(lease.username)).toBe(false);
  });

  test('an intent swept as abandoned while its create was in flight is not made active', async () => {
    const release = h.pg.holdCreates();
    const issuing = h.issue('db:pg:app');
    issuing.catch(() => undefined);
    while ((await everyLease()).length === 0) await new Promise((r) => setImmediate(r));
    h.clock.advance(STALE_INTENT_MS + SECOND);
    const other = await h.otherProcess();
    expect(await sweep(other.deps)).toMatchObject({ revoked: 1 });
    release();
    await expect(issuing).rejects.toMatchObject({ code: 'lease_swept' });
    const [lease] = await everyLease();
    expect(lease.state).toBe('revoked');
    expect(h.audit().map((e) => [e.action, e.outcome])).toEqual([
      ['sweep.revoke', 'success'],
      ['lease.create', 'failure'],
    ]);
  });
});

describe('issueLease: the server’s clock', () => {
  test('a lease’s times and the bound in its name follow the server when the clocks are less than a minute apart', async () => {
    h.pg.skewMs = 50 * SECOND;
    const lease = await h.issue('db:pg:app', 600);
    const record = await h.lease(lease.lease_id);
    const serverNow = h.clock.peek() + 50 * SECOND;
    expect(record.createdAt).toBe(serverNow);
    expect(record.expiresAt).toBe(serverNow + 600 * SECOND);
    expect(h.pg.users.get(lease.username)?.validUntil).toEqual(new Date(serverNow + 600 * SECOND));
    expect(parseManagedName(lease.username)!.reapAfter.getTime()).toBeGreaterThanOrEqual(record.maxExpiresAt + REAP_GRACE_MS);
  });

  test.each([
    ['ahead of', -(2 * MINUTE)],
    ['behind', 2 * MINUTE],
    ['years ahead of', -(3 * 365 * 24 * 60 * MINUTE)],
  ])('this machine’s clock more than a minute %s the server’s: refused naming both times, no user, nothing left active', async (_how, skew) => {
    h.pg.skewMs = skew;
    const error = await h.issue('db:pg:app').then(() => undefined, (e: unknown) => e);
    expect(error).toMatchObject({ code: 'clock_skew', kind: 'failed' });
    const message = (error as Error).message;
    const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
    expect(message).toContain(iso(h.clock.peek()));
    expect(message).toContain(iso(h.clock.peek() + skew));
    expect(h.servers.callsOf('create')).toEqual([]);
    expect(h.pg.users.size).toBe(0);
    expect((await everyLease()).map((l) => l.state)).toEqual(['revoked']);
    expect(h.servers.open).toBe(0);
    expect(h.audit().map((e) => [e.action, e.outcome])).toEqual([['lease.create', 'failure']]);
  });
});

describe('issueLease interrupted (Ctrl-C): nothing is left for the sweep to retry', () => {
  const settle = () => new Promise((r) => setImmediate(r));

  test('before anything: no intent is written', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(h.issue('db:pg:app', undefined, controller.signal)).rejects.toMatchObject({ code: 'interrupted', exitCode: 130 });
    expect(await everyLease()).toEqual([]);
    expect(h.servers.callsOf('connect')).toEqual([]);
  });

  test('while connecting to a server that does not answer: nothing is recorded, no user can exist', async () => {
    h.pg.hanging = true;
    const controller = new AbortController();
    const issuing = h.issue('db:pg:app', undefined, controller.signal);
    while (h.servers.callsOf('connect').length === 0) await settle();
    controller.abort();
    await expect(issuing).rejects.toMatchObject({ code: 'interrupted' });
    // The server's clock is read before the intent: interrupted while connecting, nothing was recorded.
    expect(await everyLease()).toEqual([]);
    expect(h.servers.callsOf('create')).toEqual([]);
    // The next sweep has nothing to do, and warns about nothing.
    h.pg.hanging = false;
    h.clock.advance(STALE_INTENT_MS + SECOND);
    expect(await sweep(h.deps)).toMatchObject({ revoked: 0, failed: 0, errors: [] });
  });

  test('while the user is being created: the create finishes, then the user is dropped and the lease ends', async () => {
    const release = h.pg.holdCreates();
    const controller = new AbortController();
    const issuing = h.issue('db:pg:app', undefined, controller.signal);
    // The intent is recorded, then the create waits at the server's gate.
    while ((await everyLease()).length === 0) await settle();
    for (let i = 0; i < 5; i++) await settle();
    controller.abort();
    release();
    await expect(issuing).rejects.toMatchObject({ code: 'interrupted' });
    const [lease] = await everyLease();
    expect(lease.state).toBe('revoked');
    expect(h.servers.callsOf('create')).toHaveLength(1);
    expect(h.pg.has(lease.username)).toBe(false);
    expect(h.servers.open).toBe(0);
  });
});
