// Row 12 of bench/run.mjs: revocation while other targets hang. One `sy daemon` over leases
// on the benchmark's PostgreSQL and MariaDB, expiring one after the other, while three
// other targets (two PostgreSQL, one MariaDB) accept TCP and never answer: forwarders to the
// real servers, in this process on 127.0.0.1, made silent once their leases exist. Their
// leases expire first, so the daemon is trying them (a 10 s connect timeout, then retries
// with backoff) the whole time the healthy leases expire. The figure is the healthy leases'
// delay after expiry: the time of each revocation's audit line - the ledger's expiry.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { join } from 'node:path';

/** A TCP forwarder on 127.0.0.1 that `silent()` turns into a server that accepts and never answers. */
async function forwarder(targetPort, targetHost) {
  const sockets = new Set();
  let silent = false;
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('error', () => undefined);
    client.on('close', () => sockets.delete(client));
    if (silent) return;
    const upstream = net.connect(targetPort, targetHost);
    sockets.add(upstream);
    upstream.on('error', () => client.destroy());
    upstream.on('close', () => {
      sockets.delete(upstream);
      client.destroy();
    });
    client.on('close', () => upstream.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    port: server.address().port,
    silence() {
      silent = true;
      for (const socket of sockets) socket.destroy();
    },
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * Runs a child without blocking this process: the forwarders live in its event loop, so
 * anything that connects through them (a recipe's check, issuing leases) must not be spawnSync.
 */
function runChild(command, args, env, input) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(command, args, { env, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', (error) => resolve({ status: null, stdout, stderr: String(error), ms: Date.now() - started }));
    child.on('close', (status) => resolve({ status, stdout, stderr, ms: Date.now() - started }));
    if (input !== undefined) child.stdin.end(input);
  });
}

/** Registers the row; `ctx` carries run.mjs's helpers and settings. */
export function isolationRows(ctx) {
  const { group, label, CFG, PG, MY, DB, PREFIX, ROOT, NODE, SY, sy, quantile, fmtMs, sleep, log, n, daemons, newStore } = ctx;
  const ISSUER = join(ROOT, 'bench', 'issue-leases.mjs');

  label('12', 'revocation while 3 other targets hang: N healthy leases expiring over S s, p99 delay after expiry', '<= 2 s');
  group(12, ['12'], async () => {
    const store = newStore('isolation', { pgTarget: true, myTarget: true });
    const create = async (body) => {
      const created = await runChild(NODE, [SY, 'secret', 'create', '--body', '-'], store.env, JSON.stringify(body));
      if (created.status !== 0) throw new Error(`secret create ${body.path}: ${created.stderr.trim().slice(0, 300)}`);
    };
    const dead = [];
    for (const [i, engine, server] of [[1, 'postgresql', PG], [2, 'postgresql', PG], [3, 'mariadb', MY]]) {
      const proxy = await forwarder(server.port, server.host);
      dead.push(proxy);
      await create({ path: `bench:dead${i}:root`, attributes: { type: engine }, data: { host: '127.0.0.1', port: proxy.port, username: server.user, password: server.password, database: DB } });
      await create({
        path: `bench:dead${i}:dyn`,
        attributes: { linkConfig: { linkType: 'dynamic', linkedSecret: `bench:dead${i}:root` }, grantPermissions: { what: 'SELECT', where: engine === 'postgresql' ? 'public.items' : `${DB}.*` }, ttl: 600, userPrefix: PREFIX },
        data: {},
      });
    }
    const issue = async (args) => {
      const issued = await runChild(NODE, [ISSUER, ...args], store.env);
      if (issued.status !== 0) throw new Error(`issuing leases: ${issued.stderr.trim().slice(0, 300)}`);
      return JSON.parse(issued.stdout);
    };

    const child = spawn(NODE, [SY, 'daemon', '--interval', '60s'], { env: store.env, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    daemons.add(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
    const problems = [];
    try {
      const deadline = Date.now() + 30_000;
      while (!out.includes('"event":"start"')) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`the daemon did not start: ${err.trim().slice(0, 300)}`);
        await sleep(100);
      }
      // Five leases per dead target (real users, made through the forwarders), expiring in 2 s; then silence.
      const deadIds = new Set();
      for (const i of [1, 2, 3]) for (const [id] of (await issue(['--path', `bench:dead${i}:dyn`, '--count', '5', '--ttl', '2', '--ids'])).leases) deadIds.add(id);
      for (const proxy of dead) proxy.silence();
      // The healthy leases: PostgreSQL and MariaDB in turn, from 3 s after they were all issued, evenly over the spread.
      const healthy = await issue(['--path', 'bench:pg:dyn', '--path', 'bench:my:dyn', '--count', String(CFG.isolationLeases), '--ttl', '3', '--spread', String(CFG.isolationSpread), '--ids', '--after-issue']);
      if (healthy.activatedAt > Math.min(...healthy.leases.map(([, at]) => at))) problems.push(`issuing took ${fmtMs(healthy.ms)}, past the first expiry`);
      log(`  ${n(CFG.isolationLeases)} healthy leases issued in ${fmtMs(healthy.ms)}; expiring over ${CFG.isolationSpread} s while 3 targets hang`);

      const revoked = () => {
        const lines = JSON.parse(sy(['audit', 'list', '--format', 'json'], store.env).stdout).data;
        const at = new Map();
        const deadFailures = [];
        for (const entry of lines) {
          if (!/(^|\.)revoke$/.test(entry.action)) continue;
          if (entry.outcome === 'success' && !at.has(entry.lease_id)) at.set(entry.lease_id, Date.parse(entry.time));
          if (entry.outcome !== 'success' && deadIds.has(entry.lease_id)) deadFailures.push(entry.error);
        }
        return { at, deadFailures };
      };
      await sleep(Math.max(0, healthy.lastExpiry - Date.now()) + 1000);
      let seen = revoked();
      const until = Date.now() + 30_000;
      while (healthy.leases.some(([id]) => !seen.at.has(id)) && Date.now() < until) {
        await sleep(1000);
        seen = revoked();
      }
      const delays = [];
      for (const [id, at] of healthy.leases) {
        if (seen.at.has(id)) delays.push(seen.at.get(id) - at);
        else problems.push(`healthy lease ${id} was never revoked`);
      }
      const deadRevoked = [...deadIds].filter((id) => seen.at.has(id)).length;
      if (deadRevoked) problems.push(`${deadRevoked} leases of the hanging targets were said revoked`);
      if (seen.deadFailures.length === 0) problems.push('the hanging targets were never tried');
      const p50 = quantile(delays, 0.5);
      const p99 = quantile(delays, 0.99);
      log(`  delays: p50 ${fmtMs(p50)}, p99 ${fmtMs(p99)}, max ${fmtMs(Math.max(...delays))}; ${seen.deadFailures.length} failed revocations on the hanging targets`);
      return {
        12: {
          measured: `${fmtMs(p99)} (p50 ${fmtMs(p50)}, max ${fmtMs(Math.max(...delays))})`,
          floor: '—',
          ratio: '—',
          runs: '1',
          met: p99 <= 2000 && problems.length === 0,
          note: [
            `one daemon, SQLite store; ${n(CFG.isolationLeases)} leases on PostgreSQL and MariaDB, expiring from 3 s after they were all issued, evenly over ${CFG.isolationSpread} s; 3 targets (15 leases, expired first) accept TCP and never answer: ${seen.deadFailures.length} failed revocations there (${String(seen.deadFailures[0] ?? '').slice(0, 80)}); delay = time of the revocation's audit line - the ledger's expiry`,
            problems[0],
          ].filter(Boolean).join('; '),
        },
      };
    } finally {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      const { code, signal } = await exited;
      clearTimeout(timer);
      daemons.delete(child);
      if (code !== 0) log(`  the daemon exited ${code ?? signal}: ${err.trim().slice(0, 300)}`);
      for (const proxy of dead) await proxy.close();
    }
  });
}

/** Sizes of row 12. */
export const ISOLATION_CFG = {
  quick: { isolationLeases: 40, isolationSpread: 8 },
  full: { isolationLeases: 400, isolationSpread: 40 },
};
