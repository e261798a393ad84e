/**
 * IOStreams writes through its own streams, and so do the spinner and the prompts bound to
 * it: given captured streams, nothing reaches the process's own stdout or stderr.
 */
import { jest } from '@jest/globals';
import { SyError, storeError } from '../../../src/errors.js';
import { createSpinner } from '../../../src/io/spinner.js';
import { askConfirm, askPassword, askSelect, askText, confirmDestructive, passphrasePrompt, PASSPHRASE_TRIES, withPassphraseTries } from '../../../src/io/prompt.js';
import { colorByDefault, createStreams } from '../../../src/io/streams.js';
import { inBackground } from '../../../src/io/prompter.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CapturedStream, FakeKeyboard, INTERRUPT, ScriptedPrompter, terminalStreams, testStreams } from '../../helpers/streams.js';

/**
 * Fails the test if any of `texts` is written to the process's own streams while `fn`
 * runs. (Only what the test writes counts: jest itself may draw on stderr meanwhile, and
 * Node warns once about the VM modules these tests run in.)
 */
async function withoutProcessOutput<T>(texts: string[], fn: () => Promise<T>): Promise<T> {
  const out = jest.spyOn(process.stdout, 'write');
  const err = jest.spyOn(process.stderr, 'write');
  const leaked = () =>
    [...out.mock.calls, ...err.mock.calls].map(([chunk]) => String(chunk)).filter((chunk) => texts.some((text) => chunk.includes(text)));
  try {
    const result = await fn();
    expect(leaked()).toEqual([]);
    return result;
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

describe('IOStreams', () => {
  test('out goes to its stdout, notices and warnings to its stderr, each one line', async () => {
    const t = testStreams();
    await withoutProcessOutput(['data', 'more', 'a notice', 'a warning'], async () => {
      t.io.out('data');
      t.io.out('more\n');
      t.io.notice('a notice');
      t.io.warn('a warning\n');
    });
    expect(t.stdout()).toBe('data\nmore\n');
    expect(t.stderr()).toBe('a notice\na warning\n');
  });

  test('--quiet drops notices, never warnings', () => {
    const t = testStreams();
    t.io.quiet = true;
    t.io.notice('hidden');
    t.io.warn('shown');
    expect(t.stderr()).toBe('shown\n');
  });

  test('prompts need stdin and stdout on a terminal; spinners stdout and stderr, and not --quiet', () => {
    const cases = [
      [{ stdinTTY: true, stdoutTTY: true, stderrTTY: true }, true, true],
      [{ stdinTTY: false, stdoutTTY: true, stderrTTY: true }, false, true],
      [{ stdinTTY: true, stdoutTTY: false, stderrTTY: true }, false, false],
      [{ stdinTTY: true, stdoutTTY: true, stderrTTY: false }, true, false],
    ] as const;
    for (const [tty, prompt, spin] of cases) {
      const { io } = testStreams(tty);
      expect({ tty, prompt: io.canPrompt(), spin: io.canSpin() }).toEqual({ tty, prompt, spin });
    }
    const { io } = terminalStreams();
    io.quiet = true;
    expect(io.canSpin()).toBe(false);
  });

  test('colour by default only on a terminal stderr, without NO_COLOR, on a terminal that is not dumb', () => {
    expect(colorByDefault({}, true)).toBe(true);
    expect(colorByDefault({}, false)).toBe(false);
    expect(colorByDefault({ NO_COLOR: '1' }, true)).toBe(false);
    expect(colorByDefault({ NO_COLOR: '' }, true)).toBe(true);
    expect(colorByDefault({ TERM: 'dumb' }, true)).toBe(false);
  });

  test('a stdin given as a function is built on first use only, once', () => {
    let built = 0;
    const stdin = new FakeKeyboard();
    const io = createStreams({ stdin: () => (built++, stdin), stdout: new CapturedStream(false), stderr: new CapturedStream(false), stdinIsTTY: false, stdoutIsTTY: false, stderrIsTTY: false, colorEnabled: false });
    expect(built).toBe(0);
    expect(io.stdin).toBe(stdin);
    expect(io.stdin).toBe(stdin);
    expect(built).toBe(1);
  });
});

describe('the spinner', () => {
  test('draws on the streams\' stderr when both stdout and stderr are terminals, and stops', async () => {
    const t = terminalStreams({ color: false });
    await withoutProcessOutput(['Connecting to PostgreSQL', 'Creating the user', '\u001b[?25l'], async () => {
      const spinner = createSpinner(t.io);
      spinner.update('Connecting to PostgreSQL at db:5432');
      await new Promise((resolve) => setTimeout(resolve, 150));
      spinner.update('Creating the user');
      spinner.stop();
    });
    expect(t.stderr()).toContain('Connecting to PostgreSQL at db:5432');
    expect(t.stdout()).toBe('');
  });

  test('draws nothing when stderr is not a terminal, or with --quiet', async () => {
    for (const t of [testStreams({ stdoutTTY: true, stderrTTY: false }), terminalStreams()]) {
      if (t.err.isTTY) t.io.quiet = true;
      const spinner = createSpinner(t.io);
      spinner.update('Connecting');
      await new Promise((resolve) => setTimeout(resolve, 100));
      spinner.stop();
      expect(t.stderr()).toBe('');
    }
  });
});

/**
 * Types `keys` once `question` is drawn on `out`, as a person would: inquirer is loaded on the
 * first question, which under load takes longer than any fixed delay.
 */
async function typeWhenAsked(keyboard: FakeKeyboard, out: CapturedStream, question: string, keys: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!out.text().includes(question)) {
    if (Date.now() > deadline) throw new Error(`"${question}" was never asked`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  keyboard.type(keys);
}

describe('prompts through inquirer, on the streams given', () => {
  test('a question is drawn on its stdout and answered from its stdin', async () => {
    const keyboard = new FakeKeyboard();
    const out = new CapturedStream(true);
    const io = createStreams({ stdin: keyboard, stdout: out, stderr: new CapturedStream(true), stdinIsTTY: true, stdoutIsTTY: true, stderrIsTTY: true, colorEnabled: false });
    await withoutProcessOutput(['Your name', 'Sure?'], async () => {
      const name = askText(io, 'Your name:');
      await typeWhenAsked(keyboard, out, 'Your name:', 'alice\r');
      expect(await name).toBe('alice');
      const sure = askConfirm(io, 'Sure?', false);
      await typeWhenAsked(keyboard, out, 'Sure?', 'y\r');
      expect(await sure).toBe(true);
    });
    expect(out.text()).toContain('Your name: alice');
    expect(out.text()).toContain('Sure?');
  });

  test('Ctrl-C at a prompt is the interrupted error (exit 130)', async () => {
    const keyboard = new FakeKeyboard();
    const out = new CapturedStream(true);
    const io = createStreams({ stdin: keyboard, stdout: out, stderr: new CapturedStream(true), stdinIsTTY: true, stdoutIsTTY: true, stderrIsTTY: true, colorEnabled: false });
    const answer = askPassword(io, 'Passphrase:');
    await typeWhenAsked(keyboard, out, 'Passphrase:', '\x03');
    await expect(answer).rejects.toMatchObject({ code: 'interrupted', exitCode: 130 });
  });
});

describe('prompts with scripted answers', () => {
  test('the four kinds of question, as a person would answer them', async () => {
    const t = terminalStreams({ answers: ['', 'typed', true, 'b', 'secret'] });
    expect(await askText(t.io, 'Host:', { default: '127.0.0.1' })).toBe('127.0.0.1');
    expect(await askText(t.io, 'Name:')).toBe('typed');
    expect(await askConfirm(t.io, 'Go?')).toBe(true);
    expect(await askSelect(t.io, 'Pick:', [{ name: 'A', value: 'a' }, { name: 'B', value: 'b' }])).toBe('b');
    expect(await askPassword(t.io, 'Password:')).toBe('secret');
    expect(t.prompter.asked.map((q) => [q.type, q.message])).toEqual([
      ['input', 'Host:'],
      ['input', 'Name:'],
      ['confirm', 'Go?'],
      ['select', 'Pick:'],
      ['password', 'Password:'],
    ]);
    expect(t.prompter.remaining).toBe(0);
  });

  test('an answer the check refuses is asked again', async () => {
    const t = terminalStreams({ answers: ['x', '5432'] });
    const port = await askText(t.io, 'Port:', { validate: (v) => (/^\d+$/.test(v) ? true : 'A port is a number.') });
    expect(port).toBe('5432');
    expect(t.prompter.asked[0]).toMatchObject({ answer: 'x', refused: 'A port is a number.' });
  });

  test('confirmDestructive: --yes asks nothing; no terminal needs --yes; at a terminal it shows the details and asks', async () => {
    const yes = terminalStreams();
    expect(await confirmDestructive(yes.io, 'Delete it?', true)).toBe(true);
    expect(yes.prompter.asked).toEqual([]);

    const piped = testStreams();
    await expect(confirmDestructive(piped.io, 'Delete it?', undefined)).rejects.toMatchObject({
      code: 'confirmation_required',
      exitCode: 2,
      message: 'Delete it: pass --yes to confirm without a terminal.',
    });

    const asked = terminalStreams({ answers: [false] });
    expect(await confirmDestructive(asked.io, 'Revoke 2 leases?', undefined, ['lease-1', 'lease-2'])).toBe(false);
    expect(asked.stderr()).toBe('  lease-1\n  lease-2\n');
    expect(asked.prompter.asked).toEqual([{ type: 'confirm', message: 'Revoke 2 leases?', answer: false }]);
  });

  test('a new passphrase: too short or not repeated alike is asked again, with a warning', async () => {
    const t = terminalStreams({ answers: ['short', 'long enough', 'different', 'long enough', 'long enough'] });
    const ask = passphrasePrompt(t.io)!;
    expect(await ask('new')).toBe('long enough');
    expect(t.stderr()).toBe('The passphrase must be at least 8 characters long.\nThe two passphrases differ; try again.\n');
    expect(passphrasePrompt(testStreams().io)).toBeUndefined();
  });

  test(`a wrong passphrase at the terminal is asked again, ${PASSPHRASE_TRIES} tries in all`, async () => {
    const wrong = () => storeError('wrong_key', 'The key from a passphrase does not open the store.');
    const open = async (ask?: (purpose: 'unlock' | 'new') => Promise<string>) => {
      if ((await ask!('unlock')) !== 'right') throw wrong();
      return 'opened';
    };
    const third = terminalStreams({ answers: ['no', 'nope', 'right'] });
    expect(await withPassphraseTries(third.io, open)).toBe('opened');
    expect(third.stderr()).toBe("sy: That passphrase does not open the store; 2 tries left.\nsy: That passphrase does not open the store; 1 try left.\n");

    const never = terminalStreams({ answers: ['a', 'b', 'c', 'd'] });
    await expect(withPassphraseTries(never.io, open)).rejects.toMatchObject({ code: 'wrong_key' });
    expect(never.prompter.remaining).toBe(1);
  });

  test('a key from the environment is not retried, and without a terminal nothing is asked', async () => {
    let calls = 0;
    const t = testStreams();
    await expect(
      withPassphraseTries(t.io, async (ask) => {
        calls++;
        expect(ask).toBeUndefined();
        throw storeError('wrong_key', 'The key from SY_MASTER_KEY does not open the store.');
      }),
    ).rejects.toBeInstanceOf(SyError);
    expect(calls).toBe(1);
  });

  test('Ctrl-C as a scripted answer is the interrupted error', async () => {
    const t = terminalStreams({ answers: [INTERRUPT] });
    await expect(askConfirm(t.io, 'Go?')).rejects.toMatchObject({ code: 'interrupted' });
  });

  test('the passphrase is asked on the controlling terminal when stdout is piped or stdin is not a terminal, three tries too', async () => {
    const open = async (ask?: (purpose: 'unlock' | 'new') => Promise<string>) => {
      if (!ask) throw storeError('no_key', 'no terminal');
      if ((await ask('unlock')) !== 'right') throw storeError('wrong_key', 'The key from a passphrase does not open the store.');
      return 'opened';
    };
    for (const shape of [{ stdinTTY: true }, { stdoutTTY: true }, {}]) {
      const tty = new ScriptedPrompter(['no', 'right']);
      const piped = testStreams({ ...shape, stderrTTY: true, controllingTerminal: tty, answers: [] });
      expect(await withPassphraseTries(piped.io, open)).toBe('opened');
      expect(tty.asked.map((q) => q.message)).toEqual(['Passphrase for the sy store:', 'Passphrase for the sy store:']);
      expect(piped.prompter.asked).toEqual([]);
      expect(piped.stdout()).toBe('');
    }
    const newOne = new ScriptedPrompter(['long enough', 'long enough']);
    expect(await passphrasePrompt(testStreams({ controllingTerminal: newOne }).io)!('new')).toBe('long enough');
    // Other prompts still need stdin and stdout to be terminals.
    await expect(confirmDestructive(testStreams({ controllingTerminal: new ScriptedPrompter([true]) }).io, 'Delete it?', undefined)).rejects.toMatchObject({ exitCode: 2 });
    // No terminal at all: nothing is asked.
    expect(passphrasePrompt(testStreams().io)).toBeUndefined();
  });

  test('a background job of its terminal is not asked: /proc/self/stat says whose the foreground is', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sy-stat-'));
    const stat = (pgrp: number, tpgid: number) => {
      const file = join(dir, `${pgrp}-${tpgid}`);
      writeFileSync(file, `4242 (sy (node) x) S 1 ${pgrp} ${pgrp} 34816 ${tpgid} 4194304 0 0\n`);
      return file;
    };
    try {
      expect(inBackground(stat(100, 100))).toBe(false);
      expect(inBackground(stat(100, 200))).toBe(true);
      expect(inBackground(stat(100, -1))).toBe(false);
      expect(inBackground(join(dir, 'none'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
