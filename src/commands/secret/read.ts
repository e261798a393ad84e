import type { Context, OutputFlags } from '../../cli/context.js';
import { secretRef } from '../../secrets/path.js';
import { getSecret } from '../../secrets/service.js';
import { kindOf } from '../../secrets/validate.js';
import { parseVersion, pathArgument, secretPrintable } from './shared.js';

export interface ReadOptions extends OutputFlags {
  path?: string;
  version?: string;
  ttl?: string;
}

/** `sy secret read`: prints a secret; reading a dynamic secret issues a lease instead. */
export async function readCommand(ctx: Context, positional: string | undefined, options: ReadOptions): Promise<unknown> {
  const ref = secretRef(pathArgument(positional, options.path)!);
  const store = await ctx.store();
  const secret = await getSecret(store, ref, parseVersion(options.version));
  if (kindOf(secret.attributes) === 'dynamic') {
    const { issueLeaseCommand } = await import('../dynamic/lease/create.js');
    return issueLeaseCommand(ctx, secret, options);
  }
  await ctx.print(secretPrintable(secret), options);
  return secret;
}
