#!/usr/bin/env node
// Where a sy command spends its time: runs `node --cpu-prof <script> <args>` a few times
// (with the caller's environment: SY_HOME, SY_MASTER_KEY, ...) and prints self time by file,
// summed over the runs and divided by their number.
//
//   node bench/profile.mjs [--runs 5] [--top 15] [--by file|function] -- bin/sy secret read db:x
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const argv = process.argv.slice(2);
const dash = argv.indexOf('--');
const own = dash === -1 ? [] : argv.slice(0, dash);
const command = dash === -1 ? argv : argv.slice(dash + 1);
const flag = (name, fallback) => {
  const i = own.indexOf(name);
  return i === -1 ? fallback : own[i + 1];
};
const runs = Number(flag('--runs', '5'));
const top = Number(flag('--top', '15'));
const by = flag('--by', 'file');
const root = fileURLToPath(new URL('..', import.meta.url));

const dir = mkdtempSync(join(tmpdir(), 'sy-prof-'));
const env = { ...process.env };
delete env.NODE_OPTIONS;
let wall = 0;
try {
  for (let i = 0; i < runs; i++) {
    const started = process.hrtime.bigint();
    const result = spawnSync(process.execPath, ['--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-interval', '100', ...command], { env, encoding: 'utf8', cwd: root });
    wall += Number(process.hrtime.bigint() - started) / 1e6;
    if (result.status !== 0) process.stderr.write(`run ${i}: exit ${result.status}: ${result.stderr.slice(0, 300)}\n`);
  }
  const totals = new Map();
  let sampled = 0;
  for (const file of readdirSync(dir)) {
    const profile = JSON.parse(readFileSync(join(dir, file), 'utf8'));
    const self = new Map();
    // Self time of a node = its samples x the interval between them.
    const deltas = profile.timeDeltas;
    profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (deltas[i + 1] ?? deltas[i] ?? 0)));
    for (const node of profile.nodes) {
      const us = self.get(node.id) ?? 0;
      if (!us) continue;
      const { url, functionName, lineNumber } = node.callFrame;
      let key = url ? (url.startsWith('file://') ? relative(root, fileURLToPath(url)) : url) : `(${functionName || 'native'})`;
      key = key.replace(/^node_modules\/([^/]+(?:\/[^/]+)?)\/.*$/, (m, pkg) => (pkg.startsWith('@') ? `node_modules/${pkg}` : `node_modules/${pkg.split('/')[0]}`));
      if (by === 'function') key = `${functionName || '(anonymous)'} ${key}:${lineNumber + 1}`;
      totals.set(key, (totals.get(key) ?? 0) + us);
      sampled += us;
    }
  }
  const rows = [...totals.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
  process.stdout.write(`${command.join(' ')}: ${runs} runs, wall ${(wall / runs).toFixed(1)} ms/run, sampled ${(sampled / runs / 1000).toFixed(1)} ms/run\n`);
  for (const [key, us] of rows) {
    process.stdout.write(`${(us / runs / 1000).toFixed(1).padStart(7)} ms ${((100 * us) / sampled).toFixed(1).padStart(5)}%  ${key}\n`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
