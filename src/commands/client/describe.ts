import type { Context, OutputFlags } from '../../cli/context.js';
import type { ClientView } from '../../clients/service.js';
import { clientPrintable } from './shared.js';

/** `sy client describe NAME`: its patterns, caps, active leases and key fingerprint; never a key. */
export async function describeClientCommand(ctx: Context, name: string, options: OutputFlags): Promise<ClientView> {
  const { describeClient } = await import('../../clients/service.js');
  const client = await describeClient(await ctx.store(), name);
  await ctx.print(clientPrintable(client), options);
  return client;
}
