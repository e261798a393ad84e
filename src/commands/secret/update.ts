import type { Context, OutputFlags } from '../../cli/context.js';
import { secretArgument } from '../../cli/flags.js';
import { usageError } from '../../errors.js';
import { updateSecret, withoutData } from '../../secrets/service.js';
import type { SecretMetadata } from '../../model/secret.js';
import { metadataPrintable, optionalJson, printWarnings, recipeCheck } from './shared.js';

export interface UpdateOptions extends OutputFlags {
  path?: string;
  data?: string;
  attributes?: string;
  desc?: string;
  overwrite?: boolean;
  /** false with --no-verify: changed dynamic attributes are stored without asking the server. */
  verify?: boolean;
}

/** `sy secret update`: a new version; data and attributes are merged unless --overwrite. */
export async function updateCommand(ctx: Context, positional: string | undefined, options: UpdateOptions): Promise<SecretMetadata> {
  const ref = secretArgument(positional, options.path);
  if (options.data === undefined && options.attributes === undefined && options.desc === undefined) {
    throw usageError('nothing_to_update', 'Nothing to update: give --data, --attributes or --desc.');
  }
  if (options.data === '-' && options.attributes === '-') throw usageError('stdin_twice', 'Only one flag can read from stdin (-).');
  const data = await optionalJson(options.data, '--data', ctx.io.stdin);
  const attributes = await optionalJson(options.attributes, '--attributes', ctx.io.stdin);
  const check = recipeCheck(ctx, options.verify);
  const store = await ctx.store();
  const { secret, warnings } = await updateSecret(store, ref, { data, attributes, description: options.desc, overwrite: Boolean(options.overwrite) }, check);
  printWarnings(ctx, warnings);
  const metadata = withoutData(secret);
  await ctx.print(metadataPrintable(metadata), options);
  return metadata;
}
