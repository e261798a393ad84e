// Helpers of the benchmark suite: timed spawns, medians, interleaved comparisons, tables.
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const SY = fileURLToPath(new URL('../bin/sy', import.meta.url));
export const NODE = process.execPath;

/** The environment children get: no NODE_OPTIONS (jest's would slow every start-up), no colour. */
export function childEnv(extra = {}) {
  const env = { ...process.env, NO_COLOR: '1', ...extra };
  delete env.NODE_OPTIONS;
  delete env.FORCE_COLOR;
  for (const [key, value] of Object.entries(env)) if (value === undefined) delete env[key];
  return env;
}

/** Runs a command to completion; `ms` is the wall time around the spawn. */
export function run(command, args, { env, input, cwd = ROOT } = {}) {
  const started = process.hrtime.bigint();
  const result = spawnSync(command, args, {
    env: env ?? childEnv(),
    cwd,
    encoding: 'utf8',
    input,
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    maxBuffer: 256 * 1024 * 1024,
  });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  return { ms, status: result.status, signal: result.signal, stdout: result.stdout ?? '', stderr: result.stderr ?? '', error: result.error };
}

/** The same, without blocking: for processes that must run at the same time. */
export function runAsync(command, args, { env, cwd = ROOT } = {}) {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    const child = spawn(command, args, { env: env ?? childEnv(), cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', (error) => resolve({ ms: Number(process.hrtime.bigint() - started) / 1e6, status: null, stdout, stderr: String(error) }));
    child.on('close', (status, signal) => resolve({ ms: Number(process.hrtime.bigint() - started) / 1e6, status, signal, stdout, stderr }));
  });
}

/** `node bin/sy ...` with a store's environment; throws with sy's stderr when it fails. */
export function sy(args, env, { input, check = true } = {}) {
  const result = run(NODE, [SY, ...args], { env, input });
  if (check && result.status !== 0) throw new Error(`sy ${args.join(' ')} exited ${result.status}: ${result.stderr.trim().slice(0, 500)}`);
  return result;
}

export function median(values) {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export function quantile(values, q) {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  return sorted[lo] + (sorted[Math.min(lo + 1, sorted.length - 1)] - sorted[lo]) * (pos - lo);
}

/**
 * Measures several cases interleaved (A B A B ...): warm-up rounds first, then `runs`
 * rounds in which every case runs once. Each case is {name, prepare?, command, args, env,
 * settle?}: `prepare` (untimed) returns the arguments to append, `settle` checks the output.
 * Returns {name: {times, byRound (NaN where a run failed), errors, firstError}}.
 */
export async function interleave(cases, { runs, warmup, log }) {
  const out = Object.fromEntries(cases.map((c) => [c.name, { times: [], byRound: [], errors: 0, firstError: undefined }]));
  for (let round = 0; round < warmup + runs; round++) {
    for (const c of cases) {
      const extra = c.prepare ? await c.prepare() : [];
      const result = run(c.command, [...c.args, ...extra], { env: c.env });
      let problem = result.status !== 0 ? `exit ${result.status}${result.signal ? ` (${result.signal})` : ''}: ${result.stderr.trim().slice(0, 300)}` : undefined;
      if (!problem && c.settle) {
        try {
          await c.settle(result);
        } catch (error) {
          problem = String(error?.message ?? error);
        }
      }
      if (round < warmup) continue;
      if (problem) {
        out[c.name].errors++;
        out[c.name].firstError ??= problem;
      } else {
        out[c.name].times.push(result.ms);
      }
      out[c.name].byRound.push(problem ? NaN : result.ms);
    }
    log?.(`  round ${round + 1}/${warmup + runs}${round < warmup ? ' (warm-up)' : ''}`);
  }
  return out;
}

export const fmtMs = (ms) => (Number.isFinite(ms) ? `${ms < 10 ? ms.toFixed(2) : ms.toFixed(1)} ms` : 'n/a');
export const fmtRatio = (r) => (Number.isFinite(r) ? `${r.toFixed(2)}x` : 'n/a');

/** A markdown table, columns padded so it also reads well in a terminal. */
export function markdownTable(header, rows) {
  const all = [header, ...rows].map((r) => r.map((cell) => String(cell).replace(/\|/g, '\\|')));
  const widths = header.map((_, i) => Math.max(3, ...all.map((r) => r[i].length)));
  const line = (r) => `| ${r.map((cell, i) => cell.padEnd(widths[i])).join(' | ')} |`;
  return [line(all[0]), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...all.slice(1).map(line)].join('\n');
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The median of the per-round ratios a_i / b_i: each pair ran back to back, so a change of
 * the machine's load between rounds cancels out (more robust than a ratio of two medians).
 */
export function pairedRatio(a, b) {
  const ratios = a.byRound.map((x, i) => x / b.byRound[i]).filter(Number.isFinite);
  return median(ratios);
}
