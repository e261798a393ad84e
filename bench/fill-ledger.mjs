#!/usr/bin/env node
// Fills a sy store with fake leases (and, optionally, static secrets) fast, through sy's own
// store layer (tsc output in dist/, built by `npm run build` alongside the bundle).
//
//   SY_HOME=... (or SY_STORE=postgresql://...) SY_MASTER_KEY=... node bench/fill-ledger.mjs --leases N [--active-every K] [--secrets M]
//
// Leases point at a fake base id and at user names that exist on no server. Every K-th
// lease (default: every one) is left `active` with an expiry far in the future, so no sweep
// touches it; the others are `revoked`. Each recordIntent/transition is its own
// transaction with an fsync, so on SQLite they are grouped by the thousand into one
// transaction (bench/store.mjs); on PostgreSQL they run on several handles at once.
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    leases: { type: 'string', default: '0' },
    'active-every': { type: 'string', default: '1' },
    secrets: { type: 'string', default: '0' },
    batch: { type: 'string', default: '1000' },
  },
});
const leases = Number(values.leases);
const activeEvery = Number(values['active-every']);
const secrets = Number(values.secrets);
const batch = Number(values.batch);
if (!(process.env.SY_HOME || process.env.SY_STORE) || !process.env.SY_MASTER_KEY) throw new Error('set SY_HOME or SY_STORE, and SY_MASTER_KEY');

const { openBenchStore, inBatch } = await import(new URL('./store.mjs', import.meta.url).href);
const handles = Number(process.env.BENCH_HANDLES ?? 4);
const store = await openBenchStore();
const stores = store.kind === 'sqlite' ? [store] : [store, ...(await Promise.all(Array.from({ length: handles - 1 }, () => openBenchStore())))];
const started = Date.now();

try {
  for (let done = 0; done < secrets; done += batch) {
    await inBatch(stores, Array.from({ length: Math.min(batch, secrets - done) }, (_, i) => (s) =>
      s.secrets.create({
        path: `bench:static:s${String(done + i).padStart(6, '0')}`,
        kind: 'static',
        description: 'bench filler',
        attributes: { owner: 'bench' },
        data: { username: `user${done + i}`, password: randomUUID() },
      })));
  }

  const fakeBase = randomUUID();
  const fakeSecret = randomUUID();
  const now = Date.now();
  const far = now + 10 * 365 * 86400_000;
  for (let done = 0; done < leases; done += batch) {
    await inBatch(stores, Array.from({ length: Math.min(batch, leases - done) }, (_, i) => async (s) => {
      const n = done + i;
      const id = randomUUID();
      const active = n % activeEvery === 0;
      const recorded = s.leases.recordIntent({
        id,
        secretId: fakeSecret,
        baseId: fakeBase,
        path: 'bench:fake:dyn',
        pool: 'default',
        engine: 'postgresql',
        target: '192.0.2.1:5432/nowhere',
        // Not sy's name marker (no `_sy<bound>`), so no reaper ever takes these for its own.
        username: `benchfake_${n.toString(36).padStart(8, '0')}`,
        createdAt: now - (leases - n) * 1000,
        expiresAt: far,
        maxExpiresAt: far,
        ownerPid: process.pid,
        ownerHost: 'bench-filler',
        revocation: { connection: { engine: 'postgresql', host: '192.0.2.1', port: 5432, username: 'nobody', password: 'x', database: 'nowhere' } },
      });
      // On SQLite both calls run now, inside the batch's transaction; on PostgreSQL one after the other.
      const moved = s.kind === 'sqlite' ? s.leases.transition(id, ['intent'], active ? 'active' : 'revoked', active ? {} : { endedAt: now }) : undefined;
      await recorded;
      await (moved ?? s.leases.transition(id, ['intent'], active ? 'active' : 'revoked', active ? {} : { endedAt: now }));
    }));
  }
} finally {
  for (const s of stores) await s.close();
}
process.stdout.write(`${JSON.stringify({ secrets, leases, ms: Date.now() - started })}\n`);
