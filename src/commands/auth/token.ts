import type { Context } from '../../cli/context.js';
import { seconds } from '../../cli/flags.js';
import { signToken } from '../../clients/token.js';
import { clientCredentials } from '../../client/credentials.js';
import { usageError } from '../../errors.js';

/** `sy auth token [--ttl T]`: a token for `curl -H "Authorization: Bearer $SM_TOKEN"`, as in the seed. */
export async function tokenCommand(ctx: Context, options: { ttl?: string }): Promise<void> {
  if (!ctx.env.SY_SERVER) {
    throw usageError('no_server', 'sy auth token needs SY_SERVER (the API origin the token is for), SY_CLIENT_ID and SY_PRIVATE_KEY or SY_PRIVATE_KEY_FILE.');
  }
  const credentials = clientCredentials(ctx.env);
  const ttlSeconds = seconds(options.ttl, '--ttl') ?? 300;
  const token = await signToken({ clientId: credentials.clientId, privateKeyPem: credentials.privateKeyPem, audience: credentials.origin, ttlSeconds });
  ctx.io.stdout.write(`${token}\n`);
}
