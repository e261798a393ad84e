// The rows of the lease API (rows 13a-13d of bench/run.mjs): a real `sy daemon --listen` on a
// SQLite store, a PostgreSQL target, clients registered with `sy client create`, tokens signed
// with each client's private key (jose, in this process), requests with node:http over
// keep-alive connections (fetch costs this process about twice the CPU per request, on the
// cores the daemon and PostgreSQL share).
//
// - 13a/13b: lease create latency (p50, p99) with 1 client, and with 10 clients at once;
// - 13c: the throughput of those 10 clients against bench/floor-api.mjs, the same users with
//   the same grants made with pg over 10 warm connections, rounds interleaved and paired;
// - 13d: `sy dynamic lease create` in client mode (SY_SERVER ... over TLS, a throwaway CA) against
//   bench/floor-https.mjs, a Node script making the same HTTPS request, interleaved.
//
// The recipe grants SELECT on a table of a schema of its own (api.items), so that the other
// rows' `public.*` leases do not grow its catalog row, and every lease is revoked through the
// API (DELETE) between rounds and at the end; the floor drops its users itself.
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { request } from 'node:https';
import os from 'node:os';
import { join } from 'node:path';
import { pgFloor } from './floor-api.mjs';

const PATH = 'bench:pg:api';
const CLIENTS = 10;

/** Runs the scenario; `ctx` carries run.mjs's helpers and settings. Returns {13a..13d: cells}. */
export async function apiRows(ctx) {
  const { CFG, PG, DB, PREFIX, ROOT, NODE, SY, QUICK, sy, run, interleave, measureOpts, ratioRow, median, quantile, fmtMs, sleep, log, n, pgQuery, daemons, newStore, homes } = ctx;
  const S = QUICK ? { rounds: 2, single: 10, perClient: 5, warmUp: 2 } : { rounds: 9, single: 30, perClient: 20, warmUp: 20 };
  const { SignJWT, importPKCS8 } = await import('jose');

  await pgQuery('CREATE SCHEMA IF NOT EXISTS api; CREATE TABLE IF NOT EXISTS api.items (id int PRIMARY KEY, name text)', [], DB);
  const store = newStore('api', { pgTarget: true });
  sy(['secret', 'create', '--body', '-'], store.env, {
    input: JSON.stringify({
      path: PATH,
      attributes: { linkConfig: { linkType: 'dynamic', linkedSecret: 'bench:pg:root' }, grantPermissions: { what: 'SELECT', where: 'api.items' }, ttl: 600, userPrefix: PREFIX },
      data: {},
    }),
  });
  const clients = [];
  for (let i = 0; i < CLIENTS + 2; i++) {
    const name = `bench-api-${i + 1}`;
    const made = JSON.parse(sy(['client', 'create', name, '--allow', 'bench:pg:*', '--format', 'json'], store.env).stdout);
    clients.push({ name, pem: made.private_key, key: await importPKCS8(made.private_key, 'EdDSA') });
  }

  // A throwaway CA and a certificate for 127.0.0.1 (row 13d).
  const tlsDir = mkdtempSync(join(os.tmpdir(), 'sy-bench-tls-'));
  homes.push(tlsDir);
  const ssl = (args) => {
    const r = run('openssl', args, { cwd: tlsDir });
    if (r.status !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr.trim().slice(0, 300)}`);
  };
  const f = (name) => join(tlsDir, name);
  ssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=sy bench CA', '-keyout', f('ca.key'), '-out', f('ca.pem')]);
  ssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', f('server.key'), '-out', f('server.csr')]);
  writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  ssl(['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '1', '-extfile', f('ext.cnf'), '-out', f('server.pem')]);

  let daemonCount = 0;
  /** `sy daemon --listen 127.0.0.1:0`; resolves with its URL once it logs `listening`. */
  async function startDaemon(extra = []) {
    // SY_BENCH_PROFILE_DIR=DIR: the daemons run under `node --cpu-prof` (for bench/findings.md).
    const prof = process.env.SY_BENCH_PROFILE_DIR ? ['--cpu-prof', '--cpu-prof-dir', process.env.SY_BENCH_PROFILE_DIR] : [];
    // Its log (a line per request) goes to a file: a reader that keeps up, as a container
    // runtime is; a pipe to this busy process would fill and block the daemon's writes.
    const logFile = join(tlsDir, `daemon-${++daemonCount}.log`);
    const logFd = openSync(logFile, 'w');
    const child = spawn(NODE, [...prof, SY, 'daemon', '--listen', '127.0.0.1:0', '--interval', '30s', ...extra], { env: store.env, cwd: ROOT, stdio: ['ignore', logFd, 'pipe'] });
    closeSync(logFd);
    daemons.add(child);
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
    const deadline = Date.now() + 30_000;
    let url;
    while (!(url = /"event":"listening","url":"([^"]+)"/.exec(readFileSync(logFile, 'utf8'))?.[1])) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`the daemon did not listen: ${err.trim().slice(0, 300)}`);
      await sleep(50);
    }
    const stop = async () => {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const { code, signal } = await exited;
      clearTimeout(timer);
      daemons.delete(child);
      if (code !== 0) throw new Error(`the daemon exited ${code ?? signal}: ${err.trim().slice(0, 300)}`);
    };
    /** CPU time (user + system) the daemon has used so far, in ms (/proc/PID/stat, 100 ticks a second). */
    const cpuMs = () => {
      const fields = readProc(`/proc/${child.pid}/stat`).replace(/^.*\) /, '').split(' ');
      return (Number(fields[11]) + Number(fields[12])) * 10;
    };
    return { url, stop, cpuMs, rssKiB: () => Number(/^VmHWM:\s+(\d+) kB/m.exec(readProc(`/proc/${child.pid}/status`))?.[1]) };
  }

  const token = (client, url) => new SignJWT({})
    .setProtectedHeader({ alg: 'EdDSA', typ: 'JWT' })
    .setIssuer(client.name).setSubject(client.name).setAudience(new URL(url).origin)
    .setIssuedAt().setExpirationTime('10m').setJti(crypto.randomUUID())
    .sign(client.key);

  // ------------------------------------------------------------ 13a-13c over plain HTTP (loopback)
  const daemon = await startDaemon();
  const errors = [];
  const live = new Map(); // lease id -> client
  const bearer = new Map();
  const auth = async (client) => {
    const cached = bearer.get(client.name);
    if (cached && cached.until > Date.now()) return cached.value;
    const value = `Bearer ${await token(client, daemon.url)}`;
    bearer.set(client.name, { value, until: Date.now() + 5 * 60_000 });
    return value;
  };
  const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS + 2 });
  /** One request to the daemon over a kept-alive connection; resolves with its status and body. */
  const call = (method, path, headers, body) => new Promise((resolve, reject) => {
    const req = httpRequest(`${daemon.url}${path}`, { method, headers, agent }, (res) => {
      const chunks = [];
      res.on('data', (chunk) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
  /** One POST /dynamic/lease; its latency in ms, or undefined when it failed. */
  const create = async (client) => {
    const headers = { authorization: await auth(client), 'content-type': 'application/json' };
    const started = process.hrtime.bigint();
    let status;
    let text;
    try {
      ({ status, text } = await call('POST', '/api/sm/v1/dynamic/lease', headers, JSON.stringify({ path: PATH })));
    } catch (error) {
      errors.push(`request: ${error.message}`);
      return undefined;
    }
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    if (status !== 201) {
      errors.push(`${status}: ${text.slice(0, 200)}`);
      return undefined;
    }
    const lease = JSON.parse(text);
    if (!lease.username?.startsWith(PREFIX)) errors.push(`unexpected lease: ${text.slice(0, 200)}`);
    live.set(lease.lease_id, client);
    return ms;
  };
  /** Revokes every lease made so far, through the API, 10 at a time (untimed). */
  const revokeAll = async () => {
    const ids = [...live.keys()];
    for (let i = 0; i < ids.length; i += CLIENTS) {
      await Promise.all(ids.slice(i, i + CLIENTS).map(async (id) => {
        const { status } = await call('DELETE', `/api/sm/v1/dynamic/leases/${id}`, { authorization: await auth(live.get(id)) });
        if (status !== 204) errors.push(`revoke ${status}`);
        else live.delete(id);
      }));
    }
  };
  /** `count` creates by each of `many` clients at once; latencies and the wall time. */
  const burst = async (many, count) => {
    const latencies = [];
    const started = process.hrtime.bigint();
    await Promise.all(clients.slice(0, many).map(async (client) => {
      for (let i = 0; i < count; i++) {
        const ms = await create(client);
        if (ms !== undefined) latencies.push(ms);
      }
    }));
    return { latencies, ms: Number(process.hrtime.bigint() - started) / 1e6 };
  };

  const floor = await pgFloor({ target: { ...PG, database: DB }, schema: 'api', table: 'items', prefix: PREFIX, connections: CLIENTS });
  const single = [];
  const ten = [];
  const rates = [];
  const floorRates = [];
  const ratios = [];
  const cpuPerCreate = [];
  /** The floor's statements with a new connection per user, as sy does: reported in the note. */
  const freshRates = [];
  try {
    // Warm-up: every client's connection and token, the daemon's and the floor's first
    // statements, and V8's compiling of the daemon's request path, which takes a few hundred
    // requests (the first rounds ran ~20% slower after 20): a daemon serves for days.
    await burst(CLIENTS, S.warmUp);
    await revokeAll();
    await floor.run(2);
    await floor.drop();
    for (let round = 0; round < S.rounds; round++) {
      const one = await burst(1, S.single);
      single.push(...one.latencies);
      await revokeAll();
      const cpuBefore = daemon.cpuMs();
      const all = await burst(CLIENTS, S.perClient);
      cpuPerCreate.push((daemon.cpuMs() - cpuBefore) / Math.max(1, all.latencies.length));
      ten.push(...all.latencies);
      await revokeAll();
      const floorStarted = process.hrtime.bigint();
      await floor.run(S.perClient);
      const floorMs = Number(process.hrtime.bigint() - floorStarted) / 1e6;
      await floor.drop();
      const freshStarted = process.hrtime.bigint();
      await floor.runFresh(S.perClient);
      freshRates.push((CLIENTS * S.perClient) / (Number(process.hrtime.bigint() - freshStarted) / 1e9));
      await floor.drop();
      rates.push(all.latencies.length / (all.ms / 1000));
      floorRates.push((CLIENTS * S.perClient) / (floorMs / 1000));
      ratios.push(rates.at(-1) / floorRates.at(-1));
      log(`  round ${round + 1}/${S.rounds}: 1 client p50 ${fmtMs(median(one.latencies))}; 10 clients ${Math.round(rates.at(-1))}/s (p50 ${fmtMs(median(all.latencies))}, daemon CPU ${fmtMs(cpuPerCreate.at(-1))} a create), floor ${Math.round(floorRates.at(-1))}/s (${Math.round(freshRates.at(-1))}/s with a new connection per user); ${errors.length} errors`);
    }
  } finally {
    await revokeAll().catch((error) => errors.push(`revoke: ${error.message}`));
    await floor.drop().catch(() => undefined);
    await floor.close();
  }
  const rss = daemon.rssKiB();
  agent.destroy();
  await daemon.stop();

  const latencyRow = (samples, many) => ({
    measured: `p50 ${fmtMs(median(samples))}, p99 ${fmtMs(quantile(samples, 0.99))}`,
    floor: '—',
    ratio: '—',
    runs: String(samples.length),
    met: errors.length === 0 && samples.length > 0,
    note: [
      `${many === 1 ? '1 client, one request at a time' : `${many} clients at once, each one request at a time`}; SQLite store, PostgreSQL target; p25-p75 ${fmtMs(quantile(samples, 0.25))}-${fmtMs(quantile(samples, 0.75))}, max ${fmtMs(Math.max(...samples))}`,
      errors.length ? `${errors.length} failed requests (${errors[0]})` : undefined,
    ].filter(Boolean).join('; '),
  });
  const out = {
    '13a': latencyRow(single, 1),
    '13b': latencyRow(ten, CLIENTS),
    '13c': {
      measured: `${Math.round(median(rates))} leases/s`,
      floor: `\`bench/floor-api.mjs\`, 10 warm pg connections: ${Math.round(median(floorRates))} users/s`,
      ratio: `${median(ratios).toFixed(2)}x`,
      runs: String(ratios.length),
      met: median(ratios) >= 0.7 && errors.length === 0,
      note: `${n(CLIENTS * S.perClient)} creates a round, rounds paired; ratio = API rate / floor rate (higher is better); the floor retried ${n(floor.retries())} transactions on "tuple concurrently updated"; the floor with a new connection per user, as sy opens one per lease: ${Math.round(median(freshRates))}/s; the daemon's CPU (user + system) ${fmtMs(median(cpuPerCreate))} a create; its VmHWM ${(rss / 1024).toFixed(1)} MiB`,
    },
  };

  // ------------------------------------------------------------ 13d: the CLI in client mode, over TLS
  const tlsDaemon = await startDaemon(['--tls-cert', f('server.pem'), '--tls-key', f('server.key')]);
  const made = [];
  try {
    const clientEnv = (client) => {
      const env = { ...store.env, SY_SERVER: tlsDaemon.url, SY_CLIENT_ID: client.name, SY_PRIVATE_KEY: client.pem, SY_CA_CERT: f('ca.pem') };
      delete env.SY_HOME;
      delete env.SY_MASTER_KEY;
      delete env.SY_NO_SWEEP;
      return env;
    };
    const [cliClient, floorClient] = clients.slice(CLIENTS);
    const settle = (client) => (r) => {
      const lease = JSON.parse(r.stdout);
      if (!lease.lease_id || !lease.username?.startsWith(PREFIX)) throw new Error(`unexpected lease output: ${r.stdout.slice(0, 200)}`);
      made.push({ id: lease.lease_id, client });
    };
    const r = await interleave(
      [
        { name: 'floor', command: NODE, args: [join(ROOT, 'bench', 'floor-https.mjs'), PATH], env: clientEnv(floorClient), settle: settle(floorClient) },
        { name: 'cli', command: NODE, args: [SY, 'dynamic', 'lease', 'create', '--path', PATH], env: clientEnv(cliClient), settle: settle(cliClient) },
      ],
      measureOpts(CFG.timedRuns),
    );
    out['13d'] = ratioRow(r, 'cli', 'floor', '`bench/floor-https.mjs` (node:crypto JWT, node:https POST)', 1.3, { note: 'HTTPS to a `sy daemon --listen --tls-cert` on loopback, SY_CA_CERT; no SY_HOME or master key in the environment' });
  } finally {
    // Every lease of 13d goes through the API too.
    for (const { id, client } of made) {
      const status = await httpsDelete(`${tlsDaemon.url}/api/sm/v1/dynamic/leases/${id}`, `Bearer ${await token(client, tlsDaemon.url)}`, readFileSync(f('ca.pem'))).catch((error) => error.message);
      if (status !== 204) log(`  revoke of ${id} through the API: ${status}`);
    }
    await tlsDaemon.stop();
  }
  rmSync(tlsDir, { recursive: true, force: true });
  return out;
}

function readProc(file) {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** DELETE over HTTPS with a CA of our own (fetch has no option for one); resolves with the status. */
function httpsDelete(url, authorization, ca) {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'DELETE', ca, headers: { authorization } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
    req.end();
  });
}
