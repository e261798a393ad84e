import type { Context } from '../../cli/context.js';
import { randomKey } from '../../keys/crypto.js';

/** `sy key generate`: a fresh random key for SY_MASTER_KEY (containers, CI). */
export async function generateCommand(ctx: Context): Promise<void> {
  ctx.io.stdout.write(`${randomKey().toString('base64')}\n`);
}
