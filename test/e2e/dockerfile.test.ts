/**
 * The Dockerfile builds, without Docker (this machine has no engine): its build stage's
 * steps run on a clean copy of the repository (the tracked files less .dockerignore, as the
 * build context), then the files its runtime stage copies are put in a second directory and
 * sy runs from there alone, as the image's user, with no HOME.
 *
 * The build runs twice, side by side: in full with the machine's npm, and with the other
 * npm major (10 is what node:20 images bundle; 11 is what this machine has) with install
 * scripts off (`npm_config_ignore_scripts`), which leaves out only the ~75 s compilation of
 * better-sqlite3. What differs between npm majors is what `npm ci` and `npm prune` put in
 * node_modules, and both passes check that. The apt-get step is not run: its packages must
 * already be installed here (python3, make, g++), which the test checks. npm works from the
 * local cache where it can (`npm_config_prefer_offline`); it reaches only the npm registry.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { execa } from 'execa';
import { freshKey, ROOT } from '../helpers/cli.js';
import { makeContext, parseDockerfile, runStage, type StageResult } from '../helpers/dockerfile.js';

const stages = parseDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));
const buildStage = stages.find((s) => s.name === 'build')!;
const runtimeStage = stages[stages.length - 1];
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
const machineNpm = execFileSync('npm', ['--version'], { encoding: 'utf8' }).trim();
const otherNpm = machineNpm.startsWith('10.') ? '11' : '10';
/** The image's `USER node` is uid 1000 in the node images. */
const IMAGE_UID = 1000;
const asRoot = process.getuid?.() === 0;

/** PATH without the node_modules/.bin directories `npm test` puts in front of it. */
const systemPath = (process.env.PATH ?? '/usr/bin:/bin').split(':').filter((dir) => !dir.includes('node_modules')).join(':');

/**
 * The build steps' environment: the machine's (its proxy and CA settings reach the registry
 * as a builder's would), less what jest and `npm test` add and sy's own variables.
 */
function buildEnv(npmBin?: string, extra: Record<string, string> = {}): Record<string, string> {
  const inherited = Object.entries(process.env).filter(
    (entry): entry is [string, string] => entry[1] !== undefined && !/^(npm_|SY_|NODE_OPTIONS$|NODE_ENV$|JEST_)/i.test(entry[0]),
  );
  return {
    ...Object.fromEntries(inherited),
    PATH: npmBin ? `${npmBin}:${systemPath}` : systemPath,
    HOME: homedir(),
    npm_config_prefer_offline: 'true',
    npm_config_audit: 'false',
    npm_config_fund: 'false',
    npm_config_update_notifier: 'false',
    ...extra,
  };
}

/** The top-level packages a production install holds: the lock's non-dev, non-optional ones. */
function productionPackages(): string[] {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean; optional?: boolean }> };
  return Object.entries(lock.packages)
    .filter(([path, entry]) => /^node_modules\/(@[^/]+\/)?[^/]+$/.test(path) && !entry.dev && !entry.optional)
    .map(([path]) => path.slice('node_modules/'.length))
    .sort();
}

function installedPackages(nodeModules: string): string[] {
  const names: string[] = [];
  for (const entry of readdirSync(nodeModules)) {
    if (entry.startsWith('.')) continue;
    if (entry.startsWith('@')) for (const inner of readdirSync(join(nodeModules, entry))) names.push(`${entry}/${inner}`);
    else names.push(entry);
  }
  return names.sort();
}

interface Image {
  build: StageResult;
  runtime: StageResult;
  /** A directory on PATH where the entrypoint is linked, as the runtime stage's RUN links it. */
  bin: string;
}

let base: string;
let full: Image;
let other: Image;

/** The runtime stage from the build's root; its RUN steps are not run, but the entrypoint link they make is. */
async function image(dir: string, context: string, npmBin: string | undefined, extra: Record<string, string>): Promise<Image> {
  const env = buildEnv(npmBin, extra);
  const build = await runStage(buildStage, { context, root: join(dir, 'build'), env, runSteps: true });
  const runtime = await runStage(runtimeStage, { context, root: join(dir, 'runtime'), stages: { build }, env, runSteps: false });
  const entry = runtime.entrypoint?.[0] ?? '';
  const bin = join(dir, 'usr-local-bin');
  mkdirSync(bin);
  const link = runtime.skipped.map(({ step }) => new RegExp(`ln -s (\\S+) /usr/local/bin/${entry}\\b`).exec(step.args)).find(Boolean);
  if (link) symlinkSync(join(runtime.root, posix.normalize(link[1])), join(bin, entry));
  return { build, runtime, bin };
}

beforeAll(async () => {
  base = mkdtempSync(join(tmpdir(), 'sy-dockerfile-'));
  chmodSync(base, 0o755);
  const context = join(base, 'context');
  makeContext(ROOT, context);
  const otherDir = join(base, `npm-${otherNpm}`);
  const passes = [
    (async () => {
      mkdirSync(join(base, 'full'));
      full = await image(join(base, 'full'), context, undefined, {});
    })(),
    (async () => {
      mkdirSync(otherDir);
      await execa('npm', ['install', '--prefix', join(otherDir, 'npm'), '--no-package-lock', `npm@${otherNpm}`], { env: buildEnv(), extendEnv: false, stdin: 'ignore' });
      other = await image(otherDir, context, join(otherDir, 'npm', 'node_modules', '.bin'), { npm_config_ignore_scripts: 'true' });
    })(),
  ];
  // Both run to the end before a failure is reported, so neither leaves a process behind.
  const failed = (await Promise.allSettled(passes)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  for (const [label, img] of [[`npm ${machineNpm}`, full], [`npm ${otherNpm}, no scripts`, other]] as const) {
    console.log(`build stage with ${label}: ${img.build.timings.map(({ step, ms }) => `line ${step.line} ${(ms / 1000).toFixed(1)} s`).join(', ')}`);
  }
}, 900_000);

afterAll(() => {
  if (base) rmSync(base, { recursive: true, force: true });
});

/** Runs the image's entrypoint from PATH with only the image's ENV and `env`, as its user. */
async function entrypoint(img: Image, args: string[], env: Record<string, string> = {}) {
  const result = await execa(img.runtime.entrypoint![0], args, {
    cwd: join(img.runtime.root, img.runtime.workdir),
    env: { PATH: `${img.bin}:${systemPath}`, ...img.runtime.env, ...env },
    extendEnv: false,
    reject: false,
    stdin: 'ignore',
    timeout: 30_000,
    ...(asRoot ? { uid: IMAGE_UID, gid: IMAGE_UID } : {}),
  });
  return { exitCode: result.exitCode, stdout: String(result.stdout), stderr: String(result.stderr) };
}

describe(`the Dockerfile's steps on a clean copy (npm ${machineNpm}; npm ${otherNpm} without install scripts)`, () => {
  test('the build stage runs every step but apt-get, whose packages are installed here, and bundles sy', () => {
    for (const img of [full, other]) {
      expect(img.build.skipped.map(({ reason }) => reason)).toEqual([expect.stringMatching(/^apt-get: .+ already installed$/)]);
      for (const file of ['dist/sy.cjs', 'dist/vendor/pg.cjs', 'dist/vendor/mysql2.cjs']) {
        expect(existsSync(join(img.build.root, img.build.workdir, file))).toBe(true);
      }
    }
  });

  test('the runtime stage carries the production dependencies only: no keytar, no dev tools, but the SQLite addon', () => {
    const expected = productionPackages();
    expect(expected).toContain('better-sqlite3');
    expect(expected).not.toContain('keytar');
    for (const img of [full, other]) {
      const nodeModules = join(img.runtime.root, img.runtime.workdir, 'node_modules');
      expect(installedPackages(nodeModules)).toEqual(expected);
    }
    expect(existsSync(join(full.runtime.root, full.runtime.workdir, 'node_modules/better-sqlite3/build/Release/better_sqlite3.node'))).toBe(true);
  });

  test('the entrypoint is sy, linked onto PATH, and prints the version from the runtime files alone', async () => {
    for (const img of [full, other]) {
      expect(img.runtime.entrypoint).toEqual(['sy']);
      expect(existsSync(join(img.bin, 'sy'))).toBe(true);
      expect(await entrypoint(img, ['--version'])).toMatchObject({ exitCode: 0, stdout: pkg.version });
    }
  });

  test('as the image user with no HOME, sy init makes a store with the key from SY_MASTER_KEY, and the store works', async () => {
    expect(full.runtime.user).toBe('node');
    const home = join(base, 'sy-home');
    mkdirSync(home, { mode: 0o700 });
    if (asRoot) chownSync(home, IMAGE_UID, IMAGE_UID);
    const env = { SY_HOME: join(home, 'store'), SY_MASTER_KEY: freshKey(), SY_NO_SWEEP: '1' };
    const init = await entrypoint(full, ['init'], env);
    expect(init).toMatchObject({ exitCode: 0, stdout: expect.any(String) });
    const data = JSON.stringify({ host: 'db.example', port: 5432, username: 'admin', password: 'not-a-real-password' });
    const created = await entrypoint(full, ['secret', 'create', 'db:postgresql:root', '--attributes', '{"type":"postgresql"}', '--data', data], env);
    expect({ exitCode: created.exitCode, stderr: created.stderr }).toEqual({ exitCode: 0, stderr: '' });
    expect(await entrypoint(full, ['secret', 'read', 'db:postgresql:root', '--filter', 'data.host'], env)).toMatchObject({ exitCode: 0, stdout: 'db.example' });
    // A wrong key changes nothing and says so (the store really is sealed with the key).
    expect((await entrypoint(full, ['secret', 'read', 'db:postgresql:root'], { ...env, SY_MASTER_KEY: freshKey() })).exitCode).toBe(4);
  });
});
