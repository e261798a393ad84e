/**
 * A Dockerfile's steps run without Docker, for test/e2e/dockerfile.test.ts: the machine has
 * no Docker engine, but what breaks an image build here is what npm, tsc and esbuild do with
 * a clean copy of the repository, and that runs the same on the host.
 *
 * A stage's root file system is a temp directory: WORKDIR and COPY destinations land under
 * it, RUN lines run with `sh -c` (as Docker's shell form does) in the work directory. What
 * would touch the host itself is not run but reported: `apt-get` steps (checked instead:
 * every package they install must already be installed here) and, in any other step, a
 * command naming an absolute path (refused, so a new step cannot write outside the temp
 * directories unnoticed).
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { basename, join, posix } from 'node:path';
import { execa } from 'execa';

export interface Instruction {
  op: string;
  args: string;
  line: number;
}

export interface Stage {
  from: string;
  name?: string;
  steps: Instruction[];
}

/** Instructions by stage: continuation lines joined, comments (also inside a continuation) and blank lines dropped. */
export function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i + 1;
    let line = lines[i].trim();
    if (line === '' || line.startsWith('#')) continue;
    while (line.endsWith('\\')) {
      line = line.slice(0, -1);
      i++;
      while (i < lines.length && lines[i].trim().startsWith('#')) i++;
      if (i >= lines.length) break;
      line += ` ${lines[i].trim()}`;
    }
    const match = /^(\S+)\s*(.*)$/.exec(line)!;
    const op = match[1].toUpperCase();
    const args = match[2].replace(/\s+/g, ' ').trim();
    if (op === 'FROM') {
      const from = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      if (!from) throw new Error(`Dockerfile line ${start}: cannot read FROM ${args}`);
      stages.push({ from: from[1], name: from[2], steps: [] });
    } else {
      if (stages.length === 0) throw new Error(`Dockerfile line ${start}: ${op} before FROM`);
      stages[stages.length - 1].steps.push({ op, args, line: start });
    }
  }
  return stages;
}

/** `KEY=value KEY2=value2` (ENV's form used here; quotes are not handled and refused). */
export function parseEnv(args: string): Record<string, string> {
  if (/["']/.test(args) || !args.includes('=')) throw new Error(`ENV ${args}: only unquoted KEY=value pairs are supported here`);
  return Object.fromEntries(args.split(' ').map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]));
}

/** COPY [--from=STAGE] SRC... DEST; other flags are refused rather than ignored. */
export function parseCopy(args: string): { from?: string; sources: string[]; dest: string } {
  const words = args.split(' ');
  let from: string | undefined;
  while (words[0]?.startsWith('--')) {
    const flag = words.shift()!;
    if (flag.startsWith('--from=')) from = flag.slice('--from='.length);
    else throw new Error(`COPY ${flag} is not supported here`);
  }
  if (words.length < 2 || words[0].startsWith('[')) throw new Error(`COPY ${args}: expected SRC... DEST`);
  return { from, sources: words.slice(0, -1), dest: words[words.length - 1] };
}

/**
 * The build context: the files git tracks (as `git archive` would give them, but from the
 * work tree, so an uncommitted Dockerfile change is what gets tested), less what
 * .dockerignore names. Only plain patterns are supported; anything else is refused.
 */
export function makeContext(repo: string, dir: string): void {
  const files = execFileSync('git', ['ls-files', '-z'], { cwd: repo, encoding: 'utf8' }).split('\0').filter(Boolean);
  const ignorePath = join(repo, '.dockerignore');
  const patterns = existsSync(ignorePath)
    ? readFileSync(ignorePath, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))
    : [];
  const matchers = patterns.map((pattern) => {
    if (/[!?[\]\\]|\*\*/.test(pattern)) throw new Error(`.dockerignore pattern ${pattern} is not supported by this test`);
    const source = pattern.replace(/^\/+|\/+$/g, '').split('*').map((part) => part.replace(/[.+^${}()|]/g, '\\$&')).join('[^/]*');
    return new RegExp(`^${source}(/|$)`);
  });
  for (const file of files) {
    if (matchers.some((m) => m.test(file))) continue;
    const source = join(repo, file);
    if (!existsSync(source)) continue; // deleted in the work tree, not yet committed
    mkdirSync(join(dir, posix.dirname(file)), { recursive: true });
    cpSync(source, join(dir, file), { verbatimSymlinks: true });
  }
}

export interface StageResult {
  /** The stage's root file system. */
  root: string;
  workdir: string;
  env: Record<string, string>;
  /** Steps not run here, with the reason. */
  skipped: { step: Instruction; reason: string }[];
  /** How long each RUN step took. */
  timings: { step: Instruction; ms: number }[];
  entrypoint?: string[];
  cmd?: string[];
  user?: string;
}

export interface RunStageOptions {
  context: string;
  root: string;
  /** Root file systems of the stages already built, by name, for COPY --from. */
  stages?: Record<string, StageResult>;
  /** Environment of the RUN steps (the image's own variables are added by ENV steps). */
  env: Record<string, string>;
  /** Whether RUN steps run at all (a runtime stage's RUN steps set up system paths). */
  runSteps: boolean;
  timeout?: number;
}

const installed = (pkg: string): boolean => {
  try {
    return execFileSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).includes('install ok installed');
  } catch {
    return false;
  }
};

/** The packages an `apt-get install` step installs, or undefined when the step is not one. */
export function aptPackages(command: string): string[] | undefined {
  if (!/^apt-get\s/.test(command)) return undefined;
  const install = /apt-get install ((?:[^&;|])*)/.exec(command);
  return install ? install[1].split(' ').filter((word) => word !== '' && !word.startsWith('-')) : [];
}

/** Docker's rule: a relative destination is relative to WORKDIR; a trailing slash (or several sources) means a directory. */
function copyInto(sources: string[], sourceRoot: (source: string) => string, dest: string, root: string, workdir: string): void {
  const target = join(root, posix.resolve(workdir, dest));
  const intoDir = dest.endsWith('/') || sources.length > 1;
  for (const source of sources) {
    const from = sourceRoot(source);
    if (!existsSync(from)) throw new Error(`COPY ${source}: not found (${from})`);
    if (statSync(from).isDirectory()) {
      mkdirSync(target, { recursive: true });
      for (const entry of readdirSync(from)) cpSync(join(from, entry), join(target, entry), { recursive: true, verbatimSymlinks: true });
    } else {
      const file = intoDir ? join(target, basename(from)) : target;
      mkdirSync(intoDir ? target : join(file, '..'), { recursive: true });
      cpSync(from, file, { verbatimSymlinks: true });
    }
  }
}

export async function runStage(stage: Stage, options: RunStageOptions): Promise<StageResult> {
  const result: StageResult = { root: options.root, workdir: '/', env: {}, skipped: [], timings: [] };
  rmSync(options.root, { recursive: true, force: true });
  mkdirSync(options.root, { recursive: true });
  for (const step of stage.steps) {
    const where = `Dockerfile line ${step.line} (${step.op} ${step.args.slice(0, 60)})`;
    switch (step.op) {
      case 'WORKDIR':
        result.workdir = posix.resolve(result.workdir, step.args);
        mkdirSync(join(options.root, result.workdir), { recursive: true });
        break;
      case 'ENV':
        Object.assign(result.env, parseEnv(step.args));
        break;
      case 'COPY': {
        const { from, sources, dest } = parseCopy(step.args);
        const source = from ? options.stages?.[from] : undefined;
        if (from && !source) throw new Error(`${where}: stage ${from} was not built`);
        const sourceRoot = source
          ? (path: string) => join(source.root, posix.resolve(source.workdir, path))
          : (path: string) => join(options.context, posix.normalize(path));
        copyInto(sources, sourceRoot, dest, options.root, result.workdir);
        break;
      }
      case 'RUN': {
        const packages = aptPackages(step.args);
        if (packages) {
          const missing = packages.filter((pkg) => !installed(pkg));
          if (missing.length > 0) throw new Error(`${where} installs ${missing.join(' ')}, not installed on this machine: apt-get install ${missing.join(' ')}`);
          result.skipped.push({ step, reason: `apt-get: ${packages.join(' ')} already installed` });
          break;
        }
        if (!options.runSteps) {
          result.skipped.push({ step, reason: 'a runtime-stage RUN sets up system paths' });
          break;
        }
        // A word starting with / would reach the host's own file system.
        if (/(^|[\s=])\/[A-Za-z]/.test(step.args)) throw new Error(`${where} names an absolute path; this test does not run such a step on the host`);
        const started = Date.now();
        const run = await execa('sh', ['-c', step.args], {
          cwd: join(options.root, result.workdir),
          env: { ...options.env, ...result.env },
          extendEnv: false,
          reject: false,
          stdin: 'ignore',
          all: true,
          timeout: options.timeout ?? 600_000,
        });
        if (run.exitCode !== 0) throw new Error(`${where} exited ${run.exitCode}:\n${String(run.all).slice(-4000)}`);
        result.timings.push({ step, ms: Date.now() - started });
        break;
      }
      case 'USER':
        result.user = step.args;
        break;
      case 'ENTRYPOINT':
        result.entrypoint = JSON.parse(step.args);
        break;
      case 'CMD':
        result.cmd = JSON.parse(step.args);
        break;
      default:
        throw new Error(`${where}: ${step.op} is not supported by this test`);
    }
  }
  return result;
}
