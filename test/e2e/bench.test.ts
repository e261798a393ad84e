/**
 * The benchmark suite runs end to end in quick mode (3 runs, small sizes) against the
 * machine's PostgreSQL (127.0.0.1:5432, postgres, trust) and MariaDB (127.0.0.1:3306, root):
 * it exits 0 and prints a table with every row. Nothing here looks at a timing: benchmarks
 * measure, tests decide, and a busy CI machine must not fail the build.
 */
import { execa } from 'execa';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../helpers/cli.js';

/** Each row's id and a piece of its label (sizes differ between quick and full mode). */
const ROWS: [string, string][] = [
  ['1a', '`sy --version`'],
  ['1b', '`sy --help`'],
  ['2a', '`sy secret read <static path>`'],
  ['2b', 'pre-command sweep check on'],
  ['3a', '`sy dynamic lease create` (PostgreSQL)'],
  ['3b', '`sy dynamic lease create` (MariaDB)'],
  ['4a', '`sy dynamic lease revoke <id>` (PostgreSQL)'],
  ['4b', '`sy dynamic lease revoke <id>` (MariaDB)'],
  ['5a', 'expired leases (PostgreSQL)'],
  ['5b', 'expired leases (MariaDB)'],
  ['6a', '`sy dynamic lease create` (PostgreSQL), ledger of'],
  ['6b', '`sy dynamic lease list --limit 100`, ledger of'],
  ['6c', '`sy dynamic lease list --all --limit 100`'],
  ['6d', '`sy dynamic lease list --limit 1000` vs `--limit 100`'],
  ['7', 'concurrent `sy dynamic lease create` (PostgreSQL)'],
  ['8a', 'peak RSS of `sy dynamic lease create` (PostgreSQL)'],
  ['8b', 'peak RSS of `sy dynamic lease create` (MariaDB)'],
  ['8c', 'peak RSS of `sy daemon'],
  ['9', 'with the PostgreSQL store, vs with the SQLite store'],
  ['10a', 'p50 delay after expiry'],
  ['10b', 'p99 delay after expiry'],
  ['10c', 'revocations/s of the pool of 3 vs one daemon alone'],
  ['10d', 'duplicate revocations'],
  ['11', 'active leases in the shared store'],
  ['12', 'revocation while 3 other targets hang'],
  ['13a', 'API lease create latency, 1 client'],
  ['13b', 'API lease create latency, 10 concurrent clients'],
  ['13c', 'API lease creates/s, 10 concurrent clients'],
  ['13d', '`sy dynamic lease create` in client mode'],
  ['14a', '`sy agent` RSS through rotations'],
  ['14b', '`sy agent`: new lease to the file written'],
];

describe('npm run bench -- --quick', () => {
  test('runs every scenario, prints every row and exits 0', async () => {
    const benchmarks = join(ROOT, 'BENCHMARKS.md');
    const before = existsSync(benchmarks) ? statSync(benchmarks).mtimeMs : undefined;
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.NODE_OPTIONS;
    const result = await execa(process.execPath, [join(ROOT, 'bench/run.mjs'), '--quick'], {
      cwd: ROOT,
      env,
      extendEnv: false,
      reject: false,
      stdin: 'ignore',
      timeout: 340_000,
    });
    expect({ exitCode: result.exitCode, stderr: result.exitCode === 0 ? '' : String(result.stderr).slice(-3000) }).toEqual({ exitCode: 0, stderr: '' });

    const lines = String(result.stdout).split('\n');
    for (const [id, label] of ROWS) {
      const row = lines.find((line) => line.startsWith(`| ${id} `));
      expect({ id, row }).toEqual({ id, row: expect.stringContaining(label) });
      // A row that could not be measured says so; whether a target is met is not a test.
      const cells = row!.split(' | ').map((cell) => cell.trim());
      expect({ id, result: cells[6] }).toEqual({ id, result: expect.stringMatching(/^(met|\*\*missed\*\*)$/) });
    }
    // Quick mode never replaces the real figures.
    expect(existsSync(benchmarks) ? statSync(benchmarks).mtimeMs : undefined).toBe(before);
  }, 360_000);
});
