import type { BaseConnection } from '../model/secret.js';
import { definePgNavigator } from '../util/pg-navigator.js';
import type { ConnectOptions, Target } from './target.js';

/** Connects as the base secret's admin, importing only the driver of its engine. */
export async function connectTarget(connection: BaseConnection, options: ConnectOptions): Promise<Target> {
  if (connection.engine === 'postgresql') {
    definePgNavigator();
    const { PostgresTarget } = await import('./postgres.js');
    return PostgresTarget.connect(connection, options);
  }
  const { MysqlTarget } = await import('./mysql.js');
  return MysqlTarget.connect(connection, options);
}
