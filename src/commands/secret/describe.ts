import type { Context, OutputFlags } from '../../cli/context.js';
import { secretArgument } from '../../cli/flags.js';
import { getSecret, withoutData } from '../../secrets/service.js';
import type { SecretMetadata } from '../../model/secret.js';
import { metadataPrintable } from './shared.js';

/** `sy secret describe`: everything but the data. */
export async function describeCommand(ctx: Context, positional: string | undefined, options: OutputFlags & { path?: string }): Promise<SecretMetadata> {
  const ref = secretArgument(positional, options.path);
  const metadata = withoutData(await getSecret(await ctx.store(), ref));
  await ctx.print(metadataPrintable(metadata), options);
  return metadata;
}
