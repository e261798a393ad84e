import type { Context, OutputFlags } from '../../cli/context.js';
import type { ClientView } from '../../clients/service.js';
import { type ClientFlags, clientPrintable, clientSettings } from './shared.js';

export interface UpdateClientOptions extends ClientFlags, OutputFlags {}

/** `sy client update NAME`: what is given replaces what was (`--allow` replaces every pattern); the rest stays. */
export async function updateClientCommand(ctx: Context, name: string, options: UpdateClientOptions): Promise<ClientView> {
  const [settings, { updateClient }] = await Promise.all([clientSettings(ctx, options), import('../../clients/service.js')]);
  const client = await updateClient(await ctx.store(), name, settings, Date.now());
  await ctx.print(clientPrintable(client), options);
  return client;
}
