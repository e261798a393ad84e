/**
 * A client's `--allow` patterns (PRODUCT.md, "Clients and the lease API"), matched by whole
 * path segments as `--prefix` is: a path matches itself; `prefix:*` (or `prefix/*`) matches
 * every path strictly below `prefix` (`db:postgresql:*` matches `db:postgresql:dyn1` and
 * `db:postgresql:a:b`, not `db:postgresql` itself, as Vault's `secret/foo/*` does not match
 * `secret/foo`, nor `db:postgresqlx:a`); `*` alone matches every path. `:` and `/` are the
 * same separator, case is as written, and a `*` anywhere else is no pattern at all. A path
 * that is not a valid secret path (`..` or empty segments, other characters) matches
 * nothing, whatever the patterns.
 */
import { SyError, usageError } from '../errors.js';
import { canonicalPath } from '../secrets/path.js';

export const ALLOW_ALL = '*';

/** The pattern in its canonical spelling (`:` separators); a usage error (exit 2) naming it when it is none. */
export function canonicalPattern(pattern: string): string {
  if (pattern === ALLOW_ALL) return ALLOW_ALL;
  const below = /[:/]\*$/.test(pattern);
  const path = below ? pattern.slice(0, -2) : pattern;
  try {
    if (path.includes('*')) throw usageError('invalid_pattern', 'a star inside the pattern');
    return below ? `${canonicalPath(path)}:*` : canonicalPath(path);
  } catch (error) {
    if (!(error instanceof SyError)) throw error;
    throw usageError(
      'invalid_pattern',
      `${JSON.stringify(printable(pattern))} is not a valid pattern: use a secret path, a path ending in ":*" for every path below it, or "*" alone.`,
    );
  }
}

/** Throws a usage error (exit 2) naming the pattern when it is not one. */
export function validatePattern(pattern: string): void {
  canonicalPattern(pattern);
}

/** Whether any of the patterns allows `path`. Patterns that are not valid allow nothing. */
export function patternsAllow(patterns: readonly string[], path: string): boolean {
  const canonical = tryCanonical(canonicalPath, path);
  if (canonical === undefined) return false;
  return patterns.some((raw) => {
    const pattern = tryCanonical(canonicalPattern, raw);
    if (pattern === undefined) return false;
    if (pattern === ALLOW_ALL) return true;
    if (pattern.endsWith(':*')) return canonical.startsWith(pattern.slice(0, -1));
    return canonical === pattern;
  });
}

function tryCanonical(fn: (text: string) => string, text: unknown): string | undefined {
  if (typeof text !== 'string') return undefined;
  try {
    return fn(text);
  } catch {
    return undefined;
  }
}

function printable(value: string): string {
  const oneLine = value.replace(/[\u0000-\u001f\u007f]/g, '?');
  return oneLine.length > 80 ? `${oneLine.slice(0, 77)}...` : oneLine;
}
