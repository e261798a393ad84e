import { usageError } from '../errors.js';
import { KEY_SOURCES, type KeySourceName } from '../keys/sources.js';
import type { SecretRef } from '../model/secret.js';
import { canonicalPath, isUuid, secretRef } from '../secrets/path.js';
import { parseDuration } from '../util/duration.js';

/**
 * Flag text into typed values, once, at the edge (gh's cmdutil): commands call these and
 * hand on seconds, numbers and references, never the text. Each error names its flag, so
 * nothing below the commands needs to know which flag a value came from. A flag that is
 * not given is `undefined`; its default belongs to the command (or the domain) that knows it.
 */

/** `--ttl 1h30m`, `--interval 60s`: seconds (`3600`, `90s`, `15m`, `1h30m`, `1d`). */
export function seconds(value: string | undefined, flag: string): number | undefined {
  return value === undefined ? undefined : parseDuration(value, flag);
}

export interface WholeNumberRange {
  min: number;
  max?: number;
  /** The error's stable code. */
  code?: string;
}

/** `--limit 25`: digits only, at least `min` and, when given, at most `max`. */
export function wholeNumber(value: string | undefined, flag: string, { min, max, code = 'invalid_number' }: WholeNumberRange): number | undefined {
  if (value === undefined) return undefined;
  const number = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!(number >= min) || (max !== undefined && number > max)) {
    const range = max === undefined ? `of ${min} or more` : `between ${min} and ${max}`;
    throw usageError(code, `${flag} must be a whole number ${range}.`);
  }
  return number;
}

/** `--version 3`: a secret's version, counted from 1. */
export function secretVersion(value: string | undefined): number | undefined {
  return wholeNumber(value, '--version', { min: 1, code: 'invalid_version' });
}

/** `--record-uid`: a secret's id (a UUID), in the store's lower case. */
export function recordUid(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (!isUuid(value)) throw usageError('invalid_record_uid', '--record-uid must be the id (a UUID) of a dynamic secret.');
  return value.toLowerCase();
}

/** `--record-uid ID | --path P`, exactly one of them: the dynamic secret of `lease create` and `run`. */
export function dynamicSecretRef(flags: { recordUid?: string; path?: string }): SecretRef {
  if ((flags.recordUid === undefined) === (flags.path === undefined)) {
    throw usageError('missing_secret', 'Name the dynamic secret with exactly one of --record-uid or --path.');
  }
  const id = recordUid(flags.recordUid);
  return id !== undefined ? { id } : { path: canonicalPath(flags.path!) };
}

/** The positional path, or `--path`; exactly one of them. */
export function pathArgument(positional: string | undefined, flag: string | undefined, required = true): string | undefined {
  if (positional !== undefined && flag !== undefined && positional !== flag) {
    throw usageError('conflicting_path', 'Give the path once: as an argument or with --path, not both.');
  }
  const path = positional ?? flag;
  if (path === undefined && required) throw usageError('missing_path', 'A secret path is required (as an argument or with --path).');
  return path;
}

/** `<path|id>` or `--path`: the secret that `read`, `describe`, `update`, `delete` and `rollback` name. */
export function secretArgument(positional: string | undefined, flag: string | undefined): SecretRef {
  return secretRef(pathArgument(positional, flag)!);
}

/** `--key-source`, `--to`: where the store's key comes from. */
export function keySource(value: string | undefined, flag: string): KeySourceName | undefined {
  if (value === undefined) return undefined;
  if (!(KEY_SOURCES as string[]).includes(value)) {
    throw usageError('invalid_key_source', `${flag} must be one of ${KEY_SOURCES.join(', ')}.`);
  }
  return value as KeySourceName;
}
