import { closeSync, openSync, readSync } from 'node:fs';
import { usageError } from '../errors.js';
import { isObject } from '../util/object.js';

/**
 * The most a JSON flag value may hold. A secret is a few credentials, not a payload; the cap
 * keeps a mistaken `@/dev/zero` or a runaway pipe from taking the machine's memory.
 */
export const MAX_JSON_BYTES = 1024 * 1024;
/** Deeper JSON is refused before parsing: no secret needs it, and recursion on it overflows the stack. */
export const MAX_JSON_DEPTH = 64;

const tooLarge = (flag: string, what = 'JSON') => usageError(`${what.toLowerCase()}_too_large`, `The ${what} given to ${flag} is larger than 1 MiB.`);

/**
 * Reads a JSON flag value: inline JSON, `@file`, or `-` for stdin. `@file` and stdin exist
 * so secret values stay out of argv and `ps`. None of them is read past the cap.
 */
export async function readJsonObject(value: string, flag: string, stdin: NodeJS.ReadableStream): Promise<Record<string, unknown>> {
  let text: string;
  if (value === '-') {
    text = await readCapped(stdin, flag);
  } else if (value.startsWith('@')) {
    text = readFileCapped(value.slice(1), flag);
  } else {
    if (Buffer.byteLength(value, 'utf8') > MAX_JSON_BYTES) throw tooLarge(flag);
    text = value;
  }
  const parsed = parseJsonLeniently(text, flag);
  if (!isObject(parsed)) {
    throw usageError('invalid_json', `${flag} must be a JSON object such as {"key": "value"}.`);
  }
  return parsed;
}

/**
 * Reads a text flag value (a PEM key): inline, `@file`, or `-` for stdin, as JSON values
 * are, to the same cap. The text is not echoed in any error.
 */
export async function readTextValue(value: string, flag: string, stdin: NodeJS.ReadableStream): Promise<string> {
  if (value === '-') return readCapped(stdin, flag, 'text');
  if (value.startsWith('@')) return readFileCapped(value.slice(1), flag, 'text');
  if (Buffer.byteLength(value, 'utf8') > MAX_JSON_BYTES) throw tooLarge(flag, 'text');
  return value;
}

/** Stops reading one byte past the cap, so an endless stream costs at most that much. */
async function readCapped(stream: NodeJS.ReadableStream, flag: string, what?: string): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    size += buffer.length;
    if (size > MAX_JSON_BYTES) {
      // Leaving the loop destroys the stream: the writer gets EPIPE instead of filling our memory.
      throw tooLarge(flag, what);
    }
    chunks.push(buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Reads by hand rather than with readFileSync: a FIFO or a device has no size to trust. */
function readFileCapped(file: string, flag: string, what?: string): string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    throw usageError('unreadable_file', `The file given to ${flag} cannot be read (${file}).`);
  }
  try {
    const buffer = Buffer.alloc(MAX_JSON_BYTES + 1);
    let size = 0;
    for (;;) {
      let read: number;
      try {
        read = readSync(fd, buffer, size, buffer.length - size, null);
      } catch {
        throw usageError('unreadable_file', `The file given to ${flag} cannot be read (${file}).`);
      }
      if (read === 0) break;
      size += read;
      if (size > MAX_JSON_BYTES) throw tooLarge(flag, what);
    }
    return buffer.subarray(0, size).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/**
 * JSON.parse that forgives trailing commas (the DSV documentation shows them), refuses
 * nesting deeper than MAX_JSON_DEPTH, and whose error names a line and column but never
 * echoes the input, which may hold a password.
 */
export function parseJsonLeniently(text: string, flag: string): unknown {
  const cleaned = scanJson(text.replace(/^\uFEFF/, ''), flag);
  if (cleaned.trim() === '') throw usageError('invalid_json', `${flag} is empty: give a JSON object.`);
  try {
    return JSON.parse(cleaned);
  } catch (error) {
    const position = /position (\d+)/.exec(String((error as Error).message));
    const where = position ? ` near ${lineAndColumn(cleaned, Number(position[1]))}` : '';
    throw usageError('invalid_json', `The JSON given to ${flag} is malformed${where}.`);
  }
}

function lineAndColumn(text: string, offset: number): string {
  const before = text.slice(0, offset).split('\n');
  return `line ${before.length}, column ${before[before.length - 1].length + 1}`;
}

/**
 * One linear pass outside strings: measures the nesting of `{` and `[` (refusing it past
 * the limit) and drops commas that directly precede `}` or `]`. The text is copied in
 * slices, not character by character, so a megabyte costs a megabyte.
 */
function scanJson(text: string, flag: string): string {
  const kept: string[] = [];
  let from = 0;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inString = false;
      continue;
    }
    if (c === 0x22) {
      inString = true;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (++depth > MAX_JSON_DEPTH) {
        throw usageError('json_too_deep', `The JSON given to ${flag} is nested more than ${MAX_JSON_DEPTH} levels deep.`);
      }
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
    } else if (c === 0x2c /* , */) {
      let j = i + 1;
      while (j < text.length && /\s/.test(text[j])) j++;
      if (text[j] === '}' || text[j] === ']') {
        kept.push(text.slice(from, i));
        from = i + 1;
      }
    }
  }
  kept.push(text.slice(from));
  return kept.join('');
}
