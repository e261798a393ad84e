/**
 * Revocation isolation, end to end through the built bin/sy: a real `sy daemon` over leases
 * on the machine's PostgreSQL and MariaDB, and leases whose target accepts TCP and never
 * answers (a forwarder made silent once they exist, test/helpers/proxy.ts). The promise of
 * PRODUCT.md holds for every healthy lease while the dead targets hang: its revocation ends
 * within 2 s of its expiry, read from the ledger (ended_at - expires_at, both written by sy,
 * so a slow test process measures nothing), and its user is gone. The dead targets' leases
 * stay `failed` with the reason. Run on the SQLite store and on the shared PostgreSQL store.
 */
import { makeHome, type SyHome } from '../helpers/cli.js';
import { myAdminQuery, tag } from '../helpers/db.js';
import { createStoreDatabase, type StoreDatabase } from '../helpers/pg-store.js';
import { startProxy, type Proxy } from '../helpers/proxy.js';
import {
  createLease,
  createSecrets,
  type Daemon,
  dropMyPrefix,
  dropPgPrefix,
  type IssuedLease,
  ledger,
  myExists,
  pgExists,
  sleep,
  startDaemon,
  waitFor,
} from '../helpers/revocation.js';

const T = tag(4);
const PREFIX = `is${T}_`;
const MY_DB = `sy_is_${T}`;
/** The promise of PRODUCT.md: each lease of a pool with a live daemon is revoked within 2 s of its expiry. */
const PROMISE_MS = 2000;

const proxies: Proxy[] = [];
const daemons: Daemon[] = [];
const homes: SyHome[] = [];
const storeDbs: StoreDatabase[] = [];

interface LedgerRow {
  id: string;
  state: string;
  expires_at: number;
  ended_at: number | null;
  last_error: string | null;
}

/** Reads the leases' rows (plain columns) from whichever store the home uses. */
type LedgerReader = (ids: string[]) => Promise<LedgerRow[]>;

beforeAll(async () => {
  await myAdminQuery(`CREATE DATABASE IF NOT EXISTS \`${MY_DB}\``);
  await myAdminQuery(`CREATE TABLE IF NOT EXISTS \`${MY_DB}\`.t (id INT)`);
});

afterAll(async () => {
  for (const d of daemons) if (d.child.exitCode === null && d.child.signalCode === null) await d.stop('SIGKILL');
  for (const p of proxies) await p.close();
  await dropPgPrefix(PREFIX);
  await dropMyPrefix(PREFIX);
  await myAdminQuery(`DROP DATABASE IF EXISTS \`${MY_DB}\``);
  for (const sy of homes) sy.cleanup();
  for (const db of storeDbs) await db.drop();
});

const stores: [string, () => Promise<{ sy: SyHome; read: LedgerReader }>][] = [
  [
    'the SQLite store',
    async () => {
      const sy = await makeHome();
      homes.push(sy);
      const read: LedgerReader = (ids) =>
        ledger(sy, (db) => db.prepare(`SELECT id, state, expires_at, ended_at, last_error FROM leases WHERE id IN (${ids.map(() => '?').join(', ')})`).all(...ids) as LedgerRow[]);
      return { sy, read };
    },
  ],
  [
    'the shared PostgreSQL store',
    async () => {
      const db = await createStoreDatabase();
      storeDbs.push(db);
      const sy = await makeHome({ env: { SY_STORE: db.url } });
      homes.push(sy);
      const read: LedgerReader = async (ids) =>
        (await db.query('SELECT id, state, expires_at, ended_at, last_error FROM sy.leases WHERE id = ANY($1::text[])', [ids])).map((r) => ({
          ...r,
          expires_at: Number(r.expires_at),
          ended_at: r.ended_at === null ? null : Number(r.ended_at),
        }));
      return { sy, read };
    },
  ],
];

describe.each(stores)('a daemon on %s, while two targets hang', (_name, open) => {
  test('every healthy lease is revoked within 2 s of its expiry; the hanging targets\' leases stay failed with the reason', async () => {
    const { sy, read } = await open();
    const s = String(homes.length);
    const healthy = await createSecrets(sy, { pgPrefix: PREFIX, myPrefix: PREFIX, myDatabase: MY_DB, suffix: `ok${s}` });
    const pgDead = await startProxy(5432);
    const myDead = await startProxy(3306);
    proxies.push(pgDead, myDead);
    const dead = await createSecrets(sy, { pgPrefix: PREFIX, myPrefix: PREFIX, myDatabase: MY_DB, suffix: `dead${s}`, pgPort: pgDead.port, myPort: myDead.port });

    const d = startDaemon(sy, ['--interval', '60s']);
    daemons.push(d);
    await d.waitForEvent((e) => e.event === 'start');
    // Its first pass (sweep and reaper) is over: it sleeps with nothing due.
    await sleep(1500);

    // Leases on the two targets that will hang, expiring first...
    const deadLeases = await Promise.all([createLease(sy, dead.pgDyn, 1), createLease(sy, dead.myDyn, 1)]);
    // ...which then accept connections and never send a byte.
    await pgDead.silent();
    await myDead.silent();
    // Healthy leases expiring one after the other while the daemon's attempt on the dead
    // targets waits (a connect timeout of 10 s, then a retry 5 s later).
    const healthyLeases: IssuedLease[] = [];
    for (let ttl = 2; ttl <= 9; ttl += 1) {
      healthyLeases.push(...(await Promise.all([createLease(sy, healthy.pgDyn, ttl), createLease(sy, healthy.myDyn, ttl)])));
    }
    const healthyIds = healthyLeases.map((l) => l.lease_id);
    const deadIds = deadLeases.map((l) => l.lease_id);

    // Every healthy lease ends (whatever the delay: the ledger says how late).
    await waitFor('the healthy leases to end', async () => (await read(healthyIds)).every((r) => r.ended_at !== null), 60_000, 250);
    // The dead targets' attempt has failed by now or will: each lease then waits for its retry as `failed`.
    const deadRows = await waitFor('the dead targets\' leases to be failed', async () => {
      const rows = await read(deadIds);
      return rows.every((r) => r.state === 'failed') ? rows : undefined;
    }, 40_000, 100);

    const rows = await read(healthyIds);
    const lateness = rows.map((r) => ({ id: r.id, state: r.state, late: r.ended_at! - r.expires_at }));
    // Revoked, not before the expiry, and within the promise: none of them waited for the hanging targets.
    expect(lateness.filter((r) => r.state !== 'revoked' || r.late < 0 || r.late > PROMISE_MS)).toEqual([]);
    for (const lease of healthyLeases) {
      const gone = lease.connection_string.startsWith('postgres') ? !(await pgExists(lease.username)) : !(await myExists(lease.username));
      expect({ user: lease.username, gone }).toEqual({ user: lease.username, gone: true });
    }

    // The dead targets' leases: failed, with the reason, their users still there (nothing reached them).
    for (const row of deadRows!) expect(row.last_error).toMatch(/127\.0\.0\.1:\d+.*(no answer|did not finish)/i);
    expect(await pgExists(deadLeases[0].username)).toBe(true);
    expect(await myExists(deadLeases[1].username)).toBe(true);
    expect(d.events.filter((e) => e.event === 'revoke_failed').map((e) => e.lease_id)).toEqual(expect.arrayContaining(deadIds));
    expect(d.events.filter((e) => e.event === 'revoked').map((e) => e.lease_id).sort()).toEqual([...healthyIds].sort());

    const stopped = await d.stop('SIGTERM');
    expect({ code: stopped.code, stderr: d.stderr() }).toEqual({ code: 0, stderr: '' });
    console.log(`healthy leases' delays after expiry (ms): ${lateness.map((r) => r.late).sort((a, b) => a - b).join(' ')}`);
  }, 120_000);
});
