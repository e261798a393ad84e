// The rows of the shared store and the pool of daemons (rows 9-11 of bench/run.mjs):
// `lease create` with the PostgreSQL store against the same with SQLite; three daemons over
// leases expiring within a minute (delays after expiry, duplicates, revocations/s of the pool
// against one daemon alone); a daemon's RSS with many active leases in the shared store.
//
// Each scenario gets a store database of its own (`sybench_store_<tag>_<n>`) on the
// benchmark's PostgreSQL, made with `sy init` and dropped at the end with the run's other
// leftovers. Leases come from bench/issue-leases.mjs (sy's ledger and statements, users made a
// hundred per transaction), revocations from real `sy daemon` processes; every delay is read
// back from the store's audit log (the time of each revocation's line) against the ledger's
// expiry to the millisecond.
import { spawn } from 'node:child_process';
import { join } from 'node:path';

/** Registers the rows; `ctx` carries run.mjs's helpers and settings. */
export function fleetRows(ctx) {
  const { group, label, CFG, PG, DB, PREFIX, MASTER_KEY, ROOT, NODE, SY, childEnv, sy, run, interleave, measureOpts, ratioRow, median, quantile, fmtMs, sleep, log, n, pgQuery, onCleanup, daemons, daemonPeak, newStore } = ctx;
  const ISSUER = join(ROOT, 'bench', 'issue-leases.mjs');
  const FILLER = join(ROOT, 'bench', 'fill-ledger.mjs');
  const POOL = 'benchpool';
  /**
   * PostgreSQL keeps a table's grants in its pg_class row, which cannot be moved out of line
   * (no TOAST): about a thousand roles granted on one table and the next GRANT fails ("row is
   * too big"). The fleet's leases take ten recipes in turn, one table each.
   */
  const FLEET_TABLES = Array.from({ length: 10 }, (_, i) => `fleet_${i + 1}`);
  let stores = 0;

  /** A fresh PostgreSQL store with the benchmark's PostgreSQL target, in pool POOL. */
  async function newSharedStore(name) {
    const database = `sybench_store_${PREFIX.slice(2, -1)}_${++stores}`;
    await pgQuery(`CREATE DATABASE ${database}`);
    onCleanup(() => pgQuery(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`));
    const url = `postgresql://${encodeURIComponent(PG.user)}${PG.password ? `:${encodeURIComponent(PG.password)}` : ''}@${PG.host}:${PG.port}/${database}?sslmode=disable`;
    const env = childEnv({ SY_STORE: url, SY_MASTER_KEY: MASTER_KEY, SY_CLIENT_ID: `bench-${name}`, SY_NO_SWEEP: '1' });
    delete env.SY_HOME;
    sy(['init'], env);
    const create = (body) => sy(['secret', 'create', '--body', '-'], env, { input: JSON.stringify(body) });
    create({ path: 'bench:pg:root', attributes: { type: 'postgresql' }, data: { host: PG.host, port: PG.port, username: PG.user, password: PG.password, database: DB } });
    create({
      path: 'bench:pg:dyn',
      attributes: { linkConfig: { linkType: 'dynamic', linkedSecret: 'bench:pg:root' }, grantPermissions: { what: 'SELECT', where: 'public.items' }, ttl: 600, userPrefix: PREFIX, pool: POOL },
      data: {},
    });
    // Thousands of leases at once: a recipe per table, so no table's grants outgrow its catalog row.
    for (const table of FLEET_TABLES) {
      await pgQuery(`CREATE TABLE IF NOT EXISTS public.${table} (id int)`, [], DB);
      create({
        path: `bench:pg:${table}`,
        attributes: { linkConfig: { linkType: 'dynamic', linkedSecret: 'bench:pg:root' }, grantPermissions: { what: 'SELECT', where: `public.${table}` }, ttl: 600, userPrefix: PREFIX, pool: POOL },
        data: {},
      });
    }
    return { database, url, env };
  }

  /** `sy daemon --pool POOL` processes; resolves once each has logged its start. */
  async function startDaemons(store, count) {
    const started = [];
    for (let i = 0; i < count; i++) {
      const child = spawn(NODE, [SY, 'daemon', '--pool', POOL], { env: { ...store.env, SY_CLIENT_ID: `bench-daemon-${i + 1}` }, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      daemons.add(child);
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (err += d));
      started.push({ child, out: () => out, err: () => err, exited: new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal }))) });
    }
    const deadline = Date.now() + 30_000;
    while (started.some((d) => !d.out().includes('"event":"start"'))) {
      if (Date.now() > deadline || started.some((d) => d.child.exitCode !== null)) throw new Error(`a daemon did not start: ${started.map((d) => d.err()).join(' ').slice(0, 300)}`);
      await sleep(100);
    }
    return started;
  }

  async function stopDaemons(started) {
    for (const d of started) d.child.kill('SIGTERM');
    const results = await Promise.all(started.map(async (d) => {
      const timer = setTimeout(() => d.child.kill('SIGKILL'), 20_000);
      const result = await d.exited;
      clearTimeout(timer);
      daemons.delete(d.child);
      return result;
    }));
    return results.filter((r) => r.code !== 0).length;
  }

  /** Issues `count` leases on the store, expiring from `ttl` s after issuing on, evenly over `spread` s. */
  function issue(store, count, ttl, spread) {
    const issued = run(NODE, [ISSUER, ...FLEET_TABLES.flatMap((table) => ['--path', `bench:pg:${table}`]), '--count', String(count), '--ttl', String(ttl), '--spread', String(spread), '--ids', '--after-issue'], { env: store.env });
    if (issued.status !== 0) throw new Error(`issuing leases: ${issued.stderr.trim().slice(0, 300)}`);
    return JSON.parse(issued.stdout);
  }

  /** Each lease's successful revocation lines (their times), from the store's audit log. */
  function revocations(store) {
    const listed = sy(['audit', 'list', '--format', 'json'], store.env);
    const byLease = new Map();
    for (const entry of JSON.parse(listed.stdout).data) {
      if (entry.outcome !== 'success' || !/(^|\.)revoke$/.test(entry.action)) continue;
      byLease.set(entry.lease_id, [...(byLease.get(entry.lease_id) ?? []), Date.parse(entry.time)]);
    }
    return byLease;
  }

  /** Waits until the store has no live lease left (or `timeoutMs`). */
  async function drained(store, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const [{ n: live }] = await pgQuery("SELECT count(*)::int AS n FROM sy.leases WHERE state NOT IN ('revoked', 'forgotten')", [], store.database);
      if (live === 0) return true;
      if (Date.now() > deadline) return false;
      await sleep(250);
    }
  }

  // ------------------------------------------------------------------ 9: create on each store

  label('9', '`sy dynamic lease create` (PostgreSQL target) with the PostgreSQL store, vs with the SQLite store', '<= 1.25x');
  group(9, ['9'], async () => {
    const shared = await newSharedStore('create');
    const local = newStore('create-sqlite', { pgTarget: true });
    const create = ['dynamic', 'lease', 'create', '--path', 'bench:pg:dyn'];
    const ok = (r) => {
      const lease = JSON.parse(r.stdout);
      if (!lease.username?.startsWith(PREFIX)) throw new Error(`unexpected lease output: ${r.stdout.slice(0, 200)}`);
    };
    const r = await interleave(
      [
        { name: 'sqlite', command: NODE, args: [SY, ...create], env: local.env, settle: ok },
        { name: 'postgresql', command: NODE, args: [SY, ...create], env: shared.env, settle: ok },
      ],
      measureOpts(CFG.timedRuns),
    );
    return { 9: ratioRow(r, 'postgresql', 'sqlite', 'SQLite store', 1.25, { note: `store on ${PG.host}:${PG.port} (sslmode=disable, the same server as the target); no daemon runs, so each PostgreSQL create also reads the pool registry for its warning` }) };
  });

  // ------------------------------------------------------------------ 10: three daemons

  label('10a', '3 daemons over N leases expiring within one minute: p50 delay after expiry', '(report)');
  label('10b', '3 daemons over N leases expiring within one minute: p99 delay after expiry', '<= 2 s');
  label('10c', 'revocations/s of the pool of 3 vs one daemon alone, N leases due at once', '(report)');
  label('10d', 'duplicate revocations (10a-10c)', '0');
  group(10, ['10a', '10b', '10c', '10d'], async () => {
    const count = CFG.fleetLeases;
    // What went wrong in the spread run (10a, 10b) and in the bursts (10c); 10d is over all three.
    const problems = [];
    const burstProblems = [];
    let duplicates = 0;

    // Spread: expiries evenly over the spread, from a few seconds after they were all issued.
    const spreadStore = await newSharedStore('spread');
    const pool = await startDaemons(spreadStore, 3);
    const spread = issue(spreadStore, count, CFG.fleetTtl, CFG.fleetSpread);
    const firstExpiry = Math.min(...spread.leases.map(([, at]) => at));
    if (spread.activatedAt > firstExpiry) problems.push(`issuing took ${fmtMs(spread.ms)}, past the first expiry`);
    log(`  spread: ${n(count)} leases issued in ${fmtMs(spread.ms)}; expiring over ${CFG.fleetSpread} s`);
    await sleep(Math.max(0, spread.lastExpiry - Date.now()));
    if (!(await drained(spreadStore, 60_000))) problems.push('spread: leases still live a minute after the last expiry');
    const badExits = await stopDaemons(pool);
    if (badExits) problems.push(`${badExits} daemons exited with an error`);
    const spreadLines = revocations(spreadStore);
    const delays = [];
    for (const [id, at] of spread.leases) {
      const lines = spreadLines.get(id) ?? [];
      if (lines.length === 0) problems.push(`lease ${id} was never revoked`);
      if (lines.length > 1) duplicates++;
      if (lines.length) delays.push(lines[0] - at);
    }

    // Due at once: the time from the common expiry to the last revocation, three daemons and one.
    const burst = async (daemonCount) => {
      const problems = burstProblems;
      const store = await newSharedStore(`burst${daemonCount}`);
      const started = await startDaemons(store, daemonCount);
      const issued = issue(store, count, CFG.fleetBurstTtl, 0);
      if (issued.activatedAt > issued.lastExpiry) problems.push(`burst of ${daemonCount}: issuing took ${fmtMs(issued.ms)}, past the expiry`);
      await sleep(Math.max(0, issued.lastExpiry - Date.now()));
      if (!(await drained(store, 120_000))) problems.push(`burst of ${daemonCount}: leases still live two minutes after expiry`);
      const bad = await stopDaemons(started);
      if (bad) problems.push(`${bad} daemons exited with an error`);
      const lines = revocations(store);
      let last = 0;
      for (const [id] of issued.leases) {
        const times = lines.get(id) ?? [];
        if (times.length > 1) duplicates++;
        last = Math.max(last, ...times);
      }
      const rate = count / ((last - issued.lastExpiry) / 1000);
      log(`  burst with ${daemonCount} daemon(s): ${n(count)} revoked in ${fmtMs(last - issued.lastExpiry)} after expiry (${Math.round(rate)}/s)`);
      return rate;
    };
    const poolRate = await burst(3);
    const singleRate = await burst(1);

    const p50 = quantile(delays, 0.5);
    const p99 = quantile(delays, 0.99);
    const note = [`${n(count)} leases, expiring from ${CFG.fleetTtl} s after they were all issued (in ${fmtMs(spread.ms)}), evenly over ${CFG.fleetSpread} s; delay = time of the revocation's audit line - the ledger's expiry`, problems[0]].filter(Boolean).join('; ');
    const cell = (measured, met, extra = {}) => ({ measured, floor: '—', ratio: '—', runs: '1', met: met && problems.length === 0, note, ...extra });
    const burstNote = [`${n(count)} leases due at the same instant; rate = leases / (last revocation line - expiry)`, burstProblems[0]].filter(Boolean).join('; ');
    log(`  spread: p50 ${fmtMs(p50)}, p99 ${fmtMs(p99)}, max ${fmtMs(Math.max(...delays))}; ${duplicates} duplicates`);
    return {
      '10a': cell(fmtMs(p50), true),
      '10b': cell(`${fmtMs(p99)} (max ${fmtMs(Math.max(...delays))})`, p99 <= 2000),
      '10c': { ...cell(`${Math.round(poolRate)}/s`, true), met: burstProblems.length === 0, floor: `one daemon: ${Math.round(singleRate)}/s`, ratio: `${(poolRate / singleRate).toFixed(2)}x`, note: burstNote },
      '10d': { ...cell(String(duplicates), true), met: duplicates === 0, note: 'lease ids with more than one successful revocation line in the audit log, over 10a-10c' },
    };
  });

  // ------------------------------------------------------------------ 11: daemon memory

  label('11', 'peak RSS of `sy daemon` with N active leases in the shared store', '<= 150 MiB');
  group(11, ['11'], async () => {
    const store = await newSharedStore('rss');
    const filled = run(NODE, [FILLER, '--leases', String(CFG.daemonLeases), '--active-every', '1'], { env: store.env });
    if (filled.status !== 0) throw new Error(`fill-ledger: ${filled.stderr.trim().slice(0, 300)}`);
    log(`  filled ${n(CFG.daemonLeases)} leases in ${fmtMs(JSON.parse(filled.stdout).ms)}`);
    const peaks = [];
    const problems = [];
    for (let i = 0; i < CFG.daemonRuns; i++) {
      const peak = await daemonPeak(store);
      if (peak.error) problems.push(peak.error);
      else peaks.push(peak.kib);
      log(`  daemon ${i + 1}/${CFG.daemonRuns}: ${peak.error ?? `${(peak.kib / 1024).toFixed(1)} MiB`}`);
    }
    const mib = median(peaks) / 1024;
    return {
      11: {
        measured: `${mib.toFixed(1)} MiB`,
        floor: '—',
        ratio: '—',
        runs: String(peaks.length),
        met: mib <= 150 && problems.length === 0,
        note: [`${n(CFG.daemonLeases)} active leases in a PostgreSQL store; VmHWM after ${CFG.daemonSeconds} s (its first pass reads every live lease for the reaper), max ${(Math.max(...peaks) / 1024).toFixed(1)} MiB`, problems[0]].filter(Boolean).join('; '),
      },
    };
  });
}

/** What the fleet rows need besides run.mjs's own settings. */
export const FLEET_CFG = {
  // TTLs count from the end of issuing (bench/issue-leases.mjs --after-issue).
  quick: { fleetLeases: 200, fleetTtl: 2, fleetSpread: 5, fleetBurstTtl: 2 },
  full: { fleetLeases: 5000, fleetTtl: 5, fleetSpread: 60, fleetBurstTtl: 5 },
};
