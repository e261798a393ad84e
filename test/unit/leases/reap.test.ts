/**
 * The orphan reaper: on each server the base secrets name, it drops sy's users that no
 * live lease of this ledger holds and that are past their bound by the server's clock
 * (the bound in their name, or VALID UNTIL plus a grace), and nothing else.
 */
import { VALID_UNTIL_GRACE_MS } from '../../../src/leases/deps.js';
import { reapOrphans } from '../../../src/leases/reap.js';
import { newUserName } from '../../../src/targets/names.js';
import { HOUR, MINUTE, SECOND } from '../../helpers/fake-clock.js';
import { FAKE_HOST, type LeaseHarness, leaseHarness } from '../../helpers/lease-harness.js';

let h: LeaseHarness;

beforeEach(async () => {
  h = await leaseHarness();
  await h.dynamic('db:pg:app');
});

afterEach(() => h.cleanup());

/** A user another store made, whose name says it may be reaped after `reapAfter`. */
const orphan = (reapAfter: number, validUntil?: number): string => {
  const name = newUserName('postgresql', new Date(reapAfter));
  h.pg.addUser(name, validUntil === undefined ? undefined : new Date(validUntil));
  return name;
};

test('drops the users past the bound in their name, keeps those before it', async () => {
  const now = h.clock.peek();
  const past = orphan(now - SECOND);
  const future = orphan(now + HOUR);
  const report = await reapOrphans(h.deps);
  expect(report).toEqual({ reaped: 1, targets: 1, errors: [] });
  expect([h.pg.has(past), h.pg.has(future)]).toEqual([false, true]);
  expect(h.audit()).toEqual([
    expect.objectContaining({ action: 'reaper.drop', db_user: past, outcome: 'success', target: `${FAKE_HOST}:5432/postgres`, detail: { reap_after: expect.any(String) } }),
  ]);
  expect(h.servers.open).toBe(0);
});

test("decides by the server's clock, not this machine's", async () => {
  const name = orphan(h.clock.peek() + 10 * MINUTE);
  expect((await reapOrphans(h.deps)).reaped).toBe(0);
  h.pg.skewMs = 10 * MINUTE;
  expect((await reapOrphans(h.deps)).reaped).toBe(1);
  expect(h.pg.has(name)).toBe(false);
});

test('drops a user whose VALID UNTIL is past by the grace, though its name allows it longer', async () => {
  const now = h.clock.peek();
  const expired = orphan(now + 20 * HOUR, now - VALID_UNTIL_GRACE_MS);
  const withinGrace = orphan(now + 20 * HOUR, now - VALID_UNTIL_GRACE_MS + SECOND);
  const report = await reapOrphans(h.deps);
  expect(report.reaped).toBe(1);
  expect([h.pg.has(expired), h.pg.has(withinGrace)]).toEqual([false, true]);
  expect(h.audit()[0].detail).toEqual({ reap_after: expect.any(String), valid_until: new Date(now - VALID_UNTIL_GRACE_MS).toISOString() });
});

test('never drops the user of a live lease in this ledger, however far past its bounds', async () => {
  const lease = await h.issue('db:pg:app', 60);
  // Expired, past VALID UNTIL and past the name's bound, but not yet swept: still active here.
  h.clock.advance(2 * HOUR);
  expect((await h.lease(lease.lease_id)).state).toBe('active');
  const report = await reapOrphans(h.deps);
  expect(report.reaped).toBe(0);
  expect(h.pg.has(lease.username)).toBe(true);
  expect(h.servers.callsOf('revoke')).toEqual([]);
});

test('leaves users without sy\'s name marker alone', async () => {
  h.pg.addUser('app_owner', new Date(0));
  h.pg.addUser('sy_looks_like_it', new Date(0));
  expect((await reapOrphans(h.deps)).reaped).toBe(0);
  expect(h.pg.users.size).toBe(2);
});

test('lists each server once, however many base secrets name it, and each server apart', async () => {
  await h.base('db:pg:second-admin', { username: 'admin2' });
  await h.base('db:pg:other-db', { database: 'app' });
  await h.base('db:pg2:root', { port: 5433 });
  const report = await reapOrphans(h.deps);
  expect(report.targets).toBe(2);
  expect(h.servers.callsOf('list').map((c) => c.server).sort()).toEqual([`${FAKE_HOST}:5432`, `${FAKE_HOST}:5433`]);
});

test("when one admin cannot log in, the server's next admin does the work", async () => {
  await h.base('db:pg:second-admin', { username: 'admin2' });
  h.pg.admins.add('admin2');
  const name = orphan(h.clock.peek() - SECOND);
  const report = await reapOrphans(h.deps);
  expect(report).toEqual({ reaped: 1, targets: 1, errors: [] });
  expect(h.pg.has(name)).toBe(false);
  expect(h.servers.callsOf('connect').map((c) => c.admin)).toEqual(['postgres', 'admin2']);
});

test('an unreachable server is reported as such, and the other servers are still reaped', async () => {
  await h.base('db:pg2:root', { port: 5433 });
  const pg2 = h.servers.server(FAKE_HOST, 5433);
  const name = newUserName('postgresql', new Date(h.clock.peek() - SECOND));
  pg2.addUser(name);
  h.pg.unreachable = true;
  const report = await reapOrphans(h.deps);
  expect(report.reaped).toBe(1);
  expect(pg2.has(name)).toBe(false);
  expect(report.errors).toEqual([{ target: `${FAKE_HOST}:5432/postgres`, error: expect.stringMatching(/connection refused/), unreachable: true }]);
  expect(h.audit().map((e) => [e.action, e.outcome, e.target])).toEqual(
    expect.arrayContaining([
      ['reaper.drop', 'success', `${FAKE_HOST}:5433/postgres`],
      ['reaper.drop', 'failure', `${FAKE_HOST}:5432/postgres`],
    ]),
  );
});

test('a user that cannot be dropped is named, and does not keep the others', async () => {
  const stuck = orphan(h.clock.peek() - SECOND);
  const free = orphan(h.clock.peek() - SECOND);
  h.pg.keepAfterDrop(stuck, 'owns objects');
  const report = await reapOrphans(h.deps);
  expect(report.reaped).toBe(1);
  expect(h.pg.has(free)).toBe(false);
  expect(report.errors).toEqual([{ target: `${FAKE_HOST}:5432/postgres`, db_user: stuck, error: expect.stringContaining('owns objects'), unreachable: false }]);
});

test('a server that hangs past the budget is given up on, and named', async () => {
  h.pg.hanging = true;
  const started = Date.now();
  const report = await reapOrphans(h.deps, { budgetMs: 200 });
  expect(Date.now() - started).toBeLessThan(5_000);
  expect(report.errors).toEqual([{ target: `${FAKE_HOST}:5432/postgres`, error: expect.stringContaining("the reaper's budget ran out"), unreachable: true }]);
});
