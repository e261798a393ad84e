import type { Context, OutputFlags } from '../../cli/context.js';
import { secretArgument, secretVersion } from '../../cli/flags.js';
import { rollbackSecret, withoutData } from '../../secrets/service.js';
import type { SecretMetadata } from '../../model/secret.js';
import { metadataPrintable } from './shared.js';

/** `sy secret rollback`: a new version equal to version N (default: the previous one). */
export async function rollbackCommand(ctx: Context, positional: string | undefined, options: OutputFlags & { path?: string; version?: string }): Promise<SecretMetadata> {
  const ref = secretArgument(positional, options.path);
  const version = secretVersion(options.version);
  const secret = await rollbackSecret(await ctx.store(), ref, version);
  const metadata = withoutData(secret);
  await ctx.print(metadataPrintable(metadata), options);
  return metadata;
}
