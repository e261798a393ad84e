// Row 14 of `npm run bench`: `sy agent` kept running through many rotations compressed in
// time (leases of 2 s with a 4 s max TTL: a renewal and a rotation every few seconds, where a
// real service would see one an hour or less). It samples the agent's RSS from /proc every
// second and reads its JSON event log: each new lease's `issued` event to the `written` event
// of the file is the gap an application waits for fresh credentials.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NODE, SY, fmtMs, quantile, sleep, sy } from './lib.mjs';

function rssMiB(pid) {
  try {
    const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
    return Number.isFinite(kb) ? kb / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Runs the agent on `store` (with a PostgreSQL target) for `seconds`, then SIGTERM. */
export async function agentRows(store, { seconds, prefix, log }) {
  sy(['secret', 'create', '--body', '-'], store.env, {
    input: JSON.stringify({
      path: 'bench:pg:agent',
      attributes: { linkConfig: { linkType: 'dynamic', linkedSecret: 'bench:pg:root' }, grantPermissions: { what: 'SELECT', where: 'public.*' }, ttl: 2, maxTtl: 4, userPrefix: prefix },
      data: {},
    }),
  });
  const file = join(store.home, 'agent.json');
  const child = spawn(NODE, [SY, 'agent', '--path', 'bench:pg:agent', '--output', file, '--log-format', 'json', '--drain', '1s'], {
    env: store.env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const samples = [];
  const started = Date.now();
  while (Date.now() - started < seconds * 1000 && child.exitCode === null) {
    await sleep(1000);
    const rss = rssMiB(child.pid);
    if (rss !== undefined) samples.push(rss);
  }
  child.kill('SIGTERM');
  const status = await exited;
  if (status !== 0) throw new Error(`sy agent exited ${status}: ${stderr.slice(-400)}`);
  const events = stderr.trim().split('\n').map((line) => JSON.parse(line));
  const issuedAt = new Map(events.filter((e) => e.event === 'issued').map((e) => [e.lease_id, Date.parse(e.time)]));
  const gaps = events.filter((e) => e.event === 'written').map((e) => Date.parse(e.time) - issuedAt.get(e.lease_id)).filter(Number.isFinite);
  const rotations = events.filter((e) => e.event === 'rotating').length;
  const renewals = events.filter((e) => e.event === 'renewed').length;
  const failures = events.filter((e) => e.event === 'retry').length;
  log(`agent: ${rotations} rotations, ${renewals} renewals, ${failures} retries, ${samples.length} RSS samples`);
  // Flat: the mean of the last tenth against the mean of the tenth after the first (warm-up) tenth.
  const tenth = Math.max(1, Math.floor(samples.length / 10));
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const early = mean(samples.slice(tenth, 2 * tenth));
  const late = mean(samples.slice(-tenth));
  const peak = Math.max(...samples);
  const growth = late / early - 1;
  const p99 = quantile(gaps, 0.99);
  return {
    '14a': {
      measured: `peak ${peak.toFixed(1)} MiB; ${early.toFixed(1)} → ${late.toFixed(1)} MiB`,
      floor: '',
      ratio: `${(growth * 100).toFixed(1)}% growth`,
      runs: `${samples.length}`,
      met: peak <= 80 && growth <= 0.1 && failures === 0,
      note: `${rotations} rotations and ${renewals} renewals in ${seconds} s${failures ? `; ${failures} retries` : ''}`,
    },
    '14b': {
      measured: `p99 ${fmtMs(p99)}`,
      floor: '',
      ratio: `p50 ${fmtMs(quantile(gaps, 0.5))}`,
      runs: `${gaps.length}`,
      met: Number.isFinite(p99) && p99 <= 100,
      note: 'from the issued event to the written event of the same lease (render, write, fsync, rename)',
    },
  };
}
