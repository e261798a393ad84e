import { readFileSync } from 'node:fs';
import { SyError, usageError } from './errors.js';
import { type Paint, paint } from './io/color.js';
import { processStreams, type IOStreams } from './io/streams.js';

/**
 * The entry point: parses, runs, and holds the only top-level catch. It is the one place
 * that turns an error into an exit status; commands only throw.
 */
/** Commands that sweep on their own terms, or must read the store as it is (`store copy`). */
const NO_PRE_SWEEP = new Set(['sweep', 'daemon', 'init', 'copy']);

/** `streams` defaults to the process's; a test passes its own (test/helpers/context.ts). */
export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env, streams?: IOStreams): Promise<number> {
  // Everything sy creates (store, WAL, audit log, --output files) is private to the user.
  process.umask(0o077);
  const version = packageVersion();
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
    (streams?.stdout ?? process.stdout).write(`${version}\n`);
    return 0;
  }
  if (argv.length === 1 && (argv[0] === '--help' || argv[0] === '-h') && typeof SY_ROOT_HELP === 'string') {
    (streams?.stdout ?? process.stdout).write(SY_ROOT_HELP);
    return 0;
  }
  const io = streams ?? processStreams(env);
  io.debug = argv.includes('--debug');
  const { createContext } = await import('./cli/context.js');
  const ctx = createContext(io, env);
  try {
    const { CommanderError } = await import('commander');
    const { buildProgram } = await import('./cli/program.js');
    const program = buildProgram(ctx, version, argv);
    program.hook('preAction', (root, action) => {
      // Global flags may be given before or after the subcommand; a `--no-*` flag on either
      // wins (optsWithGlobals would let the root's default `true` override the command's).
      const flags = [root.opts(), action.opts()];
      const given = (name: string, value: unknown) => flags.some((f) => f[name] === value);
      io.quiet = given('quiet', true);
      io.debug = io.debug || given('debug', true);
      if (given('color', false)) io.colorEnabled = false;
      if (given('sweep', false) || NO_PRE_SWEEP.has(action.name())) ctx.autoSweep = false;
    });
    try {
      await program.parseAsync(argv, { from: 'user' });
    } catch (error) {
      if (!(error instanceof CommanderError)) throw error;
      if (error.exitCode === 0) return 0;
      // Help shown for a command that needs a subcommand: the help is the message.
      if (error.code === 'commander.help' || error.code === 'commander.helpDisplayed') return 2;
      throw usageError('usage', commanderSentence(error.message, siblingFlag(argv, error.message)));
    }
    return ctx.exitCode ?? 0;
  } catch (error) {
    return report(error, io, await paint(io.colorEnabled));
  } finally {
    await ctx.close();
  }
}

function report(error: unknown, io: IOStreams, colors: Paint): number {
  if (error instanceof SyError) {
    io.warn(`${colors.red('sy:')} ${error.message}${error.hint ? `\n${colors.dim(error.hint)}` : ''}`);
    if (io.debug && error.cause instanceof Error) io.warn(`cause: ${error.cause.stack ?? error.cause.message}`);
    if (io.debug) io.warn(error.stack ?? '');
    return error.exitCode;
  }
  // An error sy did not anticipate: a bug. Its message comes from code, not from user data.
  const message = error instanceof Error ? error.message : String(error);
  io.warn(`${colors.red('sy:')} unexpected error: ${message}`);
  if (io.debug && error instanceof Error) io.warn(error.stack ?? '');
  else io.warn('Run again with --debug for details.');
  return 1;
}

/**
 * Commander's messages (`error: unknown option '--dat'` and a `(Did you mean --data?)` line)
 * as one sentence of sy's, so that every error reads the same and starts with `sy:`.
 */
/**
 * Flags users carry over from a sibling command, which commander's spelling check cannot
 * guess (`lease renew --ttl`, as `lease create --ttl`): the unknown option names the right one.
 */
const SIBLING_FLAGS: Record<string, Record<string, string>> = { renew: { '--ttl': '--increment' } };

export function siblingFlag(argv: string[], message: string): string | undefined {
  const flag = /unknown option '([^'=]+)/i.exec(message)?.[1];
  if (flag === undefined) return undefined;
  const command = Object.keys(SIBLING_FLAGS).find((name) => argv.includes(name) && SIBLING_FLAGS[name][flag] !== undefined);
  return command === undefined ? undefined : SIBLING_FLAGS[command][flag];
}

export function commanderSentence(message: string, fallbackSuggestion?: string): string {
  const [first = 'Bad usage', ...rest] = message
    .replace(/^error:\s*/, '')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
  const suggestion = rest.map((line) => /^\(Did you mean (.+)\?\)$/.exec(line)?.[1]).find((s) => s !== undefined) ?? fallbackSuggestion;
  const joined = first.replace(/\.$/, '').replace(/\. ([A-Z])/g, (_, c: string) => `; ${c.toLowerCase()}`);
  const sentence = joined[0].toUpperCase() + joined.slice(1);
  return suggestion ? `${sentence}; did you mean ${suggestion}?` : `${sentence}.`;
}

/** Set by the bundler (scripts/bundle.mjs); read from package.json when running from tsc's output. */
declare const SY_VERSION: string | undefined;
/** `sy --help`, rendered by the bundler from the same command tree. */
declare const SY_ROOT_HELP: string | undefined;

function packageVersion(): string {
  if (typeof SY_VERSION === 'string') return SY_VERSION;
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export async function run(): Promise<void> {
  const code = await main(process.argv.slice(2));
  process.exitCode = code;
  // Interrupted: do not wait for what the command abandoned (a connection attempt to a server
  // that does not answer would hold the process for its whole timeout). stdout and stderr are
  // synchronous on Linux for files, pipes and terminals, so nothing written is lost.
  if (code === 130) process.exit(code);
}
