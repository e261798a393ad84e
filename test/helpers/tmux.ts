/**
 * A real pseudo-terminal for the end-to-end tests: a detached tmux session of a fixed
 * size on a private server socket, running an interactive bash with only the environment
 * given. Tests type into it (send-keys), read the screen (capture-pane, with -e for the
 * escape codes) and wait for text with a timeout, never with fixed sleeps.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The frames of ora's default spinner (cli-spinners "dots"). */
export const SPINNER_FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
export const hasSpinnerFrame = (text: string): boolean => SPINNER_FRAMES.some((frame) => text.includes(frame));
export const ESC = '\x1b[';

/** The shell-safe single-quoted form of a string. */
export const shq = (text: string): string => `'${text.replaceAll("'", `'\\''`)}'`;

export type Pattern = string | RegExp | ((text: string) => boolean);
const matches = (pattern: Pattern, text: string): boolean =>
  typeof pattern === 'string' ? text.includes(pattern) : pattern instanceof RegExp ? pattern.test(text) : pattern(text);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface PaneOptions {
  /** The whole environment of the shell (env -i): nothing else leaks in. */
  env: Record<string, string>;
  cwd?: string;
  width?: number;
  height?: number;
}

/** One command typed into the pane, followed by an echo of its exit status. */
export interface Typed {
  /** The pane's text from the line where the command was typed. */
  screen(options?: { escapes?: boolean }): string;
  /** Waits until `pattern` shows after the typed command line; returns that screen. */
  waitFor(pattern: Pattern, timeoutMs?: number): Promise<string>;
  /** Waits for the command to end; returns its exit status as the shell saw it. */
  status(timeoutMs?: number): Promise<number>;
  /** What the command printed (stdout and stderr, as drawn), between its line and the status. */
  output(options?: { escapes?: boolean }): string;
}

export class Pane {
  private counter = 0;

  private constructor(
    private readonly socket: string,
    private readonly dir: string,
    readonly target: string,
  ) {}

  static async start(options: PaneOptions): Promise<Pane> {
    const dir = mkdtempSync(join(tmpdir(), 'sy-tmux-'));
    const config = join(dir, 'tmux.conf');
    writeFileSync(config, 'set -g history-limit 100000\nset -g status off\nset -g remain-on-exit off\n');
    // A private server whose socket lives in the temp dir, removed with it.
    const socket = join(dir, 'tmux.sock');
    const env = { PS1: '$ ', TERM: 'xterm-256color', ...options.env };
    const pane = new Pane(socket, dir, 'main');
    pane.tmux([
      '-f', config,
      'new-session', '-d', '-s', 'main', '-x', String(options.width ?? 200), '-y', String(options.height ?? 50),
      ...(options.cwd ? ['-c', options.cwd] : []),
      '--', 'env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), 'bash', '--norc', '--noprofile', '-i',
    ]);
    await pane.waitForScreen(/^\$ ?$/m, 10_000);
    return pane;
  }

  /** Runs tmux on this pane's private server. */
  tmux(args: string[]): string {
    return execFileSync('tmux', ['-u', '-S', this.socket, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /** Types text literally (no Enter). */
  type(text: string): void {
    this.tmux(['send-keys', '-t', this.target, '-l', '--', text]);
  }

  /** Presses keys by their tmux names: Enter, Down, C-c, C-u... */
  press(...keys: string[]): void {
    for (const key of keys) this.tmux(['send-keys', '-t', this.target, key]);
  }

  /** The whole pane, history included; wrapped lines joined. */
  capture(options: { escapes?: boolean; target?: string } = {}): string {
    return this.tmux(['capture-pane', '-p', '-J', '-S', '-', '-E', '-', ...(options.escapes ? ['-e'] : []), '-t', options.target ?? this.target]);
  }

  /** Polls `read` (default: the pane) until `pattern` (text, RegExp or predicate) matches. */
  async waitForScreen(pattern: Pattern, timeoutMs = 15_000, read: () => string = () => this.capture()): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = read();
      if (matches(pattern, text)) return text;
      if (Date.now() > deadline) {
        throw new Error(`Timed out after ${timeoutMs} ms waiting for ${String(pattern)} in the pane:\n${this.capture().trimEnd().split('\n').slice(-40).join('\n')}`);
      }
      await sleep(50);
    }
  }

  /**
   * Types `command` and Enter, followed by `echo "<id> status=$?"`. The returned handle
   * reads only what comes after this command line.
   */
  command(command: string): Typed {
    const id = `@@cmd${++this.counter}-${randomBytes(3).toString('hex')}@@`;
    this.type(`${command}; echo "${id} status=$?"`);
    this.press('Enter');
    const statusLine = new RegExp(`^${id} status=(\\d+)\\s*$`, 'm');
    const screen = (options: { escapes?: boolean } = {}) => {
      const text = this.capture(options);
      const start = text.indexOf(`${id} status=$?`);
      return start < 0 ? '' : text.slice(start);
    };
    const typed: Typed = {
      screen,
      waitFor: (pattern, timeoutMs = 15_000) => this.waitForScreen(pattern, timeoutMs, () => screen()),
      async status(timeoutMs = 30_000) {
        const text = await typed.waitFor(statusLine, timeoutMs);
        return Number(statusLine.exec(text)![1]);
      },
      output(options = {}) {
        const text = screen(options);
        const rest = text.slice(text.indexOf('\n') + 1);
        const end = rest.search(new RegExp(`^${id} status=`, 'm'));
        return end < 0 ? rest : rest.slice(0, end);
      },
    };
    return typed;
  }

  /** Records every byte drawn in the pane (`target`) from now on into a file, escapes included. */
  record(name: string, target = this.target): { text(): string; stop(): void } {
    const file = join(this.dir, `${name}.rec`);
    writeFileSync(file, '');
    this.tmux(['pipe-pane', '-o', '-t', target, `cat >> ${shq(file)}`]);
    return {
      text: () => readFileSync(file, 'utf8'),
      stop: () => {
        this.tmux(['pipe-pane', '-t', target]);
      },
    };
  }

  /**
   * A second pane (not shown in `capture`) whose terminal can take another stream of a
   * command, e.g. `2>/dev/pts/N`: its tty path.
   */
  splitTerminal(): { tty: string; target: string } {
    const [paneId, tty] = this.tmux(['split-window', '-d', '-t', this.target, '-P', '-F', '#{pane_id} #{pane_tty}', '--', 'tail', '-f', '/dev/null']).trim().split(' ');
    return { tty, target: paneId };
  }

  /** Ends this tmux server (and the shell and anything still running in it). */
  kill(): void {
    try {
      this.tmux(['kill-server']);
    } catch {
      // Already gone.
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
