import { readFileSync } from 'node:fs';
import { usageError } from '../errors.js';
import { isObject } from '../secrets/validate.js';

/**
 * Reads a JSON flag value: inline JSON, `@file`, or `-` for stdin. `@file` and stdin exist
 * so secret values stay out of argv and `ps`.
 */
export async function readJsonObject(value: string, flag: string, stdin: NodeJS.ReadableStream): Promise<Record<string, unknown>> {
  let text: string;
  if (value === '-') {
    text = await readAll(stdin);
  } else if (value.startsWith('@')) {
    const file = value.slice(1);
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      throw usageError('unreadable_file', `The file given to ${flag} cannot be read (${file}).`);
    }
  } else {
    text = value;
  }
  const parsed = parseJsonLeniently(text, flag);
  if (!isObject(parsed)) {
    throw usageError('invalid_json', `${flag} must be a JSON object such as {"key": "value"}.`);
  }
  return parsed;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * JSON.parse that forgives trailing commas (the DSV documentation shows them) and whose
 * error names a line and column but never echoes the input, which may hold a password.
 */
export function parseJsonLeniently(text: string, flag: string): unknown {
  const cleaned = withoutTrailingCommas(text.replace(/^\uFEFF/, ''));
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

/** Removes commas that directly precede `}` or `]`, outside strings. */
function withoutTrailingCommas(text: string): string {
  let result = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      result += c;
      if (c === '\\') {
        result += text[++i] ?? '';
      } else if (c === '"') {
        inString = false;
      }
      continue;
    }
    if (c === '"') {
      inString = true;
    } else if (c === ',') {
      let j = i + 1;
      while (j < text.length && /\s/.test(text[j])) j++;
      if (text[j] === '}' || text[j] === ']') continue;
    }
    result += c;
  }
  return result;
}
