import { usageError } from '../errors.js';
import type { SecretRef } from '../model/secret.js';

const SEGMENT = /^[A-Za-z0-9@+._-]+$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAX_PATH_LENGTH = 256;

/** `db/postgresql/root` and `db:postgresql:root` name the same secret; `:` is canonical. */
export function canonicalPath(input: string): string {
  if (typeof input !== 'string' || input.length === 0) {
    throw usageError('invalid_path', 'A secret path is required.');
  }
  if (input.length > MAX_PATH_LENGTH) {
    throw usageError('invalid_path', `A secret path may be at most ${MAX_PATH_LENGTH} characters long.`);
  }
  const segments = input.split(/[:/]/);
  if (segments.some((s) => !SEGMENT.test(s) || /^\.+$/.test(s))) {
    throw usageError(
      'invalid_path',
      `"${printable(input)}" is not a valid secret path: use segments of letters, digits and @+._- (not only dots) joined by ":" or "/".`,
    );
  }
  return segments.join(':');
}

/**
 * A `--prefix`: a path, whose one trailing separator is accepted as in Vault
 * (`db:postgresql:`, `db/postgresql/`, and what bash completion stops at).
 */
export function canonicalPrefix(input: string): string {
  return canonicalPath(input.length > 1 && /[:/]$/.test(input) ? input.slice(0, -1) : input);
}

/**
 * Whether a canonical path is `prefix` itself or lies below it: whole segments, case as
 * written, so `db:postgresql` holds `db:postgresql:dyn1` but not `db:postgresqlx:a`.
 */
export function isUnderPrefix(path: string, prefix: string): boolean {
  return path === prefix || path.startsWith(`${prefix}:`);
}

/**
 * The path of a new secret. A path shaped like an id would be read as that id by every
 * command that takes `<path|id>` (see secretRef): it could never be reached by its path,
 * and could be mistaken for the secret whose id it is. So it is refused, here, once.
 */
export function newSecretPath(input: string): string {
  const path = canonicalPath(input);
  if (isUuid(path)) {
    throw usageError('ambiguous_path', `"${path}" has the shape of a secret id (a UUID), so it cannot be a path; put it below a segment such as "app:${path}".`);
  }
  return path;
}

export function isUuid(value: string): boolean {
  return UUID.test(value);
}

/** A secret is named by its path or by its id (a UUID). */

export function refName(ref: SecretRef): string {
  return 'id' in ref ? ref.id : ref.path;
}

export function secretRef(pathOrId: string): SecretRef {
  return isUuid(pathOrId) ? { id: pathOrId.toLowerCase() } : { path: canonicalPath(pathOrId) };
}

/** Paths are names, not secrets, but a user may paste anything: keep messages on one line. */
function printable(value: string): string {
  const oneLine = value.replace(/[\u0000-\u001f\u007f]/g, '?');
  return oneLine.length > 80 ? `${oneLine.slice(0, 77)}...` : oneLine;
}
