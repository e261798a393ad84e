import type { Context, OutputFlags } from '../../cli/context.js';
import { seconds, secretArgument, secretVersion } from '../../cli/flags.js';
import { getSecret } from '../../secrets/service.js';
import { kindOf } from '../../secrets/validate.js';
import { secretPrintable } from './shared.js';

export interface ReadOptions extends OutputFlags {
  path?: string;
  version?: string;
  ttl?: string;
}

/** `sy secret read`: prints a secret; reading a dynamic secret issues a lease instead. */
export async function readCommand(ctx: Context, positional: string | undefined, options: ReadOptions): Promise<unknown> {
  const ref = secretArgument(positional, options.path);
  const version = secretVersion(options.version);
  const secret = await getSecret(await ctx.store(), ref, version);
  if (kindOf(secret.attributes) === 'dynamic') {
    // --ttl means something only here: reading any other secret ignores it.
    const ttlSeconds = seconds(options.ttl, '--ttl');
    const { issueLeaseCommand } = await import('../dynamic/lease/create.js');
    // Pinned to what was read, so the lease comes from that very version.
    return issueLeaseCommand(ctx, { id: secret.id }, { ttlSeconds, version: secret.version }, options);
  }
  await ctx.print(secretPrintable(secret), options);
  return secret;
}
