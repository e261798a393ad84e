import type { Context, OutputFlags } from '../../cli/context.js';
import { seconds, secretArgument, secretVersion } from '../../cli/flags.js';
import { checkOutputPath } from '../../io/output.js';
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
  // --ttl means something only for a dynamic secret: reading any other secret ignores it.
  const ttlSeconds = seconds(options.ttl, '--ttl');
  if (options.output !== undefined) checkOutputPath(options.output);
  const service = await ctx.leases();
  const read = await service.read(ref, { ttlSeconds, version });
  if ('lease' in read) {
    const { printIssued } = await import('../dynamic/lease/create.js');
    return printIssued(ctx, service, read.lease, options);
  }
  await ctx.print(secretPrintable(read.secret), options);
  return read.secret;
}
