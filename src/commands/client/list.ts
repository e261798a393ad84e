import type { Context, OutputFlags } from '../../cli/context.js';
import type { ClientView } from '../../clients/service.js';
import { clientListPrintable } from './shared.js';

/** `sy client list`: every client, by name, with its active lease count; never a key. */
export async function listClientsCommand(ctx: Context, options: OutputFlags): Promise<ClientView[]> {
  const { listClients } = await import('../../clients/service.js');
  const clients = await listClients(await ctx.store());
  await ctx.print(clientListPrintable(clients), options);
  return clients;
}
