import { SyError, usageError } from '../errors.js';
import type { PassphrasePrompt } from '../keys/sources.js';
import type { Validate } from './prompter.js';
import type { IOStreams } from './streams.js';

/**
 * The questions sy asks, through the prompter of the streams given (inquirer at a real
 * terminal, loaded only when a prompt is really shown). Ctrl-C or a closed terminal becomes
 * the `interrupted` error (exit 130) and nothing is written.
 */
export function askPassword(io: IOStreams, message: string): Promise<string> {
  return io.prompter.ask({ type: 'password', message, mask: '*' });
}

export function askText(io: IOStreams, message: string, options: { default?: string; validate?: Validate } = {}): Promise<string> {
  return io.prompter.ask({ type: 'input', message, ...options });
}

export function askConfirm(io: IOStreams, message: string, defaultValue = false): Promise<boolean> {
  return io.prompter.ask({ type: 'confirm', message, default: defaultValue });
}

export async function askSelect<T extends string>(io: IOStreams, message: string, choices: { name: string; value: T }[]): Promise<T> {
  return (await io.prompter.ask({ type: 'select', message, choices })) as T;
}

/** The four questions bound to one set of streams, for a command that asks many (the wizard). */
export function prompts(io: IOStreams) {
  return {
    askPassword: (message: string) => askPassword(io, message),
    askText: (message: string, options?: { default?: string; validate?: Validate }) => askText(io, message, options),
    askConfirm: (message: string, defaultValue?: boolean) => askConfirm(io, message, defaultValue),
    askSelect: <T extends string>(message: string, choices: { name: string; value: T }[]) => askSelect(io, message, choices),
  };
}

/**
 * A passphrase prompt for the key sources: on the controlling terminal whenever there is one,
 * even with stdout piped or redirected (io.secretPrompter); undefined when there is none.
 */
export function passphrasePrompt(io: IOStreams) {
  const prompter = io.secretPrompter();
  if (!prompter) return undefined;
  const ask = (message: string) => prompter.ask({ type: 'password', message, mask: '*' });
  return async (purpose: 'unlock' | 'new'): Promise<string> => {
    if (purpose === 'unlock') return ask('Passphrase for the sy store:');
    for (;;) {
      const first = await ask('New passphrase for the sy store (at least 8 characters):');
      if (first.length < 8) {
        io.warn('The passphrase must be at least 8 characters long.');
        continue;
      }
      const second = await ask('Repeat the passphrase:');
      if (first === second) return first;
      io.warn('The two passphrases differ; try again.');
    }
  };
}

/** Wrong passphrases allowed at a terminal before giving up, as sudo does. */
export const PASSPHRASE_TRIES = 3;

/**
 * Runs `open` with the passphrase prompt of `io`. When the passphrase typed at the terminal
 * does not open the store, it is asked again, up to PASSPHRASE_TRIES in all; a key from the
 * environment is never retried (it would fail the same way).
 */
export async function withPassphraseTries<T>(io: IOStreams, open: (ask?: PassphrasePrompt) => Promise<T>): Promise<T> {
  const prompt = passphrasePrompt(io);
  if (!prompt) return open(undefined);
  for (let attempt = 1; ; attempt++) {
    let typed = false;
    try {
      return await open((purpose) => {
        if (purpose === 'unlock') typed = true;
        return prompt(purpose);
      });
    } catch (error) {
      if (!typed || attempt >= PASSPHRASE_TRIES || !(error instanceof SyError && error.code === 'wrong_key')) throw error;
      const left = PASSPHRASE_TRIES - attempt;
      io.warn(`sy: That passphrase does not open the store; ${left} ${left === 1 ? 'try' : 'tries'} left.`);
    }
  }
}

/**
 * Confirms a destructive act: asks on a terminal, and without one requires `--yes`.
 * `details` (one line each, e.g. what will be revoked) are shown on stderr before the
 * question. Returns false when the user declines.
 */
export async function confirmDestructive(io: IOStreams, message: string, yes: boolean | undefined, details: string[] = []): Promise<boolean> {
  if (yes) return true;
  if (!io.canPrompt()) {
    throw usageError('confirmation_required', `${message.replace(/\?$/, '')}: pass --yes to confirm without a terminal.`);
  }
  for (const line of details) io.warn(`  ${line}`);
  return askConfirm(io, message, false);
}
