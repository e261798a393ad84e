#!/usr/bin/env node
// sy's benchmark suite: `npm run bench` (full, writes BENCHMARKS.md) or
// `npm run bench -- --quick` (3 runs, small sizes, prints only).
//
// Every figure is the median of several runs taken after warm-up runs, with the commands it
// is compared to run interleaved (A B A B ...) in the same session, and is reported as a
// ratio to that floor. Wall times are process.hrtime.bigint() around each spawn. Targets
// are goals, not assertions: the exit status is 0 whether they are met or missed (it is 1
// only when a scenario could not run at all).
//
// Options: --quick, --runs N, --only 1,3,6 (rows by number; for development), --out FILE,
// --agent-seconds N (row 14's run: an hour by default, the span the agent's RSS is judged over).
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { apiRows } from './lease-api.mjs';
import { agentRows } from './agent.mjs';
import { FLEET_CFG, fleetRows } from './fleet.mjs';
import { ISOLATION_CFG, isolationRows } from './isolation.mjs';
import {
  NODE, ROOT, SY, childEnv, fmtMs, fmtRatio, interleave, markdownTable, median, pairedRatio, quantile, run, runAsync, sleep, sy,
} from './lib.mjs';

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    runs: { type: 'string' },
    only: { type: 'string' },
    out: { type: 'string' },
    'agent-seconds': { type: 'string' },
  },
});
const QUICK = opts.quick;
const CFG = QUICK
  ? { runs: 3, startupRuns: 3, timedRuns: 3, warmup: 1, secrets: 20, sweepLeases: 20, sweepRuns: 1, ledger: 200, ledgerSmall: 10, daemonLeases: 200, daemonRuns: 1, daemonSeconds: 3, concurrent: 16, concurrentRounds: 1 }
  : { runs: 11, startupRuns: 31, timedRuns: 21, warmup: 2, secrets: 1000, sweepLeases: 1000, sweepRuns: 10, ledger: 100_000, ledgerSmall: 10, daemonLeases: 10_000, daemonRuns: 10, daemonSeconds: 5, concurrent: 16, concurrentRounds: 10 };
Object.assign(CFG, QUICK ? FLEET_CFG.quick : FLEET_CFG.full, QUICK ? ISOLATION_CFG.quick : ISOLATION_CFG.full);
CFG.agentSeconds = opts['agent-seconds'] ? Number(opts['agent-seconds']) : QUICK ? 15 : 3600;
if (opts.runs) CFG.runs = CFG.startupRuns = CFG.timedRuns = Number(opts.runs);
const ONLY = opts.only ? new Set(opts.only.split(',').map((s) => s.trim())) : undefined;
const OUT = opts.out ?? (QUICK ? undefined : join(ROOT, 'BENCHMARKS.md'));
const FLOOR_PG = join(ROOT, 'bench', 'floor-pg.mjs');
const FLOOR_MY = join(ROOT, 'bench', 'floor-mysql.mjs');
const FLOOR_REVOKE = join(ROOT, 'bench', 'floor-revoke.mjs');
const FILLER = join(ROOT, 'bench', 'fill-ledger.mjs');
const ISSUER = join(ROOT, 'bench', 'issue-leases.mjs');

const startedAt = new Date();
const loadAtStart = os.loadavg();
const log = (text) => process.stderr.write(`${text}\n`);
const n = (x) => x.toLocaleString('en-US');

// ------------------------------------------------------------------ targets and names

const tag = `${'abcdefghijklmnopqrstuvwxyz'[randomBytes(1)[0] % 26]}${randomBytes(3).toString('hex').slice(0, 4)}`;
/** Every database user this run creates starts with it (12 characters at most on MySQL). */
const PREFIX = `sb${tag}_`;
const DB = `sybench_${tag}`;
const PG = { host: process.env.PGHOST ?? '127.0.0.1', port: Number(process.env.PGPORT ?? 5432), user: process.env.PGUSER ?? 'postgres', password: process.env.PGPASSWORD ?? '' };
const MY = { host: process.env.MYSQL_HOST ?? '127.0.0.1', port: Number(process.env.MYSQL_TCP_PORT ?? 3306), user: process.env.MYSQL_USER ?? 'root', password: process.env.MYSQL_PWD ?? '' };
const FLOOR_ENV_PG = childEnv({ BENCH_TARGET: JSON.stringify({ ...PG, database: DB, schema: 'public', prefix: PREFIX }) });
const FLOOR_ENV_MY = childEnv({ BENCH_TARGET: JSON.stringify({ ...MY, database: DB, prefix: PREFIX }) });

async function pgClient(database = 'postgres') {
  const client = new pg.Client({ ...PG, database, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

async function pgQuery(sql, params = [], database = 'postgres') {
  const client = await pgClient(database);
  try {
    return (await client.query(sql, params)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function myQuery(sql, params = []) {
  const connection = await mysql.createConnection({ ...MY, connectTimeout: 10_000 });
  connection.on('error', () => undefined);
  try {
    const [rows] = await connection.query(sql, params);
    return rows;
  } finally {
    await connection.end().catch(() => undefined);
  }
}

let versions = { pg: '?', my: '?' };
async function setUpTargets() {
  versions.pg = (await pgQuery("SELECT current_setting('server_version') AS v"))[0].v;
  await pgQuery(`CREATE DATABASE ${pg.escapeIdentifier(DB)}`);
  await pgQuery('CREATE TABLE public.items (id int PRIMARY KEY, name text); INSERT INTO public.items SELECT g, md5(g::text) FROM generate_series(1, 100) g', [], DB);
  versions.my = (await myQuery('SELECT VERSION() AS v'))[0].v;
  await myQuery(`CREATE DATABASE \`${DB}\``);
  await myQuery(`CREATE TABLE \`${DB}\`.items (id int PRIMARY KEY, name text)`);
}

/** Users whose name starts with the run's prefix. */
async function pgLeftovers() {
  return (await pgQuery('SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY 1', [PREFIX])).map((r) => r.rolname);
}
async function myLeftovers() {
  return myQuery("SELECT User AS user, Host AS host FROM mysql.user WHERE User LIKE ? ESCAPE '!'", [`${PREFIX.replace(/[!%_]/g, (c) => `!${c}`)}%`]);
}

const daemons = new Set();
const homes = [];
/** Further clean-ups (the fleet rows' store databases), run first. */
const cleanups = [];
let cleanedUp = false;
async function cleanUp() {
  if (cleanedUp) return;
  cleanedUp = true;
  for (const child of daemons) child.kill('SIGKILL');
  for (const fn of cleanups) await fn().catch((error) => log(`cleanup: ${error.message}`));
  const dropped = { pg: 0, my: 0 };
  try {
    const roles = await pgLeftovers();
    const hasDb = (await pgQuery('SELECT 1 FROM pg_database WHERE datname = $1', [DB])).length > 0;
    for (let i = 0; i < roles.length; i += 100) {
      const list = roles.slice(i, i + 100).map(pg.escapeIdentifier).join(', ');
      await pgQuery(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY($1::text[])`, [roles.slice(i, i + 100)]);
      if (hasDb) await pgQuery(`DROP OWNED BY ${list}`, [], DB);
      await pgQuery(`DROP OWNED BY ${list}; DROP ROLE IF EXISTS ${list}`);
      dropped.pg += roles.slice(i, i + 100).length;
    }
    await pgQuery(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(DB)} WITH (FORCE)`);
  } catch (error) {
    log(`cleanup (PostgreSQL): ${error.message}`);
  }
  try {
    const users = await myLeftovers();
    for (let i = 0; i < users.length; i += 100) {
      const chunk = users.slice(i, i + 100);
      await myQuery(`DROP USER IF EXISTS ${chunk.map(() => '?@?').join(', ')}`, chunk.flatMap((u) => [String(u.user), String(u.host)]));
      dropped.my += chunk.length;
    }
    await myQuery(`DROP DATABASE IF EXISTS \`${DB}\``);
  } catch (error) {
    log(`cleanup (MariaDB): ${error.message}`);
  }
  for (const home of homes) rmSync(home, { recursive: true, force: true });
  log(`cleanup: dropped ${dropped.pg} PostgreSQL and ${dropped.my} MariaDB users starting with ${PREFIX}, databases ${DB}, ${homes.length} temp stores`);
}

// ------------------------------------------------------------------ stores

const MASTER_KEY = sy(['key', 'generate'], childEnv()).stdout.trim();

/** A fresh store in a temp SY_HOME; `env` has SY_NO_SWEEP=1, `sweepEnv` has the sweep on. */
function newStore(name, { pgTarget = false, myTarget = false } = {}) {
  const home = mkdtempSync(join(os.tmpdir(), `sy-bench-${name}-`));
  homes.push(home);
  const sweepEnv = childEnv({ SY_HOME: home, SY_MASTER_KEY: MASTER_KEY, SY_CLIENT_ID: 'bench' });
  delete sweepEnv.SY_NO_SWEEP;
  const env = { ...sweepEnv, SY_NO_SWEEP: '1' };
  sy(['init'], env);
  const create = (body) => sy(['secret', 'create', '--body', '-'], env, { input: JSON.stringify(body) });
  if (pgTarget) {
    create({ path: 'bench:pg:root', attributes: { type: 'postgresql' }, data: { host: PG.host, port: PG.port, username: PG.user, password: PG.password, database: DB } });
    create({
      path: 'bench:pg:dyn',
      attributes: { linkConfig: { linkType: 'dynamic', linkedSecret: 'bench:pg:root' }, grantPermissions: { what: 'SELECT', where: 'public.*' }, ttl: 600, userPrefix: PREFIX },
      data: {},
    });
  }
  if (myTarget) {
    create({ path: 'bench:my:root', attributes: { type: 'mariadb' }, data: { host: MY.host, port: MY.port, username: MY.user, password: MY.password, database: DB } });
    create({
      path: 'bench:my:dyn',
      attributes: { linkConfig: { linkType: 'dynamic', linkedSecret: 'bench:my:root' }, grantPermissions: { what: 'SELECT', where: `${DB}.*` }, ttl: 600, userPrefix: PREFIX },
      data: {},
    });
  }
  return { home, env, sweepEnv };
}

function fill(store, args) {
  const result = run(NODE, [FILLER, ...args], { env: store.env });
  if (result.status !== 0) throw new Error(`fill-ledger ${args.join(' ')}: ${result.stderr.trim().slice(0, 500)}`);
  return JSON.parse(result.stdout);
}

const parseJson = (text) => JSON.parse(text);
const leaseCreated = (result) => {
  const lease = parseJson(result.stdout);
  if (!lease.lease_id || !lease.username?.startsWith(PREFIX)) throw new Error(`unexpected lease output: ${result.stdout.slice(0, 200)}`);
  return lease;
};

// ------------------------------------------------------------------ rows

const NODE_FLOOR = { name: 'floor', command: NODE, args: ['-e', '0'] };
const syCase = (name, args, env, extra = {}) => ({ name, command: NODE, args: [SY, ...args], env, ...extra });
const measureOpts = (runs = CFG.runs) => ({ runs, warmup: CFG.warmup, log });

/** A row comparing a median to the median of its floor. */
function ratioRow(results, name, floorName, floorLabel, limit, extra = {}) {
  const a = results[name];
  const f = results[floorName];
  const ratio = pairedRatio(a, f);
  const errors = a.errors + f.errors;
  return {
    measured: `${fmtMs(median(a.times))}`,
    floor: `${floorLabel}: ${fmtMs(median(f.times))}`,
    ratio: fmtRatio(ratio),
    runs: `${a.times.length}`,
    met: Number.isFinite(ratio) && ratio <= limit && errors === 0,
    note: [extra.note, errors ? `${errors} failed runs (${a.firstError ?? f.firstError})` : undefined, spread(a.times)].filter(Boolean).join('; '),
  };
}
const spread = (times) => (times.length ? `p25-p75 ${fmtMs(quantile(times, 0.25))}-${fmtMs(quantile(times, 0.75))}` : '');

const rows = [];
/** Declares a row group: `fn` measures and returns {id: cells} for the group's rows. */
function group(number, ids, fn) {
  rows.push({ number: String(number), ids, fn });
}
const LABELS = {};
const TARGETS = {};
/** Row ids in table order (an object would put the integer-like "7" first). */
const ORDER = [];
function label(id, text, target) {
  ORDER.push(id);
  LABELS[id] = text;
  TARGETS[id] = target;
}

label('1a', '`sy --version`', '<= 1.3x');
label('1b', '`sy --help`', '<= 1.3x');
group(1, ['1a', '1b'], async () => {
  const store = newStore('start');
  const r = await interleave([NODE_FLOOR, syCase('version', ['--version'], store.env), syCase('help', ['--help'], store.env)], measureOpts(CFG.startupRuns));
  return { '1a': ratioRow(r, 'version', 'floor', '`node -e 0`', 1.3), '1b': ratioRow(r, 'help', 'floor', '`node -e 0`', 1.3) };
});

label('2a', '`sy secret read <static path>`, store of N secrets', '<= 1.6x');
label('2b', '`sy secret read`, same, with the pre-command sweep check on (extra)', '<= 1.6x');
group(2, ['2a', '2b'], async () => {
  const store = newStore('read');
  fill(store, ['--secrets', String(CFG.secrets)]);
  const path = `bench:static:s${String(Math.floor(CFG.secrets / 2)).padStart(6, '0')}`;
  const check = (r) => {
    if (parseJson(r.stdout).path !== path) throw new Error('wrong secret');
  };
  const r = await interleave(
    [NODE_FLOOR, syCase('read', ['secret', 'read', path], store.env, { settle: check }), syCase('readSweep', ['secret', 'read', path], store.sweepEnv, { settle: check })],
    measureOpts(CFG.startupRuns),
  );
  const note = `${n(CFG.secrets)} secrets`;
  return { '2a': ratioRow(r, 'read', 'floor', '`node -e 0`', 1.6, { note }), '2b': ratioRow(r, 'readSweep', 'floor', '`node -e 0`', 1.6, { note }) };
});

label('3a', '`sy dynamic lease create` (PostgreSQL)', '<= 1.15x');
label('3b', '`sy dynamic lease create` (MariaDB)', '<= 1.15x');
group(3, ['3a', '3b'], async () => {
  const store = newStore('create', { pgTarget: true, myTarget: true });
  const floorOk = (r) => {
    if (!parseJson(r.stdout).username?.startsWith(PREFIX)) throw new Error('floor printed no user');
  };
  const r = await interleave(
    [
      { name: 'floorPg', command: NODE, args: [FLOOR_PG, 'create'], env: FLOOR_ENV_PG, settle: floorOk },
      syCase('pg', ['dynamic', 'lease', 'create', '--path', 'bench:pg:dyn'], store.env, { settle: leaseCreated }),
      { name: 'floorMy', command: NODE, args: [FLOOR_MY, 'create'], env: FLOOR_ENV_MY, settle: floorOk },
      syCase('my', ['dynamic', 'lease', 'create', '--path', 'bench:my:dyn'], store.env, { settle: leaseCreated }),
    ],
    measureOpts(CFG.timedRuns),
  );
  return {
    '3a': ratioRow(r, 'pg', 'floorPg', '`bench/floor-pg.mjs create`', 1.15),
    '3b': ratioRow(r, 'my', 'floorMy', '`bench/floor-mysql.mjs create`', 1.15),
  };
});

label('4a', '`sy dynamic lease revoke <id>` (PostgreSQL)', '<= 1.15x');
label('4b', '`sy dynamic lease revoke <id>` (MariaDB)', '<= 1.15x');
group(4, ['4a', '4b'], async () => {
  const store = newStore('revoke', { pgTarget: true, myTarget: true });
  const newLease = (path) => () => [leaseCreated(sy(['dynamic', 'lease', 'create', '--path', path], store.env)).lease_id];
  const newFloorUser = (script, env) => () => {
    const result = run(NODE, [script, 'create'], { env });
    if (result.status !== 0) throw new Error(`floor create: ${result.stderr.slice(0, 300)}`);
    return [parseJson(result.stdout).username];
  };
  const revoked = (r) => {
    if (parseJson(r.stdout).state !== 'revoked') throw new Error(`not revoked: ${r.stdout.slice(0, 200)}`);
  };
  const r = await interleave(
    [
      { name: 'floorPg', command: NODE, args: [FLOOR_PG, 'revoke'], env: FLOOR_ENV_PG, prepare: newFloorUser(FLOOR_PG, FLOOR_ENV_PG) },
      syCase('pg', ['dynamic', 'lease', 'revoke'], store.env, { prepare: newLease('bench:pg:dyn'), settle: revoked }),
      { name: 'floorMy', command: NODE, args: [FLOOR_MY, 'revoke'], env: FLOOR_ENV_MY, prepare: newFloorUser(FLOOR_MY, FLOOR_ENV_MY) },
      syCase('my', ['dynamic', 'lease', 'revoke'], store.env, { prepare: newLease('bench:my:dyn'), settle: revoked }),
    ],
    measureOpts(CFG.timedRuns),
  );
  return {
    '4a': ratioRow(r, 'pg', 'floorPg', '`bench/floor-pg.mjs revoke`', 1.15),
    '4b': ratioRow(r, 'my', 'floorMy', '`bench/floor-mysql.mjs revoke`', 1.15),
  };
});

label('5a', '`sy dynamic sweep --no-reap` of N expired leases (PostgreSQL)', '>= 1000/s');
label('5b', '`sy dynamic sweep --no-reap` of N expired leases (MariaDB)', '>= 1000/s');
group(5, ['5a', '5b'], async () => {
  const out = {};
  for (const [id, engine, kind, path, env, limit, leftovers] of [
    ['5a', 'PostgreSQL', 'postgresql', 'bench:pg:dyn', FLOOR_ENV_PG, 1000, async () => (await pgLeftovers()).length],
    ['5b', 'MariaDB', 'mariadb', 'bench:my:dyn', FLOOR_ENV_MY, 1000, async () => (await myLeftovers()).length],
  ]) {
    const rates = [];
    const walls = [];
    const problems = [];
    const floorRates = [];
    const floorWalls = [];
    const floorProblems = [];
    /** sweep rate / floor rate of each run in which both succeeded: paired, as in the other rows. */
    const ratios = [];
    let issueMs = 0;
    for (let i = -1; i < CFG.sweepRuns; i++) {
      const warm = i < 0;
      const count = warm ? Math.min(20, CFG.sweepLeases) : CFG.sweepLeases;
      const round = warm ? 'warm-up' : `${i + 1}/${CFG.sweepRuns}`;
      const store = newStore(`sweep${id}`, { pgTarget: engine === 'PostgreSQL', myTarget: engine === 'MariaDB' });
      const before = await leftovers();
      const issued = run(NODE, [ISSUER, '--path', path, '--count', String(count), '--ttl', '2'], { env: store.env });
      if (issued.status !== 0) throw new Error(`issuing leases: ${issued.stdout.trim()} ${issued.stderr.trim().slice(0, 300)}`);
      const { lastExpiry, ms } = parseJson(issued.stdout);
      if (!warm) issueMs += ms;
      await sleep(Math.max(0, lastExpiry - Date.now()) + 1100);
      const result = sy(['dynamic', 'sweep', '--no-reap'], store.env, { check: false });
      const report = result.status === 0 ? parseJson(result.stdout) : undefined;
      const after = await leftovers();
      const problem = !report
        ? `exit ${result.status}: ${result.stderr.trim().slice(0, 300)}`
        : report.revoked !== count ? `revoked ${report.revoked} of ${count}`
          : after > before ? `${after - before} users left on the server` : undefined;
      log(`  ${engine} sweep ${round}: ${report?.revoked ?? 0} revoked in ${fmtMs(result.ms)}${problem ? ` (${problem})` : ''}`);
      rmSync(store.home, { recursive: true, force: true });

      // The floor, right after, on the same server and database: the same number of users
      // made the same way (untimed), then one process that revokes them all (timed like the sweep).
      const floor = floorRevoke(kind, env, count);
      const floorAfter = await leftovers();
      const floorProblem = floor.problem ?? (floorAfter > after ? `${floorAfter - after} users left on the server` : undefined);
      log(`  ${engine} floor ${round}: ${floorProblem ? 0 : count} dropped in ${fmtMs(floor.ms)}${floorProblem ? ` (${floorProblem})` : ''}`);
      if (warm) continue;
      if (problem) problems.push(problem);
      else {
        rates.push(report.revoked / (result.ms / 1000));
        walls.push(result.ms);
      }
      if (floorProblem) floorProblems.push(floorProblem);
      else {
        floorRates.push(count / (floor.ms / 1000));
        floorWalls.push(floor.ms);
        if (!problem) ratios.push(rates.at(-1) / floorRates.at(-1));
      }
    }
    const rate = median(rates);
    const floorRate = median(floorRates);
    const ratio = median(ratios);
    const perSecond = (r) => (Number.isFinite(r) ? n(Math.round(r)) : 'n/a');
    log(`  ${engine}: sweep ${n(CFG.sweepLeases)} leases: ${perSecond(rate)}/s, floor ${perSecond(floorRate)}/s, ratio ${Number.isFinite(ratio) ? ratio.toFixed(2) : 'n/a'}`);
    out[id] = {
      measured: `${Number.isFinite(rate) ? Math.round(rate) : 'n/a'} revocations/s (${fmtMs(median(walls))} for ${n(CFG.sweepLeases)})`,
      floor: `\`bench/floor-revoke.mjs drop\`: ${Number.isFinite(floorRate) ? Math.round(floorRate) : 'n/a'} revocations/s (${fmtMs(median(floorWalls))} for ${n(CFG.sweepLeases)})`,
      ratio: fmtRatio(ratio),
      runs: String(rates.length),
      met: rate >= limit && problems.length === 0 && floorProblems.length === 0,
      note: [
        `a fresh store per run; leases and users set up by bench/issue-leases.mjs (${Math.round((CFG.sweepRuns * CFG.sweepLeases) / (issueMs / 1000))}/s), TTL 2 s`,
        'ratio = sweep rate / floor rate, paired per run',
        problems.length ? `${problems.length} bad runs (${problems[0]})` : undefined,
        floorProblems.length ? `${floorProblems.length} bad floor runs (${floorProblems[0]})` : undefined,
        rates.length ? `p25-p75 ${Math.round(quantile(rates, 0.25))}-${Math.round(quantile(rates, 0.75))}/s` : undefined,
      ].filter(Boolean).join('; '),
    };
  }
  return out;
});

/**
 * One run of the sweep's floor: `floor-revoke.mjs create` makes `count` users (untimed), then
 * the wall time of `floor-revoke.mjs drop` (spawn to exit, as the sweep's) revoking them all.
 * The script drops what it made when it fails; whatever still survives goes at the run's end.
 */
function floorRevoke(kind, env, count) {
  const created = run(NODE, [FLOOR_REVOKE, 'create', kind, String(count)], { env });
  if (created.status !== 0) return { ms: NaN, problem: `floor create exit ${created.status}: ${created.stderr.trim().slice(0, 300)}` };
  const dropped = run(NODE, [FLOOR_REVOKE, 'drop', kind], { env, input: created.stdout });
  if (dropped.status !== 0) return { ms: NaN, problem: `floor drop exit ${dropped.status}: ${dropped.stderr.trim().slice(0, 300)}` };
  let report;
  try {
    report = parseJson(dropped.stdout);
  } catch {
    return { ms: NaN, problem: `floor drop printed ${dropped.stdout.trim().slice(0, 200)}` };
  }
  if (report.dropped !== count) return { ms: NaN, problem: `floor dropped ${report.dropped} of ${count}` };
  return { ms: dropped.ms };
}

label('6a', '`sy dynamic lease create` (PostgreSQL), ledger of N leases', '<= 1.5x');
label('6b', '`sy dynamic lease list --limit 100`, ledger of N leases', '<= 1.5x');
label('6c', '`sy dynamic lease list --all --limit 100`, ledger of N leases (extra)', '<= 1.5x');
label('6d', '`sy dynamic lease list --limit 1000` vs `--limit 100`, ledger of N leases', '<= 10x (linear)');
group(6, ['6a', '6b', '6c', '6d'], async () => {
  const small = newStore('ledger-small', { pgTarget: true });
  const big = newStore('ledger-big', { pgTarget: true });
  fill(small, ['--leases', String(CFG.ledgerSmall), '--active-every', '10']);
  log(`  filling ${n(CFG.ledger)} leases...`);
  const filled = fill(big, ['--leases', String(CFG.ledger), '--active-every', '10']);
  log(`  filled in ${(filled.ms / 1000).toFixed(1)} s`);
  const sizes = `${n(CFG.ledger)} vs ${n(CFG.ledgerSmall)} leases (1 in 10 active, the rest revoked)`;
  const create = ['dynamic', 'lease', 'create', '--path', 'bench:pg:dyn'];
  // The sweep check before each command stays on here: its cost with a big ledger is part of the question.
  const c = await interleave([syCase('small', create, small.sweepEnv, { settle: leaseCreated }), syCase('big', create, big.sweepEnv, { settle: leaseCreated })], measureOpts(CFG.timedRuns));
  const list = (limit, all = false) => ['dynamic', 'lease', 'list', '--limit', String(limit), ...(all ? ['--all'] : [])];
  const rowsOf = (count) => (r) => {
    const got = parseJson(r.stdout).data.length;
    if (got !== count) throw new Error(`listed ${got} leases, expected ${count}`);
  };
  const creates = CFG.warmup + CFG.timedRuns;
  const liveSmall = Math.ceil(CFG.ledgerSmall / 10) + creates;
  const liveBig = Math.ceil(CFG.ledger / 10) + creates;
  const page = (limit, live) => Math.min(limit, live);
  const l = await interleave(
    [
      syCase('small100', list(100), small.sweepEnv, { settle: rowsOf(page(100, liveSmall)) }),
      syCase('big100', list(100), big.sweepEnv, { settle: rowsOf(page(100, liveBig)) }),
      syCase('smallAll100', list(100, true), small.sweepEnv, { settle: rowsOf(page(100, CFG.ledgerSmall + creates)) }),
      syCase('bigAll100', list(100, true), big.sweepEnv, { settle: rowsOf(page(100, CFG.ledger + creates)) }),
      syCase('big1000', list(1000), big.sweepEnv, { settle: rowsOf(page(1000, liveBig)) }),
    ],
    measureOpts(CFG.timedRuns),
  );
  const perRow = (median(l.big1000.times) - median(l.big100.times)) / Math.max(1, page(1000, liveBig) - page(100, liveBig));
  return {
    '6a': ratioRow(c, 'big', 'small', `${n(CFG.ledgerSmall)} leases`, 1.5, { note: sizes }),
    '6b': ratioRow(l, 'big100', 'small100', `${n(CFG.ledgerSmall)} leases`, 1.5, { note: `${sizes}; pages of ${page(100, liveBig)} vs ${page(100, liveSmall)} leases` }),
    '6c': ratioRow(l, 'bigAll100', 'smallAll100', `${n(CFG.ledgerSmall)} leases`, 1.5, { note: sizes }),
    '6d': ratioRow(l, 'big1000', 'big100', '`--limit 100`', 10, { note: page(1000, liveBig) > page(100, liveBig) ? `${page(1000, liveBig)} vs ${page(100, liveBig)} leases listed: ${(perRow * 1000).toFixed(0)} µs per extra lease` : `both pages hold all ${liveBig} live leases at this size` }),
  };
});

label('7', 'N concurrent `sy dynamic lease create` (PostgreSQL)', '0 errors');
group(7, ['7'], async () => {
  const store = newStore('concurrent', { pgTarget: true });
  const args = [SY, 'dynamic', 'lease', 'create', '--path', 'bench:pg:dyn'];
  run(NODE, args, { env: store.env }); // warm-up
  const singles = [];
  const walls = [];
  let errors = 0;
  let firstError;
  const ids = new Set();
  for (let round = 0; round < CFG.concurrentRounds; round++) {
    const single = run(NODE, args, { env: store.env });
    if (single.status === 0) singles.push(single.ms);
    const started = process.hrtime.bigint();
    const results = await Promise.all(Array.from({ length: CFG.concurrent }, () => runAsync(NODE, args, { env: store.env })));
    walls.push(Number(process.hrtime.bigint() - started) / 1e6);
    for (const r of results) {
      try {
        if (r.status !== 0) throw new Error(`exit ${r.status}: ${r.stderr.trim().slice(0, 300)}`);
        ids.add(leaseCreated(r).lease_id);
      } catch (error) {
        errors++;
        firstError ??= error.message;
      }
    }
    log(`  round ${round + 1}/${CFG.concurrentRounds}: ${fmtMs(walls.at(-1))}, ${errors} errors so far`);
  }
  const ratio = median(walls) / median(singles);
  return {
    7: {
      measured: `${errors} errors in ${n(CFG.concurrent * CFG.concurrentRounds)} creates; ${fmtMs(median(walls))} wall for ${CFG.concurrent}`,
      floor: `one create: ${fmtMs(median(singles))}`,
      ratio: fmtRatio(ratio),
      runs: String(walls.length),
      met: errors === 0 && ids.size === CFG.concurrent * CFG.concurrentRounds,
      note: [`N = ${CFG.concurrent} on ${os.cpus().length} cores; ratio = wall of N at once / one alone`, firstError].filter(Boolean).join('; '),
    },
  };
});

label('8a', 'peak RSS of `sy dynamic lease create` (PostgreSQL)', '<= 80 MiB');
label('8b', 'peak RSS of `sy dynamic lease create` (MariaDB) (extra)', '<= 80 MiB');
label('8c', 'peak RSS of `sy daemon --interval 1s` watching N active leases', '<= 150 MiB');
group(8, ['8a', '8b', '8c'], async () => {
  const out = {};
  const timeBin = ['/usr/bin/time', '/bin/time'].find((p) => existsSync(p));
  const store = newStore('rss', { pgTarget: true, myTarget: true });
  for (const [id, path] of [['8a', 'bench:pg:dyn'], ['8b', 'bench:my:dyn']]) {
    if (!timeBin) {
      out[id] = { measured: 'n/a', floor: '—', ratio: '—', runs: '0', met: false, note: 'GNU time not found: apt-get install time' };
      continue;
    }
    const kib = [];
    let firstError;
    for (let i = 0; i < CFG.warmup + CFG.runs; i++) {
      const r = run(timeBin, ['-f', '%M', NODE, SY, 'dynamic', 'lease', 'create', '--path', path], { env: store.env });
      const value = Number(r.stderr.trim().split('\n').at(-1));
      if (r.status !== 0 || !Number.isFinite(value)) firstError ??= r.stderr.trim().slice(0, 300);
      else if (i >= CFG.warmup) kib.push(value);
    }
    const mib = median(kib) / 1024;
    out[id] = {
      measured: `${mib.toFixed(1)} MiB`,
      floor: '—',
      ratio: '—',
      runs: String(kib.length),
      met: mib <= 80 && !firstError,
      note: [`max ${(Math.max(...kib) / 1024).toFixed(1)} MiB (GNU time %M)`, firstError].filter(Boolean).join('; '),
    };
  }

  const daemonStore = newStore('daemon', { pgTarget: true });
  fill(daemonStore, ['--leases', String(CFG.daemonLeases), '--active-every', '1']);
  const peaks = [];
  const problems = [];
  for (let i = 0; i < CFG.daemonRuns; i++) {
    const peak = await daemonPeak(daemonStore);
    if (peak.error) problems.push(peak.error);
    else peaks.push(peak.kib);
    log(`  daemon ${i + 1}/${CFG.daemonRuns}: ${peak.error ?? `${(peak.kib / 1024).toFixed(1)} MiB`}`);
  }
  const mib = median(peaks) / 1024;
  out['8c'] = {
    measured: `${mib.toFixed(1)} MiB`,
    floor: '—',
    ratio: '—',
    runs: String(peaks.length),
    met: mib <= 150 && problems.length === 0,
    note: [`${n(CFG.daemonLeases)} active leases; VmHWM after ${CFG.daemonSeconds} s, max ${(Math.max(...peaks) / 1024).toFixed(1)} MiB`, problems[0]].filter(Boolean).join('; '),
  };
  return out;
});

/** Starts `sy daemon`, lets it run, reads its VmHWM, stops it with SIGTERM. */
async function daemonPeak(store) {
  const { spawn } = await import('node:child_process');
  const child = spawn(NODE, [SY, 'daemon', '--interval', '1s'], { env: store.env, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  daemons.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  await sleep(CFG.daemonSeconds * 1000);
  let kib;
  try {
    const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
    kib = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1]);
  } catch {
    // exited early: reported below
  }
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  const { code, signal } = await exited;
  clearTimeout(timer);
  daemons.delete(child);
  if (!stdout.includes('"event":"start"')) return { error: `daemon did not start: ${stderr.trim().slice(0, 300)}` };
  if (!Number.isFinite(kib)) return { error: `daemon exited early (${code ?? signal}): ${stderr.trim().slice(0, 300)}` };
  if (code !== 0) return { error: `daemon exited ${code ?? signal} after SIGTERM: ${stderr.trim().slice(0, 300)}` };
  return { kib };
}

fleetRows({
  group, label, CFG, PG, DB, PREFIX, MASTER_KEY, ROOT, NODE, SY, childEnv, sy, run, interleave, measureOpts, ratioRow, median, quantile, fmtMs, sleep, log, n,
  pgQuery, daemons, daemonPeak, newStore, onCleanup: (fn) => cleanups.push(fn),
});
isolationRows({ group, label, CFG, PG, MY, DB, PREFIX, ROOT, NODE, SY, sy, run, quantile, fmtMs, sleep, log, n, daemons, newStore });

label('13a', 'API lease create latency, 1 client (SQLite store)', 'reported');
label('13b', 'API lease create latency, 10 concurrent clients (SQLite store)', 'reported');
label('13c', 'API lease creates/s, 10 concurrent clients, vs the same users over 10 warm pg connections', '>= 0.7x');
label('13d', '`sy dynamic lease create` in client mode (SY_SERVER, HTTPS)', '<= 1.3x');
group(13, ['13a', '13b', '13c', '13d'], () => apiRows({
  CFG, PG, DB, PREFIX, ROOT, NODE, SY, QUICK, sy, run, interleave, measureOpts, ratioRow, median, quantile, fmtMs, sleep, log, n, pgQuery, daemons, newStore, homes,
}));

label('14a', '`sy agent` RSS through rotations of 2 s leases, 4 s max TTL (PostgreSQL)', '<= 80 MiB, flat');
label('14b', '`sy agent`: new lease to the file written, p99', '<= 100 ms');
group(14, ['14a', '14b'], async () => agentRows(newStore('agent', { pgTarget: true }), { seconds: CFG.agentSeconds, prefix: PREFIX, log }));

// ------------------------------------------------------------------ main

/** What rows 5a/5b are compared to, and why that is fair (carried into BENCHMARKS.md). */
const SWEEP_FLOOR = [
  "The sweep's floor (rows 5a/5b) is `bench/floor-revoke.mjs`, pg and mysql2 used directly, no sy code. Right after each",
  "sweep it makes as many users, untimed, in the same database and shaped as the sweep's: PostgreSQL roles LOGIN NOINHERIT",
  'with a SCRAM password, VALID UNTIL and a comment, CONNECT on the database, USAGE on `public`, SELECT on its tables;',
  "MariaDB `name@'%'` with a password and SELECT on the database. Then one `node` process, timed spawn to exit like the",
  'sweep, connects once and revokes them all in one round trip. PostgreSQL, in one transaction: `pg_terminate_backend` on',
  'their sessions in `pg_stat_activity` (waiting up to 5 s, as sy does), one `REVOKE ALL` on the tables, one on the schema',
  'and one on the database, each naming every role, `DROP OWNED BY` all, `DROP ROLE` all. MariaDB: `DROP USER` of all in',
  "one statement, then the processlist lookup of their sessions (a `KILL` for each; none are open in either row). It is a",
  'fair floor because it pays what any real revocation of these users pays, under the same conditions: a Node start and',
  "the same driver, a connection, ending sessions, taking every privilege away and dropping the users, on the same table's",
  "ACL, interleaved with the sweep in the same session so load drifts cancel. It skips what sy adds: the store, claiming",
  "and settling leases in the ledger, the audit line, batches of up to 1,000 with a connection each, finding out what the roles",
  'hold (the floor knows what it granted) and any check afterwards. A ratio near 1.00x means revocation costs sy about',
  'what the server needs; the run checks that no user of the sweep or the floor is left on the server after each run.',
  "One bias, in sy's favour, as with the create/revoke floors: the floor loads its driver from `node_modules`, which",
  "takes some 20-35 ms longer than sy's bundled copy (a few percent of a run of 1,000). The floor makes no database; its",
  "users start with the run's prefix, it drops them itself when it fails, and the run's clean-up drops any left over.",
];

function machine() {
  const cpus = os.cpus();
  const git = run('git', ['rev-parse', '--short', 'HEAD'], { env: childEnv() });
  const dirty = run('git', ['status', '--porcelain', '--untracked-files=no'], { env: childEnv() });
  const version = sy(['--version'], childEnv()).stdout.trim();
  return {
    cores: cpus.length,
    cpu: cpus[0]?.model ?? 'unknown',
    memGiB: (os.totalmem() / 2 ** 30).toFixed(1),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    sy: version,
    commit: git.status === 0 ? `${git.stdout.trim()}${dirty.stdout.trim() ? ' (with uncommitted changes)' : ''}` : 'unknown',
  };
}

function resultCell(cells) {
  if (cells.error) return 'error';
  if (cells.skipped) return 'skipped';
  return cells.met ? 'met' : '**missed**';
}

async function main() {
  const info = machine();
  log(`sy bench ${QUICK ? '(quick) ' : ''}on ${info.cores} x ${info.cpu}, Node ${info.node}, load ${loadAtStart.map((l) => l.toFixed(2)).join(' ')}; prefix ${PREFIX}, database ${DB}`);
  const results = {};
  let failedScenarios = 0;
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
    log('interrupted: cleaning up');
    cleanUp().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await setUpTargets();
    for (const row of rows) {
      if (ONLY && !ONLY.has(row.number)) {
        for (const id of row.ids) results[id] = { skipped: true, measured: 'skipped (--only)', floor: '', ratio: '', runs: '0', note: '' };
        continue;
      }
      log(`row ${row.number}: ${row.ids.map((id) => LABELS[id]).join('; ')}`);
      const started = Date.now();
      try {
        Object.assign(results, await row.fn());
      } catch (error) {
        failedScenarios++;
        log(`row ${row.number} failed: ${error.stack ?? error}`);
        for (const id of row.ids) results[id] ??= { error: true, measured: `error: ${String(error.message ?? error).slice(0, 200)}`, floor: '', ratio: '', runs: '0', note: '' };
      }
      log(`row ${row.number}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
  } catch (error) {
    failedScenarios++;
    log(`set-up failed: ${error.stack ?? error}`);
  } finally {
    if (!interrupted) await cleanUp();
  }

  const sizes = (text) => text
    .replace('store of N secrets', `store of ${n(CFG.secrets)} secrets`)
    .replace('of N expired', `of ${n(CFG.sweepLeases)} expired`)
    .replace('ledger of N leases', `ledger of ${n(CFG.ledger)} leases`)
    .replace(/^N concurrent/, `${CFG.concurrent} concurrent`)
    .replace('watching N active', `watching ${n(CFG.daemonLeases)} active`)
    .replace('over N leases', `over ${n(CFG.fleetLeases)} leases`)
    .replace('N leases due', `${n(CFG.fleetLeases)} leases due`)
    .replace('with N active leases', `with ${n(CFG.daemonLeases)} active leases`)
    .replace('N healthy leases expiring over S s', `${n(CFG.isolationLeases)} healthy leases expiring over ${CFG.isolationSpread} s`);
  const table = markdownTable(
    ['#', 'figure', 'measured (median)', 'floor (median, same session)', 'ratio (paired)', 'target', 'result', 'runs', 'notes'],
    ORDER.map((id) => {
      const cells = results[id] ?? { error: true, measured: 'error: not measured', floor: '', ratio: '', runs: '0', note: '' };
      return [id, sizes(LABELS[id]), cells.measured, cells.floor, cells.ratio, TARGETS[id], resultCell(cells), cells.runs, cells.note];
    }),
  );
  const missed = ORDER.filter((id) => results[id] && !results[id].met && !results[id].skipped && !results[id].error);
  const finishedAt = new Date();
  const header = [
    `Measured ${startedAt.toISOString().replace(/\.\d+Z$/, 'Z')} (${((finishedAt - startedAt) / 60000).toFixed(1)} min), ${QUICK ? '**quick mode** (3 runs, small sizes: not comparable to the full figures)' : 'full mode'}.`,
    '',
    `- Machine: ${info.cores} cores, ${info.cpu}, ${info.memGiB} GiB, ${info.kernel}; load average at start ${loadAtStart.map((l) => l.toFixed(2)).join(' / ')}, at end ${os.loadavg().map((l) => l.toFixed(2)).join(' / ')} (1 / 5 / 15 min).`,
    `- Node ${info.node}; sy ${info.sy} at commit ${info.commit}; PostgreSQL ${versions.pg}; MariaDB ${versions.my}; temp stores (SY_HOME) in ${os.tmpdir()}.`,
    `- Each timed figure: ${CFG.warmup} warm-up rounds, then the median of the rounds in the runs column (rows 1-2: ${CFG.startupRuns}, rows 3, 4 and 6: ${CFG.timedRuns}), the compared commands interleaved (A B A B ...); the ratio is the median of the per-round ratios, so load that drifts between rounds cancels out. Wall time of the whole process (spawn to exit), \`node bin/sy ...\` with SY_MASTER_KEY and SY_NO_SWEEP=1 unless noted (row 2b and row 6 keep the pre-command sweep check on).`,
    `- Rows 5a/5b: a warm-up run of ${Math.min(20, CFG.sweepLeases)} leases, then ${CFG.sweepRuns} run${CFG.sweepRuns === 1 ? '' : 's'}; each run sweeps a fresh store's ${n(CFG.sweepLeases)} expired leases, then runs the floor on as many fresh users on the same server and database (see below); the measured and floor figures are median rates (wall time spawn to exit, as above), and the ratio is the median per-run sweep rate / floor rate (1.00x = as fast as the floor, lower = slower).`,
    `- Targets missed: ${missed.length ? missed.join(', ') : 'none'}.${failedScenarios ? ` Scenarios that failed to run: ${failedScenarios}.` : ''}`,
  ].join('\n');
  const reproduce = [
    '## How to reproduce',
    '',
    '```sh',
    'npm ci                      # installs and builds dist/ (the bundle and the tsc output the fillers import)',
    'npm run bench               # full run, ~80 minutes on 2 cores (an hour of it is row 14, the agent; --agent-seconds 600 shortens it); rewrites BENCHMARKS.md',
    'npm run bench -- --quick    # 3 runs and small sizes, ~1-2 minutes; prints the table only',
    'node bench/profile.mjs --runs 5 -- bin/sy --version   # self time by file (node --cpu-prof), with your SY_HOME/SY_MASTER_KEY',
    '```',
    '',
    'Needs PostgreSQL at 127.0.0.1:5432 as `postgres` (trust; or PGHOST, PGPORT, PGUSER, PGPASSWORD) and MariaDB at',
    '127.0.0.1:3306 as `root` with an empty password (or MYSQL_HOST, MYSQL_TCP_PORT, MYSQL_USER, MYSQL_PWD), and GNU `time`',
    'for row 8. Each run makes a database `sybench_<tag>` on both servers and users whose names start with `sb<tag>_`, and',
    'drops them all at the end. Floors: `node -e 0` for start-up; `bench/floor-pg.mjs` and `bench/floor-mysql.mjs` for',
    'lease create/revoke (same driver, same kind of statements, nothing else). Fake leases come from `bench/fill-ledger.mjs`',
    "(sy's own store layer, batched transactions); the sweep's expired leases from `bench/issue-leases.mjs` (sy's ledger,",
    'user names and statements, but users created a hundred per transaction; TTL 2 s). Rows marked (extra) go beyond the brief.',
    'Rows 9-11 use the shared store: each scenario makes its own store database `sybench_store_<tag>_<n>` on the same',
    'PostgreSQL (`sy init` with SY_STORE, sslmode=disable), runs real `sy daemon --pool` processes, and reads every delay back',
    "from the store's audit log (the time of each revocation's line) against the ledger's expiry to the millisecond.",
    'Row 12 runs one `sy daemon` on a SQLite store with the two targets and three more that hang: forwarders to the same',
    'servers in the benchmark process (127.0.0.1 only), silent once their leases exist; delays are read the same way.',
    '',
    ...SWEEP_FLOOR,
  ].join('\n');
  // The analysis of the misses is written by people, kept in bench/findings.md, and carried into each report.
  const findings = readFileSync(join(ROOT, 'bench', 'findings.md'), 'utf8').trim();
  const text = `# sy benchmarks\n\n${header}\n\n${table}\n\n${findings}\n\n${reproduce}\n`;
  process.stdout.write(`\n${table}\n\n${header}\n`);
  if (OUT) {
    writeFileSync(OUT, text);
    log(`wrote ${OUT}`);
  }
  return failedScenarios > 0 ? 1 : 0;
}

process.exitCode = await main();
