import type { Context } from '../../cli/context.js';
import { type Printable, type Table, envName, keyValueTable, scalarText } from '../../io/format.js';
import { readJsonObject } from '../../io/input.js';
import type { RecipeCheck } from '../../secrets/service.js';
import { kindOf } from '../../secrets/validate.js';
import { CONNECT_TIMEOUT_MS } from '../../leases/deps.js';
import { localTime } from '../../util/time.js';
import type { Secret, SecretMetadata } from '../../model/secret.js';

/**
 * The server check of dynamic recipes for create and update, unless `--no-verify`. It
 * connects as lease create does (the engine's driver is loaded only then, with the same
 * connect timeout and spinner).
 */
export function recipeCheck(ctx: Context, verify: boolean | undefined): RecipeCheck | undefined {
  if (verify === false) return undefined;
  return async (connection, recipe) => {
    const [deps, { checkRecipeOnServer }] = await Promise.all([ctx.leaseDeps(), import('../../secrets/verify.js')]);
    return checkRecipeOnServer({ connect: deps.connect, connectTimeoutMs: CONNECT_TIMEOUT_MS, progress: deps.progress }, connection, recipe);
  };
}

/** Notices that came back with a result, on stderr, after the spinner is gone. */
export function printWarnings(ctx: Context, warnings: string[]): void {
  if (warnings.length === 0) return;
  ctx.stopSpinner();
  for (const warning of warnings) ctx.io.warn(`warning: ${warning}`);
}

export async function optionalJson(value: string | undefined, flag: string, stdin: NodeJS.ReadableStream) {
  return value === undefined ? undefined : readJsonObject(value, flag, stdin);
}

/** Tables show times in local time; JSON keeps ISO-8601 UTC. */
function localTimes<T extends { created: string; lastModified: string }>(record: T): T {
  return { ...record, created: localTime(record.created), lastModified: localTime(record.lastModified) };
}

export function secretPrintable(secret: Secret): Printable {
  return {
    value: secret,
    table: () => keyValueTable(localTimes(secret)),
    env: () => {
      const vars: Record<string, string> = {};
      for (const [key, value] of Object.entries(secret.data)) vars[envName(key)] = scalarText(value);
      return vars;
    },
  };
}

export function metadataPrintable(secret: SecretMetadata): Printable {
  return { value: secret, table: () => keyValueTable(localTimes(secret)) };
}

export function secretListPrintable(secrets: SecretMetadata[]): Printable {
  return {
    value: { data: secrets },
    table: (): Table => [
      ['PATH', 'KIND', 'VERSION', 'DESCRIPTION', 'ID'],
      ...secrets.map((s) => [s.path, kindOf(s.attributes), String(s.version), s.description, s.id]),
    ],
  };
}
