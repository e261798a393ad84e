import { isatty } from 'node:tty';

/**
 * One object that knows what the process is connected to: whether stdin, stdout and
 * stderr are terminals, whether colour is on, whether prompting is allowed. Everything
 * that prints or asks goes through it, as gh's IOStreams does.
 */
export interface IOStreams {
  readonly stdin: NodeJS.ReadableStream;
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly stdinIsTTY: boolean;
  readonly stdoutIsTTY: boolean;
  readonly stderrIsTTY: boolean;
  colorEnabled: boolean;
  quiet: boolean;
  debug: boolean;
  /** Prompts only when both stdin and stdout are terminals. */
  canPrompt(): boolean;
  /** Spinners only when stdout and stderr are terminals and not --quiet. */
  canSpin(): boolean;
  out(text: string): void;
  /** A notice on stderr (suppressed by --quiet). */
  notice(text: string): void;
  /** A warning on stderr (always shown). */
  warn(text: string): void;
}

export function processStreams(env: NodeJS.ProcessEnv = process.env): IOStreams {
  // isatty() on the descriptors: touching process.stdin builds a stream, which costs
  // milliseconds at every start-up; commands that read stdin get it on first use.
  const stdoutIsTTY = isatty(1);
  const stderrIsTTY = isatty(2);
  const stdinIsTTY = isatty(0);
  const noColor = env.NO_COLOR !== undefined && env.NO_COLOR !== '';
  return {
    get stdin() {
      return process.stdin;
    },
    stdout: process.stdout,
    stderr: process.stderr,
    stdinIsTTY,
    stdoutIsTTY,
    stderrIsTTY,
    colorEnabled: stderrIsTTY && !noColor && env.TERM !== 'dumb',
    quiet: false,
    debug: false,
    canPrompt() {
      return stdinIsTTY && stdoutIsTTY;
    },
    canSpin() {
      return stdoutIsTTY && stderrIsTTY && !this.quiet;
    },
    out(text) {
      process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
    },
    notice(text) {
      if (!this.quiet) process.stderr.write(text.endsWith('\n') ? text : `${text}\n`);
    },
    warn(text) {
      process.stderr.write(text.endsWith('\n') ? text : `${text}\n`);
    },
  };
}
