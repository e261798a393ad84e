/**
 * gh's iostreams.Test(): an IOStreams whose stdout and stderr are captured, whose stdin is
 * given, that says it is (or is not) on a terminal, and whose prompts are answered from a
 * script instead of a keyboard. Everything sy prints through it can be asserted byte for
 * byte; nothing reaches the test runner's own streams.
 */
import { cursorTo, clearLine, moveCursor } from 'node:readline';
import { PassThrough, Readable, Writable } from 'node:stream';
import { interrupted } from '../../src/errors.js';
import type { Answer, Prompter, Question } from '../../src/io/prompter.js';
import { createStreams, type IOStreams } from '../../src/io/streams.js';

/**
 * A writable that keeps what is written. As a terminal it has the few methods and sizes of
 * a tty.WriteStream that ora and readline use (cursorTo, clearLine, columns), written as the
 * same escape sequences a real terminal would get.
 */
export class CapturedStream extends Writable {
  readonly chunks: string[] = [];
  readonly isTTY: boolean;
  readonly columns = 80;
  readonly rows = 24;

  constructor(tty: boolean) {
    super({ decodeStrings: false });
    this.isTTY = tty;
  }

  override _write(chunk: Buffer | string, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.chunks.push(typeof chunk === 'string' ? chunk : chunk.toString('utf8'));
    done();
  }

  /**
   * Never ends, as process.stdout and stderr never do: inquirer pipes each prompt's output
   * into the stream and ends that pipe when the prompt is answered.
   */
  override end(...args: unknown[]): this {
    const chunk = args.find((a) => typeof a === 'string' || Buffer.isBuffer(a));
    if (chunk !== undefined) this.write(chunk);
    const callback = args.find((a) => typeof a === 'function') as (() => void) | undefined;
    callback?.();
    return this;
  }

  /** Everything written so far. */
  text(): string {
    return this.chunks.join('');
  }

  cursorTo(x: number, y?: number | (() => void), callback?: () => void): boolean {
    return typeof y === 'function' ? cursorTo(this, x, undefined, y) : cursorTo(this, x, y, callback);
  }

  moveCursor(dx: number, dy: number, callback?: () => void): boolean {
    return moveCursor(this, dx, dy, callback);
  }

  clearLine(dir: -1 | 0 | 1, callback?: () => void): boolean {
    return clearLine(this, dir, callback);
  }

  getColorDepth(): number {
    return 8;
  }

  hasColors(): boolean {
    return true;
  }
}

/**
 * A keyboard: a stdin that says it is a terminal, into which a test types keys for a real
 * inquirer prompt (`\r` is Enter).
 */
export class FakeKeyboard extends PassThrough {
  readonly isTTY = true;
  isRaw = false;

  setRawMode(mode: boolean): this {
    this.isRaw = mode;
    return this;
  }

  type(keys: string): void {
    this.write(keys);
  }
}

/** Ctrl-C at a prompt, as a scripted answer. */
export const INTERRUPT = Symbol('interrupt');

export type ScriptedAnswer = string | boolean | typeof INTERRUPT;

export interface AskedQuestion {
  type: Question['type'];
  message: string;
  answer: string | boolean | undefined;
  /** What the question's check said of an answer it refused (the prompt asked again). */
  refused?: string;
}

/**
 * Answers questions from a list, in order, the way a person at inquirer would: an empty
 * answer to a question with a default takes the default; an answer its check refuses is
 * noted and the next one in the list is tried (inquirer asks again); a select answer must
 * be one of the choices' values. A question with no answer left fails the test.
 */
export class ScriptedPrompter implements Prompter {
  readonly asked: AskedQuestion[] = [];

  constructor(private readonly answers: ScriptedAnswer[]) {}

  /** Answers not used yet: a test may check that every question it expected was asked. */
  get remaining(): number {
    return this.answers.length;
  }

  async ask<Q extends Question>(question: Q): Promise<Answer<Q>> {
    for (;;) {
      if (this.answers.length === 0) throw new Error(`No scripted answer for the prompt "${question.message}"`);
      const scripted = this.answers.shift()!;
      if (scripted === INTERRUPT) {
        this.asked.push({ type: question.type, message: question.message, answer: undefined });
        throw interrupted();
      }
      const answer = this.resolve(question, scripted);
      if (question.type === 'input' && question.validate) {
        const verdict = await question.validate(answer as string);
        if (verdict !== true) {
          this.asked.push({ type: question.type, message: question.message, answer, refused: verdict });
          continue;
        }
      }
      this.asked.push({ type: question.type, message: question.message, answer });
      return answer as Answer<Q>;
    }
  }

  private resolve(question: Question, scripted: string | boolean): string | boolean {
    switch (question.type) {
      case 'confirm':
        if (typeof scripted !== 'boolean') throw new Error(`The prompt "${question.message}" wants true or false, not ${JSON.stringify(scripted)}`);
        return scripted;
      case 'select':
        if (!question.choices.some((c) => c.value === scripted)) {
          throw new Error(`"${String(scripted)}" is not a choice of "${question.message}": ${question.choices.map((c) => c.value).join(', ')}`);
        }
        return scripted;
      case 'input':
        if (typeof scripted !== 'string') throw new Error(`The prompt "${question.message}" wants text`);
        return scripted === '' && question.default !== undefined ? question.default : scripted;
      case 'password':
        if (typeof scripted !== 'string') throw new Error(`The prompt "${question.message}" wants text`);
        return scripted;
    }
  }
}

export interface TestStreamsOptions {
  stdinTTY?: boolean;
  stdoutTTY?: boolean;
  stderrTTY?: boolean;
  /** Default: on when stderr is a terminal, as for a real one without NO_COLOR. */
  color?: boolean;
  /** What stdin holds (read by `--data -`); empty by default. */
  stdin?: string | Buffer | Readable;
  /** Answers to the prompts, in order. */
  answers?: ScriptedAnswer[];
  /** A prompter of the test's own instead of scripted answers (e.g. inquirer on fake streams). */
  prompter?: Prompter;
  /** The process's controlling terminal (/dev/tty), when it has one: asked for passphrases when stdin or stdout is not a terminal. */
  controllingTerminal?: Prompter;
}

export interface TestStreams {
  io: IOStreams;
  stdout(): string;
  stderr(): string;
  /** The captured streams themselves. */
  out: CapturedStream;
  err: CapturedStream;
  prompter: ScriptedPrompter;
}

/** An IOStreams on captured streams; not a terminal unless asked (as when sy's output is piped). */
export function testStreams(options: TestStreamsOptions = {}): TestStreams {
  const out = new CapturedStream(options.stdoutTTY ?? false);
  const err = new CapturedStream(options.stderrTTY ?? false);
  const input = options.stdin instanceof Readable ? options.stdin : Readable.from(options.stdin === undefined ? [] : [Buffer.from(options.stdin)]);
  const prompter = new ScriptedPrompter(options.answers ?? []);
  const io = createStreams({
    stdin: input,
    stdout: out,
    stderr: err,
    stdinIsTTY: options.stdinTTY ?? false,
    stdoutIsTTY: out.isTTY,
    stderrIsTTY: err.isTTY,
    colorEnabled: options.color ?? err.isTTY,
    prompter: options.prompter ?? prompter,
    controllingTerminal: () => options.controllingTerminal,
  });
  return { io, out, err, stdout: () => out.text(), stderr: () => err.text(), prompter };
}

/** A terminal on all three streams, as a person at a shell has. */
export function terminalStreams(options: Omit<TestStreamsOptions, 'stdinTTY' | 'stdoutTTY' | 'stderrTTY'> = {}): TestStreams {
  return testStreams({ stdinTTY: true, stdoutTTY: true, stderrTTY: true, ...options });
}
