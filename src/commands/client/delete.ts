import type { Context, OutputFlags } from '../../cli/context.js';
import { cancelled } from '../../errors.js';
import { confirmDestructive } from '../../io/prompt.js';
import type { DeletedClient } from '../../clients/service.js';

export interface DeleteClientOptions extends OutputFlags {
  revokeLeases?: boolean;
  yes?: boolean;
}

/**
 * `sy client delete NAME [--revoke-leases]`: its tokens are refused from the next request on;
 * with --revoke-leases every lease it holds is revoked too. Asks first on a terminal; needs
 * --yes without one.
 */
export async function deleteClientCommand(ctx: Context, name: string, options: DeleteClientOptions): Promise<DeletedClient> {
  const { checkClientName, describeClient, deleteClient } = await import('../../clients/service.js');
  checkClientName(name);
  const store = await ctx.store();
  const client = await describeClient(store, name);
  const leases = client.active_leases;
  const what = options.revokeLeases
    ? `Delete client ${name} and revoke its ${leases} active lease${leases === 1 ? '' : 's'}?`
    : `Delete client ${name}${leases ? ` (its ${leases} active lease${leases === 1 ? '' : 's'} will run until they expire)` : ''}?`;
  if (!(await confirmDestructive(ctx.io, what, options.yes))) throw cancelled('Nothing was deleted.');
  const deleted = await deleteClient(await ctx.leaseDeps(), name, { revokeLeases: Boolean(options.revokeLeases) });
  const revoked = deleted.revoked_leases.length;
  const left = deleted.remaining_leases.length;
  ctx.io.notice(`Deleted client ${name}${revoked ? `; revoked ${revoked} lease${revoked === 1 ? '' : 's'}` : ''}${left ? `; ${left} lease${left === 1 ? '' : 's'} left to expire` : ''}.`);
  await ctx.print({ value: deleted }, options);
  return deleted;
}
