import type { BaseConnection } from '../model/secret.js';
import type { ConnectOptions, Target } from './target.js';

/** Connects as the base secret's admin, importing only the driver of its engine. */
export async function connectTarget(connection: BaseConnection, options: ConnectOptions): Promise<Target> {
  if (connection.engine === 'postgresql') {
    // pg probes for Cloudflare Workers when it loads by building a fetch Response unless
    // `navigator` exists, which loads Node's whole HTTP client (~20 ms). Node 21+ defines
    // navigator; on Node 20 sy defines the same userAgent-only shape first.
    (globalThis as { navigator?: unknown }).navigator ??= { userAgent: `Node.js/${process.versions.node.split('.')[0]}` };
    const { PostgresTarget } = await import('./postgres.js');
    return PostgresTarget.connect(connection, options);
  }
  const { MysqlTarget } = await import('./mysql.js');
  return MysqlTarget.connect(connection, options);
}
