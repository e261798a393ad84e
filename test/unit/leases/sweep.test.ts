/**
 * The sweep: what is due (expired active leases, failed ones past their backoff, claims
 * of dead claimants, intents of dead processes) is claimed in batches and revoked, within
 * a budget when one is given.
 */
import { CLAIM_MS, STALE_INTENT_MS } from '../../../src/leases/deps.js';
import { sweep } from '../../../src/leases/sweep.js';
import { MINUTE, SECOND } from '../../helpers/fake-clock.js';
import { deadPid, type LeaseHarness, leaseHarness } from '../../helpers/lease-harness.js';

let h: LeaseHarness;

beforeEach(async () => {
  h = await leaseHarness();
  await h.dynamic('db:pg:app');
});

afterEach(() => h.cleanup());

describe('due leases', () => {
  test('only the expired ones are claimed and revoked; the others and their users stay', async () => {
    const short1 = await h.issue('db:pg:app', 60);
    const short2 = await h.issue('db:pg:app', 120);
    const long = await h.issue('db:pg:app', 600);
    h.clock.advance(120 * SECOND);
    const report = await sweep(h.deps);
    expect(report).toEqual({ revoked: 2, failed: 0, irrevocable: 0, remaining: false, errors: [] });
    expect((await h.lease(short1.lease_id)).state).toBe('revoked');
    expect((await h.lease(short2.lease_id)).state).toBe('revoked');
    expect((await h.lease(long.lease_id)).state).toBe('active');
    expect([short1, short2, long].map((l) => h.pg.has(l.username))).toEqual([false, false, true]);
    expect(h.audit().filter((e) => e.action === 'sweep.revoke').map((e) => e.lease_id).sort()).toEqual([short1.lease_id, short2.lease_id].sort());
  });

  test('nothing due: no claim, no connection', async () => {
    await h.issue('db:pg:app', 60);
    h.clock.advance(59 * SECOND);
    expect(await sweep(h.deps)).toMatchObject({ revoked: 0, failed: 0, remaining: false });
    expect(h.servers.callsOf('connect')).toHaveLength(1); // the issue's
  });

  test('in batches of batchSize, one connection and one revocation each', async () => {
    const leases = [];
    for (let i = 0; i < 5; i++) leases.push(await h.issue('db:pg:app', 60));
    h.clock.advance(MINUTE);
    expect(await sweep(h.deps, { batchSize: 2 })).toMatchObject({ revoked: 5, failed: 0, remaining: false });
    expect(h.servers.callsOf('revoke').map((c) => c.usernames.length)).toEqual([2, 2, 1]);
    expect(h.pg.users.size).toBe(0);
  });

  test('a budget spent stops the claims; what it claimed and could not finish fails over budget, and it says that more is due', async () => {
    for (let i = 0; i < 5; i++) await h.issue('db:pg:app', 60);
    h.clock.advance(MINUTE);
    // The first batch takes the whole budget; the second was claimed meanwhile, behind it on the same target.
    h.pg.beforeRevoke = () => h.clock.advance(2 * SECOND);
    const report = await sweep(h.deps, { batchSize: 2, budgetMs: 1500 });
    expect(report).toMatchObject({ revoked: 2, failed: 2, remaining: true });
    expect(report.errors.map((e) => e.error)).toEqual([expect.stringMatching(/did not finish within this command's budget/), expect.stringMatching(/did not finish within this command's budget/)]);
    expect(h.servers.callsOf('revoke')).toHaveLength(1);
    expect(h.pg.users.size).toBe(3);
    expect(await h.store.leases.countByState()).toMatchObject({ revoked: 2, failed: 2, active: 1 });
  });

  test('a server that does not answer within the budget: the sweep returns, the lease fails and is retried later', async () => {
    const { lease_id } = await h.issue('db:pg:app', 60);
    h.clock.advance(MINUTE);
    h.pg.hanging = true;
    const started = Date.now();
    const report = await sweep(h.deps, { budgetMs: 300 });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(report).toMatchObject({ revoked: 0, failed: 1 });
    expect(report.errors[0].error).toMatch(/did not finish within this command's budget/);
    expect(await h.lease(lease_id)).toMatchObject({ state: 'failed', attempts: 1 });
  });

  test('a server that fails everything is tried once: the leases claimed for it later share the failure', async () => {
    const a = await h.issue('db:pg:app', 60);
    const b = await h.issue('db:pg:app', 60);
    h.clock.advance(MINUTE);
    h.pg.unreachable = true;
    const report = await sweep(h.deps, { batchSize: 1 });
    expect(report).toMatchObject({ revoked: 0, failed: 2 });
    expect(report.errors).toEqual([a, b].map(() => ({ lease_id: expect.any(String), target: 'db.sy.invalid:5432/postgres', error: expect.stringMatching(/connection refused/) })));
    // The two issues' connections and one attempt.
    expect(h.servers.callsOf('connect').filter((c) => c.server === 'db.sy.invalid:5432')).toHaveLength(3);
    expect([(await h.lease(a.lease_id)).state, (await h.lease(b.lease_id)).state]).toEqual(['failed', 'failed']);
    // Each waits for its backoff: an immediate sweep claims neither.
    expect(await sweep(h.deps)).toMatchObject({ revoked: 0, failed: 0 });
  });

  test('a pool sweeps only its own leases', async () => {
    await h.dynamic('db:pg:other', { pool: 'other' });
    const mine = await h.issue('db:pg:other', 60);
    const theirs = await h.issue('db:pg:app', 60);
    h.clock.advance(MINUTE);
    expect(await sweep(h.deps, { pool: 'other' })).toMatchObject({ revoked: 1 });
    expect((await h.lease(mine.lease_id)).state).toBe('revoked');
    expect((await h.lease(theirs.lease_id)).state).toBe('active');
  });

  test('asked to stop, it claims no more, finishes what it claimed and reports what is left', async () => {
    for (let i = 0; i < 3; i++) await h.issue('db:pg:app', 60);
    h.clock.advance(MINUTE);
    let outcomes = 0;
    const report = await sweep(h.deps, { batchSize: 1, shouldStop: () => outcomes > 0, onOutcome: () => outcomes++ });
    // The first batch, and the second claimed behind it while it ran.
    expect(report).toMatchObject({ revoked: 2, remaining: true });
    expect(await h.store.leases.countByState()).toMatchObject({ revoked: 2, active: 1 });
  });
});

describe('intents that never completed', () => {
  test('an intent whose process is gone is swept at once; its user, if made, is dropped', async () => {
    const intent = await h.intent('db:pg:app', { ownerPid: deadPid(), userOnServer: true });
    expect(intent.state).toBe('intent');
    expect(await sweep(h.deps)).toMatchObject({ revoked: 1 });
    expect((await h.lease(intent.id)).state).toBe('revoked');
    expect(h.pg.has(intent.username)).toBe(false);
  });

  test('an intent whose user was never made is revoked all the same (the user is absent)', async () => {
    const intent = await h.intent('db:pg:app', { ownerPid: deadPid() });
    expect(await sweep(h.deps)).toMatchObject({ revoked: 1 });
    expect((await h.lease(intent.id)).state).toBe('revoked');
  });

  test('an intent of a live process is left alone until it is stale', async () => {
    const intent = await h.intent('db:pg:app', { ownerPid: process.pid, userOnServer: true });
    h.clock.advance(STALE_INTENT_MS - SECOND);
    expect(await sweep(h.deps)).toMatchObject({ revoked: 0 });
    expect((await h.lease(intent.id)).state).toBe('intent');
    h.clock.advance(SECOND);
    expect(await sweep(h.deps)).toMatchObject({ revoked: 1 });
    expect(h.pg.has(intent.username)).toBe(false);
  });

  test('an intent from another host cannot be checked by pid: it waits until it is stale', async () => {
    const intent = await h.intent('db:pg:app', { ownerPid: deadPid(), ownerHost: 'another-host.invalid' });
    expect(await sweep(h.deps)).toMatchObject({ revoked: 0 });
    h.clock.advance(STALE_INTENT_MS);
    expect(await sweep(h.deps)).toMatchObject({ revoked: 1 });
    expect((await h.lease(intent.id)).state).toBe('revoked');
  });
});

describe('claims of dead claimants', () => {
  test('a claim left by a process that died is taken over once it has expired', async () => {
    const { lease_id, username } = await h.issue('db:pg:app', 60);
    h.clock.advance(MINUTE);
    const dead = await h.otherProcess();
    const [claimed] = await dead.store.leases.claimDue({ now: h.clock.peek(), limit: 10, staleIntentBefore: 0, claimMs: CLAIM_MS }, dead.deps.claimant);
    expect(claimed).toMatchObject({ id: lease_id, state: 'revoking' });
    // The claim is live: nobody else touches the lease.
    h.clock.advance(CLAIM_MS - 1);
    expect(await sweep(h.deps)).toMatchObject({ revoked: 0, failed: 0 });
    expect(h.pg.has(username)).toBe(true);
    h.clock.advance(1);
    expect(await sweep(h.deps)).toMatchObject({ revoked: 1 });
    expect(h.pg.has(username)).toBe(false);
    // The dead claimant's late settlement changes nothing.
    expect(await dead.store.leases.settleAll(dead.deps.claimant, [{ id: lease_id, to: 'failed', changes: { attempts: 1 } }])).toEqual([undefined]);
    expect((await h.lease(lease_id)).state).toBe('revoked');
  });
});
