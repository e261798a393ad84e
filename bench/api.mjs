// The rows of the lease API (row 12 of bench/run.mjs): a real `sy daemon --listen` over TLS
// (a throwaway CA made with openssl) on a SQLite store with the benchmark's PostgreSQL target.
// - 12a-12d: the latency of `POST /api/sm/v1/dynamic/lease` at 1 and at 10 concurrent
//   clients (keep-alive connections, one token), p50 and p99, against the floor's per-user
//   latency on warm connections;
// - 12e: leases/s through the API at 10 clients against a floor script that creates the same
//   users with the same grants (bench/floor-pg.mjs's statements) over 10 warm connections;
// - 12f: `sy dynamic lease create` in client mode (SY_SERVER, a token signed per call)
//   against bench/api-request.mjs, a minimal Node script making the same HTTPS request.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import os from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export function apiRows(ctx) {
  const { group, label, CFG, PG, DB, PREFIX, ROOT, NODE, SY, childEnv, sy, interleave, measureOpts, ratioRow, median, quantile, fmtMs, log, newStore, daemons, onCleanup } = ctx;
  const REQUEST = join(ROOT, 'bench', 'api-request.mjs');
  const perClient = CFG.apiRequests ?? 20;

  function testCa() {
    const dir = mkdtempSync(join(os.tmpdir(), 'sy-bench-ca-'));
    onCleanup(async () => rmSync(dir, { recursive: true, force: true }));
    const f = (name) => join(dir, name);
    const openssl = (args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '1', '-subj', '/CN=sy bench CA']);
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=localhost']);
    writeFileSync(f('ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
    openssl(['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.pem'), '-days', '1', '-extfile', f('ext.cnf')]);
    return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key') };
  }

  /** The store, a registered client, a listening daemon; resolves with what clients need. */
  async function serve() {
    const store = newStore('api', { pgTarget: true });
    const tls = testCa();
    const created = JSON.parse(sy(['client', 'create', 'bench-api', '--allow', 'bench:*', '--max-leases', '100000', '--format', 'json'], store.env).stdout);
    const child = spawn(NODE, [SY, 'daemon', '--listen', '127.0.0.1:0', '--tls-cert', tls.cert, '--tls-key', tls.key, '--interval', '60s'], { env: store.env, stdio: ['ignore', 'pipe', 'pipe'] });
    daemons.add(child);
    const url = await new Promise((resolve, reject) => {
      let out = '';
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (chunk) => {
        out += chunk;
        // Listening first, then the loop's start once the store is open.
        const line = out.split('\n').find((l) => l.includes('"listening"'));
        if (line && out.includes('"event":"start"')) resolve(JSON.parse(line).url.replace('127.0.0.1', 'localhost'));
      });
      child.on('exit', (code) => reject(new Error(`daemon exited ${code}`)));
      setTimeout(() => reject(new Error('the daemon did not listen within 30 s')), 30_000).unref();
    });
    const clientEnv = childEnv({ SY_SERVER: url, SY_CLIENT_ID: 'bench-api', SY_PRIVATE_KEY: created.private_key, SY_CA_CERT: tls.ca });
    for (const name of ['SY_HOME', 'SY_MASTER_KEY', 'SY_NO_SWEEP']) delete clientEnv[name];
    const token = sy(['auth', 'token', '--ttl', '15m'], clientEnv).stdout.trim();
    return { url, token, ca: readFileSync(tls.ca), caFile: tls.ca, clientEnv };
  }

  /** `clients` loops each issuing `count` leases over its own keep-alive connection; every latency, and the wall time. */
  async function load(api, clients, count) {
    const body = JSON.stringify({ path: 'bench:pg:dyn', ttl_seconds: 600 });
    const latencies = [];
    let errors = 0;
    let firstError;
    const started = process.hrtime.bigint();
    await Promise.all(Array.from({ length: clients }, async () => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: api.ca });
      for (let i = 0; i < count; i++) {
        const t0 = process.hrtime.bigint();
        const status = await new Promise((resolve) => {
          const req = request(new URL('/api/sm/v1/dynamic/lease', api.url), { method: 'POST', agent, headers: { authorization: `Bearer ${api.token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
            let text = '';
            res.on('data', (c) => (text += c));
            res.on('end', () => {
              if (res.statusCode !== 201) firstError ??= `${res.statusCode} ${text.slice(0, 200)}`;
              resolve(res.statusCode);
            });
          });
          req.on('error', (error) => {
            firstError ??= error.message;
            resolve(0);
          });
          req.end(body);
        });
        if (status === 201) latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
        else errors++;
      }
      agent.destroy();
    }));
    return { latencies, errors, firstError, ms: Number(process.hrtime.bigint() - started) / 1e6 };
  }

  /** The floor: the same users and grants as bench/floor-pg.mjs, over `connections` warm connections. */
  async function floor(connections, count) {
    const clients = await Promise.all(Array.from({ length: connections }, async () => {
      const client = new pg.Client({ ...PG, database: DB });
      client.on('error', () => undefined);
      await client.connect();
      return client;
    }));
    const id = pg.escapeIdentifier;
    const latencies = [];
    const started = process.hrtime.bigint();
    try {
      await Promise.all(clients.map(async (client) => {
        for (let i = 0; i < count; i++) {
          const t0 = process.hrtime.bigint();
          const username = `${PREFIX}${randomBytes(5).toString('hex')}_fl`;
          const expires = new Date(Date.now() + 600_000).toISOString();
          // Concurrent GRANTs on one database or schema collide ("tuple concurrently updated"):
          // retried, as sy's PostgreSQL target does.
          for (let attempt = 0; ; attempt++) {
            try {
              await client.query(`BEGIN;
                CREATE ROLE ${id(username)} WITH LOGIN PASSWORD ${pg.escapeLiteral(randomBytes(24).toString('base64url'))} VALID UNTIL ${pg.escapeLiteral(expires)};
                GRANT CONNECT ON DATABASE ${id(DB)} TO ${id(username)};
                GRANT USAGE ON SCHEMA public TO ${id(username)};
                GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${id(username)};
                COMMIT`);
              break;
            } catch (error) {
              await client.query('ROLLBACK').catch(() => undefined);
              if (attempt >= 20 || !/concurrently|deadlock|serializ/i.test(String(error.message))) throw error;
            }
          }
          latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
        }
      }));
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    }
    return { latencies, ms: Number(process.hrtime.bigint() - started) / 1e6 };
  }

  label('12a', 'API `POST /dynamic/lease` (PostgreSQL), 1 client: p50 latency', '<= 3x');
  label('12b', 'API `POST /dynamic/lease`, 1 client: p99 latency', '(report)');
  label('12c', 'API `POST /dynamic/lease`, 10 concurrent clients: p50 latency', '(report)');
  label('12d', 'API `POST /dynamic/lease`, 10 concurrent clients: p99 latency', '(report)');
  label('12e', 'API leases/s at 10 clients vs the same users and grants over 10 warm connections', '>= 0.7x');
  label('12f', '`sy dynamic lease create` as a client (SY_SERVER, TLS)', '<= 1.3x');
  group(12, ['12a', '12b', '12c', '12d', '12e', '12f'], async () => {
    const api = await serve();
    await load(api, 2, 3); // warm-up: the daemon's target connection path, TLS sessions
    await floor(2, 3);
    const one = await load(api, 1, perClient);
    const floorOne = await floor(1, perClient);
    const ten = await load(api, 10, perClient);
    const floorTen = await floor(10, perClient);
    const problems = [one, ten].filter((r) => r.errors > 0).map((r) => `${r.errors} failed requests (${r.firstError})`);
    const note = [`${perClient} leases per client`, ...problems].join('; ');
    const cell = (measured, floorText, ratio, met, extra = '') => ({ measured, floor: floorText, ratio, runs: '1', met: met && problems.length === 0, note: [note, extra].filter(Boolean).join('; ') });
    const p = (r, q) => quantile(r.latencies, q);
    const apiRate = (ten.latencies.length / ten.ms) * 1000;
    const floorRate = (floorTen.latencies.length / floorTen.ms) * 1000;
    const r12a = p(one, 0.5) / p(floorOne, 0.5);

    // 12f: the CLI in client mode against the minimal HTTPS script, interleaved.
    const requestEnv = childEnv({ BENCH_API: JSON.stringify({ url: api.url, token: api.token, ca: api.caFile, body: { path: 'bench:pg:dyn', ttl_seconds: 600 } }) });
    const created = (r) => {
      if (!JSON.parse(r.stdout).username?.startsWith(PREFIX)) throw new Error(`no lease: ${r.stdout.slice(0, 200)}`);
    };
    const cli = await interleave(
      [
        { name: 'floor', command: NODE, args: [REQUEST], env: requestEnv, settle: created },
        { name: 'cli', command: NODE, args: [SY, 'dynamic', 'lease', 'create', '--path', 'bench:pg:dyn', '--ttl', '600'], env: api.clientEnv, settle: created },
      ],
      measureOpts(CFG.timedRuns),
    );
    log(`  API: 1 client p50 ${fmtMs(p(one, 0.5))}, 10 clients ${Math.round(apiRate)}/s vs floor ${Math.round(floorRate)}/s`);
    return {
      '12a': cell(fmtMs(p(one, 0.5)), `floor p50 ${fmtMs(p(floorOne, 0.5))}`, `${r12a.toFixed(2)}x`, r12a <= 3),
      '12b': cell(fmtMs(p(one, 0.99)), `floor p99 ${fmtMs(p(floorOne, 0.99))}`, `${(p(one, 0.99) / p(floorOne, 0.99)).toFixed(2)}x`, true),
      '12c': cell(fmtMs(p(ten, 0.5)), `floor p50 ${fmtMs(p(floorTen, 0.5))}`, `${(p(ten, 0.5) / p(floorTen, 0.5)).toFixed(2)}x`, true),
      '12d': cell(fmtMs(p(ten, 0.99)), `floor p99 ${fmtMs(p(floorTen, 0.99))}`, `${(p(ten, 0.99) / p(floorTen, 0.99)).toFixed(2)}x`, true),
      '12e': cell(`${Math.round(apiRate)}/s`, `floor: ${Math.round(floorRate)}/s`, `${(apiRate / floorRate).toFixed(2)}x`, apiRate / floorRate >= 0.7),
      '12f': ratioRow(cli, 'cli', 'floor', '`bench/api-request.mjs`', 1.3, { note: 'each sy call signs its own token; the floor reuses one' }),
    };
  });
}
