import { isatty } from 'node:tty';
import { type Prompter, controllingTerminalPrompter, inquirerPrompter } from './prompter.js';

/**
 * One object that knows what the process is connected to: whether stdin, stdout and
 * stderr are terminals, whether colour is on, whether prompting is allowed. Everything
 * that prints or asks goes through it, as gh's IOStreams does: through its own streams,
 * so a test can give it others (test/helpers/streams.ts).
 */
export interface IOStreams {
  readonly stdin: NodeJS.ReadableStream;
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly stdinIsTTY: boolean;
  readonly stdoutIsTTY: boolean;
  readonly stderrIsTTY: boolean;
  /** Asks the questions of io/prompt.ts: inquirer on stdin and stdout. */
  readonly prompter: Prompter;
  colorEnabled: boolean;
  quiet: boolean;
  debug: boolean;
  /** Prompts only when both stdin and stdout are terminals. */
  canPrompt(): boolean;
  /**
   * Where a passphrase is asked: the prompter when stdin and stdout are terminals, else the
   * controlling terminal when the process has one (`| jq`, `> creds.json`); undefined
   * without any terminal.
   */
  secretPrompter(): Prompter | undefined;
  /** Spinners only when stdout and stderr are terminals and not --quiet. */
  canSpin(): boolean;
  out(text: string): void;
  /** A notice on stderr (suppressed by --quiet). */
  notice(text: string): void;
  /** A warning on stderr (always shown). */
  warn(text: string): void;
}

export interface StreamOptions {
  /** A function when building the stream costs something (process.stdin does). */
  stdin: NodeJS.ReadableStream | (() => NodeJS.ReadableStream);
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  stdinIsTTY: boolean;
  stdoutIsTTY: boolean;
  stderrIsTTY: boolean;
  colorEnabled: boolean;
  /** Default: inquirer on these stdin and stdout. */
  prompter?: Prompter;
  /** The controlling terminal's prompter, looked for on first use; default: none. */
  controllingTerminal?: () => Prompter | undefined;
}

export function createStreams(options: StreamOptions): IOStreams {
  const { stdout, stderr, stdinIsTTY, stdoutIsTTY, stderrIsTTY } = options;
  let stdin = typeof options.stdin === 'function' ? undefined : options.stdin;
  const input = (): NodeJS.ReadableStream => (stdin ??= (options.stdin as () => NodeJS.ReadableStream)());
  const line = (text: string) => (text.endsWith('\n') ? text : `${text}\n`);
  return {
    get stdin() {
      return input();
    },
    stdout,
    stderr,
    stdinIsTTY,
    stdoutIsTTY,
    stderrIsTTY,
    prompter: options.prompter ?? inquirerPrompter(() => ({ input: input(), output: stdout })),
    colorEnabled: options.colorEnabled,
    quiet: false,
    debug: false,
    canPrompt() {
      return stdinIsTTY && stdoutIsTTY;
    },
    secretPrompter() {
      if (this.canPrompt()) return this.prompter;
      return options.controllingTerminal?.();
    },
    canSpin() {
      return stdoutIsTTY && stderrIsTTY && !this.quiet;
    },
    out(text) {
      stdout.write(line(text));
    },
    notice(text) {
      if (!this.quiet) stderr.write(line(text));
    },
    warn(text) {
      stderr.write(line(text));
    },
  };
}

/** Colour on a terminal's stderr, unless NO_COLOR is set or the terminal is dumb. */
export function colorByDefault(env: NodeJS.ProcessEnv, stderrIsTTY: boolean): boolean {
  const noColor = env.NO_COLOR !== undefined && env.NO_COLOR !== '';
  return stderrIsTTY && !noColor && env.TERM !== 'dumb';
}

export function processStreams(env: NodeJS.ProcessEnv = process.env): IOStreams {
  // isatty() on the descriptors: touching process.stdin builds a stream, which costs
  // milliseconds at every start-up; commands that read stdin get it on first use.
  const stderrIsTTY = isatty(2);
  return createStreams({
    stdin: () => process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
    stdinIsTTY: isatty(0),
    stdoutIsTTY: isatty(1),
    stderrIsTTY,
    colorEnabled: colorByDefault(env, stderrIsTTY),
    controllingTerminal: controllingTerminalPrompter,
  });
}
