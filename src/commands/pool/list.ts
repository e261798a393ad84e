import type { Context, OutputFlags } from '../../cli/context.js';
import type { Printable, Table } from '../../io/format.js';
import { listPools, type PoolView, unattended } from '../../leases/pool.js';
import { localTime } from '../../util/time.js';

/** `sy pool list`: each pool, its live daemons, its active leases and next expiry. */
export async function listPoolsCommand(ctx: Context, options: OutputFlags): Promise<PoolView[]> {
  const store = await ctx.store();
  const pools = await listPools(store, Date.now());
  await ctx.print(poolListPrintable(pools), options);
  return pools;
}

export function poolListPrintable(pools: PoolView[]): Printable {
  return {
    value: { data: pools },
    table: (): Table => [
      ['POOL', 'DAEMONS', 'ACTIVE LEASES', 'NEXT EXPIRY', 'STATUS'],
      ...pools.map((p) => [
        p.pool,
        p.daemons.length ? p.daemons.map((d) => `${d.host}:${d.pid}`).join(', ') : '-',
        String(p.active_leases),
        p.next_expiry ? localTime(p.next_expiry) : '-',
        unattended(p) ? 'NO LIVE DAEMON' : p.daemons.length ? 'ok' : 'idle',
      ]),
    ],
  };
}
