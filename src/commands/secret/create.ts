import type { Context, OutputFlags } from '../../cli/context.js';
import { pathArgument } from '../../cli/flags.js';
import { usageError } from '../../errors.js';
import { readJsonObject } from '../../io/input.js';
import { createSecret, withoutData } from '../../secrets/service.js';
import { isObject } from '../../util/object.js';
import type { SecretContent, SecretMetadata } from '../../model/secret.js';
import { metadataPrintable, optionalJson, printWarnings, recipeCheck } from './shared.js';

export interface CreateOptions extends OutputFlags {
  path?: string;
  data?: string;
  attributes?: string;
  desc?: string;
  body?: string;
  /** false with --no-verify: a dynamic recipe is stored without asking its server. */
  verify?: boolean;
}

/**
 * `sy secret create`: version 1 of a new secret, from flags or, on a terminal with none of
 * them, from a wizard. Prints its metadata, never its data.
 */
export async function createCommand(ctx: Context, positional: string | undefined, options: CreateOptions): Promise<SecretMetadata> {
  const wanted = await (options.body === undefined && options.data === undefined && options.attributes === undefined
    ? fromWizard(ctx, positional, options)
    : fromFlags(ctx, positional, options));
  const check = recipeCheck(ctx, options.verify);
  const { secret, warnings } = await createSecret(await ctx.store(), wanted.path, wanted, check);
  printWarnings(ctx, warnings);
  const metadata = withoutData(secret);
  await ctx.print(metadataPrintable(metadata), options);
  return metadata;
}

type Wanted = SecretContent & { path: string };

async function fromWizard(ctx: Context, positional: string | undefined, options: CreateOptions): Promise<Wanted> {
  if (!ctx.io.canPrompt()) {
    throw usageError('nothing_to_create', 'Nothing to create: give --data, --attributes or --body (the wizard needs a terminal).');
  }
  const { secretWizard } = await import('./wizard.js');
  return secretWizard(ctx, pathArgument(positional, options.path, false));
}

async function fromFlags(ctx: Context, positional: string | undefined, options: CreateOptions): Promise<Wanted> {
  if ([options.body, options.data, options.attributes].filter((v) => v === '-').length > 1) {
    throw usageError('stdin_twice', 'Only one flag can read from stdin (-).');
  }
  const body = options.body === undefined ? {} : await readJsonObject(options.body, '--body', ctx.io.stdin);
  const data = (await optionalJson(options.data, '--data', ctx.io.stdin)) ?? objectField(body, 'data') ?? {};
  const attributes = (await optionalJson(options.attributes, '--attributes', ctx.io.stdin)) ?? objectField(body, 'attributes') ?? {};
  const description = options.desc ?? stringField(body, 'description') ?? '';
  const path = pathArgument(positional, options.path, false) ?? stringField(body, 'path');
  if (path === undefined) throw usageError('missing_path', 'A secret path is required (as an argument, with --path, or in --body).');
  return { path, description, attributes, data };
}

function objectField(body: Record<string, unknown>, field: string): Record<string, unknown> | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (!isObject(value)) throw usageError('invalid_json', `--body: "${field}" must be a JSON object.`);
  return value;
}

function stringField(body: Record<string, unknown>, field: string): string | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw usageError('invalid_json', `--body: "${field}" must be a string.`);
  return value;
}
