import { closeSync, openSync, readFileSync } from 'node:fs';
import { ReadStream, WriteStream } from 'node:tty';
import { interrupted } from '../errors.js';

/**
 * One question to the person at the terminal. The shapes are the few that sy asks; a
 * Prompter answers them (gh's prompter): inquirer on a real terminal, scripted answers in
 * a test (test/helpers/streams.ts).
 */
export type Validate = (value: string) => true | string | Promise<true | string>;

export type Question =
  | { type: 'input'; message: string; default?: string; validate?: Validate }
  | { type: 'password'; message: string; mask: string }
  | { type: 'confirm'; message: string; default: boolean }
  | { type: 'select'; message: string; choices: { name: string; value: string }[] };

export type Answer<Q extends Question> = Q extends { type: 'confirm' } ? boolean : string;

export interface Prompter {
  /** The answer; Ctrl-C or a closed terminal throws the `interrupted` error (exit 130). */
  ask<Q extends Question>(question: Q): Promise<Answer<Q>>;
}

type Inquirer = typeof import('inquirer').default;

let loaded: Promise<Inquirer> | undefined;
const inquirer = (): Promise<Inquirer> => (loaded ??= import('inquirer').then((m) => m.default));

/**
 * inquirer reading and drawing on the given streams, loaded only when a prompt is really
 * shown. The streams are read at the first question, so a lazily built stdin stays unbuilt
 * until then.
 */
export function inquirerPrompter(streams: () => { input: NodeJS.ReadableStream; output: NodeJS.WritableStream }): Prompter {
  return {
    async ask(question) {
      const { createPromptModule } = await inquirer();
      const prompt = createPromptModule(streams() as never);
      try {
        const answers = (await prompt([{ ...question, name: 'value' }] as never)) as { value: never };
        return answers.value;
      } catch (error) {
        const name = (error as Error).name;
        if (name === 'ExitPromptError' || name === 'AbortPromptError') throw interrupted();
        throw error;
      }
    },
  };
}

const TERMINAL = '/dev/tty';

/**
 * inquirer on the controlling terminal (`/dev/tty`), as ssh, gpg and sudo ask for a
 * passphrase: it works when stdout is piped or redirected and when stdin is not the
 * terminal. Undefined when the process has no controlling terminal (a daemon, a container,
 * `setsid`): then nothing may wait for input. The terminal is opened for each question and
 * closed after it, so nothing holds the process open afterwards.
 */
export function controllingTerminalPrompter(path = TERMINAL): Prompter | undefined {
  try {
    closeSync(openSync(path, 'r+'));
  } catch {
    return undefined;
  }
  // A background job (`sy daemon &`) would be stopped by the terminal as soon as it read:
  // it is treated as having no terminal, and fails naming the variable instead.
  if (inBackground()) return undefined;
  return {
    async ask(question) {
      const input = new ReadStream(openSync(path, 'r'));
      const output = new WriteStream(openSync(path, 'w'));
      try {
        return await inquirerPrompter(() => ({ input, output })).ask(question);
      } finally {
        input.destroy();
        output.destroy();
      }
    },
  };
}

/**
 * Whether this process is in a background process group of its terminal (Linux: the
 * terminal's foreground group in /proc/self/stat is not ours). Elsewhere: not known, false.
 */
export function inBackground(stat = '/proc/self/stat'): boolean {
  let text: string;
  try {
    text = readFileSync(stat, 'utf8');
  } catch {
    return false;
  }
  // After the command name (in parentheses, which may hold spaces): state ppid pgrp session tty_nr tpgid.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const pgrp = Number(fields[2]);
  const foreground = Number(fields[5]);
  return foreground > 0 && pgrp !== foreground;
}
