import type { Context } from '../../cli/context.js';
import { cancelled } from '../../errors.js';
import { confirmDestructive } from '../../io/prompt.js';
import { secretArgument } from '../../cli/flags.js';
import { refName } from '../../secrets/path.js';
import { deleteSecret } from '../../secrets/service.js';

export interface DeleteOptions {
  path?: string;
  force?: boolean;
  yes?: boolean;
}

/** `sy secret delete`: refused while something depends on the secret, unless --force. */
export async function deleteCommand(ctx: Context, positional: string | undefined, options: DeleteOptions): Promise<void> {
  const ref = secretArgument(positional, options.path);
  if (options.force) {
    const confirmed = await confirmDestructive(ctx.io, `Delete ${refName(ref)} even if dynamic secrets or active leases depend on it?`, options.yes);
    if (!confirmed) throw cancelled('Nothing was deleted.');
  }
  const deleted = await deleteSecret(await ctx.store(), ref, Boolean(options.force));
  ctx.io.notice(`Deleted ${deleted.path}.`);
}
