import { SyError } from '../../src/errors.js';

/** The message of the usage error (exit 2) that `fn` throws; fails the test if it throws none. */
export function usageMessage(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(SyError);
    expect((error as SyError).exitCode).toBe(2);
    return (error as SyError).message;
  }
  throw new Error('expected a usage error');
}
