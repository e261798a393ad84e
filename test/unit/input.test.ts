import { Readable } from 'node:stream';
import { SyError } from '../../src/errors.js';
import { MAX_JSON_BYTES, readJsonObject } from '../../src/io/input.js';

const noStdin = Readable.from([]);

async function usageMessage(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(SyError);
    expect((error as SyError).exitCode).toBe(2);
    return (error as SyError).message;
  }
  throw new Error('expected a usage error');
}

describe('JSON flag values', () => {
  it('are capped at 1 MiB inline too (argv can carry more than one argument of 128 KiB in all)', async () => {
    expect(MAX_JSON_BYTES).toBe(1024 * 1024);
    const big = JSON.stringify({ a: 'x'.repeat(MAX_JSON_BYTES) });
    expect(await usageMessage(readJsonObject(big, '--data', noStdin))).toBe('The JSON given to --data is larger than 1 MiB.');
    const fits = JSON.stringify({ a: 'x'.repeat(MAX_JSON_BYTES - 16) });
    await expect(readJsonObject(fits, '--data', noStdin)).resolves.toHaveProperty('a');
  });
  it('count multi-byte characters as the bytes they take', async () => {
    const wide = JSON.stringify({ a: 'é'.repeat(MAX_JSON_BYTES / 2) });
    expect(await usageMessage(readJsonObject(wide, '--data', noStdin))).toMatch(/larger than 1 MiB/);
  });
  it('are refused past 64 levels, counting only brackets outside strings', async () => {
    const deep = (n: number) => `${'['.repeat(n - 1)}${']'.repeat(n - 1)}`;
    expect(await usageMessage(readJsonObject(`{"a": ${deep(65)}}`, '--body', noStdin))).toBe('The JSON given to --body is nested more than 64 levels deep.');
    await expect(readJsonObject(`{"a": ${deep(64)}}`, '--body', noStdin)).resolves.toHaveProperty('a');
    await expect(readJsonObject(`{"a": "${'[{'.repeat(100)}\\"${'['.repeat(100)}"}`, '--body', noStdin)).resolves.toHaveProperty('a');
  });
  it('still forgive trailing commas and name the line of a mistake', async () => {
    await expect(readJsonObject('{"a": [1, 2,], }', '--data', noStdin)).resolves.toEqual({ a: [1, 2] });
    expect(await usageMessage(readJsonObject('{"a": 1,\n "b" 2}', '--data', noStdin))).toMatch(/line 2/);
  });
});
