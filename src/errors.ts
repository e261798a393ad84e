/**
 * The one error type of sy. Every failure a user can see is a SyError with a stable
 * code; the entry point (src/index.ts) is the only place that turns it into an exit status.
 * Messages are plain sentences and must never contain a secret value.
 */
export type ErrorKind =
  | 'failed' // the operation failed: a target refused or was unreachable
  | 'usage' // bad flags or invalid input
  | 'not_found' // secret, lease or version does not exist
  | 'store' // the store could not be opened: no key, wrong key, tampered, locked
  | 'unauthorized' // as a client: the server refused its key or token, or its certificate failed
  | 'forbidden' // as a client: its patterns or caps do not allow it
  | 'interrupted'; // Ctrl-C or a cancelled prompt

const EXIT_STATUS: Record<ErrorKind, number> = {
  failed: 1,
  usage: 2,
  not_found: 3,
  store: 4,
  unauthorized: 4,
  forbidden: 5,
  interrupted: 130,
};

/**
 * What each exit status means, one line each: the manual's EXIT STATUS section is generated
 * from this and EXIT_STATUS, so the two cannot drift (../shared/PRODUCT.md "Exit codes").
 */
const EXIT_MEANING: Record<ErrorKind, string> = {
  failed: 'The operation failed (a target database refused or was unreachable, ...).',
  usage: 'Bad usage or invalid input (flags, JSON, TTL, validation, a recipe its server cannot fulfil).',
  not_found: 'Not found (secret, lease, version).',
  store: 'The store could not be opened (no key, wrong key, tampered or locked).',
  unauthorized: 'As a client (SY_SERVER): the server refused the client\'s key or token, or its certificate failed.',
  forbidden: 'As a client (SY_SERVER): not allowed, the client\'s patterns or caps do not allow it.',
  interrupted: 'Interrupted, or a prompt was cancelled or answered no.',
};

/** Every exit status of sy with its meaning, success first, in increasing order. */
export function exitStatuses(): { code: number; meaning: string }[] {
  const byCode = new Map<number, string>();
  for (const kind of Object.keys(EXIT_STATUS) as ErrorKind[]) {
    const code = EXIT_STATUS[kind];
    byCode.set(code, byCode.has(code) ? `${byCode.get(code)} ${EXIT_MEANING[kind]}` : EXIT_MEANING[kind]);
  }
  const failures = [...byCode].map(([code, meaning]) => ({ code, meaning }));
  return [{ code: 0, meaning: 'Success.' }, ...failures.sort((a, b) => a.code - b.code)];
}

export class SyError extends Error {
  readonly kind: ErrorKind;
  /** Stable machine-readable code, e.g. `secret_not_found`. */
  readonly code: string;
  /** Optional second sentence telling the user what to do. */
  readonly hint?: string;

  constructor(kind: ErrorKind, code: string, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SyError';
    this.kind = kind;
    this.code = code;
    this.hint = options.hint;
  }

  get exitCode(): number {
    return EXIT_STATUS[this.kind];
  }
}

export const usageError = (code: string, message: string, hint?: string): SyError =>
  new SyError('usage', code, message, { hint });

export const notFound = (code: string, message: string): SyError => new SyError('not_found', code, message);

export const storeError = (code: string, message: string, hint?: string, cause?: unknown): SyError =>
  new SyError('store', code, message, { hint, cause });

export const failed = (code: string, message: string, hint?: string, cause?: unknown): SyError =>
  new SyError('failed', code, message, { hint, cause });

export const unauthorized = (code: string, message: string, hint?: string): SyError => new SyError('unauthorized', code, message, { hint });

export const forbidden = (code: string, message: string): SyError => new SyError('forbidden', code, message);

export const interrupted = (): SyError => new SyError('interrupted', 'interrupted', 'Interrupted.');

/** A question answered no: exit 130 like Ctrl-C, but saying what did not happen ("Nothing was deleted."). */
export const cancelled = (whatDidNotHappen: string): SyError => new SyError('interrupted', 'cancelled', whatDidNotHappen);
