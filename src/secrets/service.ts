import type { AuditEvent } from '../audit/chain.js';
import { SyError, notFound, usageError } from '../errors.js';
import type { Store } from '../store/store.js';
import type { Secret, SecretContent, SecretMetadata } from '../model/secret.js';
import { canonicalPath, newSecretPath, refName } from './path.js';
import type { SecretRef } from '../model/secret.js';
import { checkFieldNames, kindOf, parseBaseConnection } from './validate.js';
import { isObject } from '../util/object.js';
import { parseDuration } from '../util/duration.js';
import type { Attributes, BaseConnection, DynamicRecipe, SecretData, SecretKind } from '../model/secret.js';
import { followLink } from './lookup.js';
import type { RecipeVerdict } from './verify.js';

/**
 * Secret operations: validation, versions and links. They return data and never print.
 * Each change is recorded in the store's audit log, success or failure, as the lease
 * operations record theirs.
 */

export interface Checked {
  kind: SecretKind;
  linkedPath?: string;
}

/** What checkContent learnt on the way: a dynamic secret's recipe and its base's admin connection. */
export interface CheckedContent extends Checked {
  dynamic?: { connection: BaseConnection; recipe: DynamicRecipe };
}

/**
 * Asks the server of a dynamic secret's base whether it can fulfil the recipe (see
 * verify.ts). The command layer passes one unless `--no-verify`; without one nothing is
 * checked there.
 */
export type RecipeCheck = (connection: BaseConnection, recipe: DynamicRecipe) => Promise<RecipeVerdict>;

/** A stored secret, and the notices for the user that came with storing it. */
export interface Written {
  secret: Secret;
  warnings: string[];
}

/** Validates a secret's content by its kind; a dynamic secret's base must exist and be a base. */
export async function checkContent(store: Store, attributes: Attributes, data: SecretData): Promise<CheckedContent> {
  checkFieldNames(attributes, data);
  const kind = kindOf(attributes);
  if (kind === 'base') {
    parseBaseConnection(attributes, data);
    return { kind };
  }
  if (kind === 'dynamic') {
    const { basePath, connection, recipe } = await followLink(store, attributes, data);
    return { kind, linkedPath: basePath, dynamic: { connection, recipe } };
  }
  return { kind };
}

/**
 * Runs the server check of a dynamic recipe: what the server would refuse fails with exit 2
 * before anything is stored (the first problem as the message); a server that could not be
 * asked becomes a warning, and the secret is stored as given.
 */
async function checkOnServer(path: string, checked: CheckedContent, check: RecipeCheck | undefined): Promise<string[]> {
  if (check === undefined || checked.dynamic === undefined) return [];
  const verdict = await check(checked.dynamic.connection, checked.dynamic.recipe);
  if (!verdict.checked) return [`${path} was stored without checking its recipe: ${verdict.reason.charAt(0).toLowerCase()}${verdict.reason.slice(1)}`];
  if (verdict.problems.length === 0) return [];
  const more = verdict.problems.length - 1;
  const hint =
    more === 0
      ? "Nothing was stored: fix the recipe or the admin's grants, or give --no-verify to store it unchecked."
      : `${more} more problem${more === 1 ? ' was' : 's were'} found and nothing was stored: fix them, or give --no-verify to store it unchecked.`;
  throw usageError('recipe_not_grantable', verdict.problems[0], hint);
}

/**
 * Runs a change and records it. A log that the append would refuse (exit 4) is refused
 * before anything is done: a change must not happen that could not then be recorded.
 */
async function audited<T>(store: Store, event: Omit<AuditEvent, 'outcome' | 'error'>, operation: () => Promise<T>): Promise<T> {
  await store.audit.check();
  try {
    const result = await operation();
    await store.audit.append([{ ...event, outcome: 'success' }]);
    return result;
  } catch (error) {
    if (error instanceof SyError) await store.audit.append([{ ...event, outcome: 'failure', error: error.message }]);
    throw error;
  }
}

/**
 * A dynamic secret's `ttl` and `maxTtl` are stored in seconds, as the contract says, however
 * they were written: `"5m"` is stored as 300, so every reader (a script, the lease API, an
 * older sy) sees a number.
 */
export function inSeconds(attributes: Attributes): Attributes {
  if (kindOf(attributes) !== 'dynamic') return attributes;
  const out = { ...attributes };
  for (const key of ['ttl', 'maxTtl'] as const) {
    const value = attributes[key];
    if (typeof value === 'string') out[key] = parseDuration(value, `attributes.${key}`);
  }
  return out;
}

export async function createSecret(store: Store, path: string, given: SecretContent, check?: RecipeCheck): Promise<Written> {
  return audited(store, { action: 'secret.create', path }, async () => {
    const content = { ...given, attributes: inSeconds(given.attributes) };
    const canonical = newSecretPath(path);
    const { dynamic, ...checked } = await checkContent(store, content.attributes, content.data);
    const warnings = await checkOnServer(canonical, { ...checked, dynamic }, check);
    return { secret: await store.secrets.create({ ...content, path: canonical, ...checked }), warnings };
  });
}

export async function getSecret(store: Store, ref: SecretRef, version?: number): Promise<Secret> {
  const secret = await store.secrets.get(ref, version);
  if (secret) return secret;
  const name = 'id' in ref ? ref.id : ref.path;
  if (version !== undefined && (await store.secrets.get(ref))) {
    throw notFound('version_not_found', `${name} has no version ${version}.`);
  }
  throw notFound('secret_not_found', `No secret at ${name}.`);
}

export function withoutData(secret: Secret): SecretMetadata {
  const { data: _data, ...metadata } = secret;
  return metadata;
}

export interface SecretChange {
  description?: string;
  attributes?: Attributes;
  data?: SecretData;
  /** Replace data and attributes instead of merging them. */
  overwrite: boolean;
}

/**
 * Adds a version; retried when another process wrote the same secret in between. A change
 * of a dynamic secret's attributes is checked on the server (`check`), once per distinct
 * recipe however many retries it takes.
 */
export async function updateSecret(store: Store, ref: SecretRef, change: SecretChange, check?: RecipeCheck): Promise<Written> {
  return audited(store, { action: 'secret.update', path: refName(ref) }, () => tryUpdate(store, ref, change, check));
}

async function tryUpdate(store: Store, ref: SecretRef, change: SecretChange, check?: RecipeCheck): Promise<Written> {
  let warnings: string[] = [];
  let checkedRecipe: string | undefined;
  for (let attempt = 0; attempt < 10; attempt++) {
    const current = await getSecret(store, ref);
    const next: SecretContent = {
      description: change.description ?? current.description,
      attributes: change.attributes === undefined ? current.attributes : inSeconds(change.overwrite ? change.attributes : mergePatch(current.attributes, change.attributes)),
      data: change.data === undefined ? current.data : change.overwrite ? change.data : mergePatch(current.data, change.data),
    };
    const beforeWrite =
      change.attributes === undefined
        ? undefined
        : async (checked: CheckedContent) => {
            const key = JSON.stringify([checked.linkedPath, checked.dynamic?.recipe]);
            if (key === checkedRecipe) return;
            warnings = await checkOnServer(current.path, checked, check);
            checkedRecipe = key;
          };
    const written = await writeVersion(store, current, next, beforeWrite);
    if (written) return { secret: written, warnings };
  }
  throw usageError('update_conflict', 'The secret kept changing while it was being updated; try again.');
}

export async function rollbackSecret(store: Store, ref: SecretRef, version?: number): Promise<Secret> {
  return audited(store, { action: 'secret.rollback', path: refName(ref) }, () => tryRollback(store, ref, version));
}

async function tryRollback(store: Store, ref: SecretRef, version?: number): Promise<Secret> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const current = await getSecret(store, ref);
    const wanted = version ?? current.version - 1;
    if (wanted < 1) throw notFound('version_not_found', `${current.path} has no earlier version to roll back to.`);
    const target = await getSecret(store, { id: current.id }, wanted);
    const written = await writeVersion(store, current, { description: target.description, attributes: target.attributes, data: target.data });
    if (written) return written;
  }
  throw usageError('update_conflict', 'The secret kept changing while it was being rolled back; try again.');
}

async function writeVersion(
  store: Store,
  current: Secret,
  next: SecretContent,
  beforeWrite?: (checked: CheckedContent) => Promise<void>,
): Promise<Secret | undefined> {
  const checked = await checkContent(store, next.attributes, next.data);
  const currentKind = kindOf(current.attributes);
  if (checked.kind !== currentKind) {
    throw usageError('kind_change', `${current.path} is a ${currentKind} secret and cannot become a ${checked.kind} one.`, 'Create a new secret instead.');
  }
  await beforeWrite?.(checked);
  return store.secrets.addVersion(current.id, current.version, { ...next, linkedPath: checked.linkedPath });
}

/** RFC 7386 JSON merge patch: objects merge, `null` removes a key, anything else replaces. */
export function mergePatch(target: Record<string, unknown>, patch: Record<string, unknown>): Record<string, unknown> {
  const result: Record<string, unknown> = { ...target };
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else if (isObject(value) && isObject(result[key])) result[key] = mergePatch(result[key] as Record<string, unknown>, value);
    else result[key] = value;
  }
  return result;
}

export async function deleteSecret(store: Store, ref: SecretRef, force: boolean): Promise<Secret> {
  return audited(store, { action: 'secret.delete', path: refName(ref) }, async () => {
    const secret = await getSecret(store, ref);
    await store.secrets.delete(secret.id, { force });
    return secret;
  });
}

/** Paths containing `query`, or (`linkedTo`) the dynamic secrets linked to that base path. */
export async function searchSecrets(store: Store, options: { query?: string; linkedTo?: string; limit: number }): Promise<SecretMetadata[]> {
  if (options.linkedTo !== undefined) return store.secrets.search({ linkedTo: canonicalPath(options.linkedTo), limit: options.limit });
  return store.secrets.search({ query: options.query, limit: options.limit });
}
