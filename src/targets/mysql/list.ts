/** Listing the MySQL/MariaDB users sy made, for the reaper. */
import { MANAGED_NAME_SQL_PATTERN, parseManagedName } from '../names.js';
import type { ManagedUser, ManagedUsers } from '../target.js';
import { type MysqlSession, type Row, userName } from './session.js';

/** sy's users on this server, by the marker in their names, and the server's clock, in one round trip. */
export async function listManagedUsers(session: MysqlSession): Promise<ManagedUsers> {
  const rows = await session.run<Row[]>(
    'SELECT NULL AS name, UNIX_TIMESTAMP(NOW(6)) AS now UNION ALL SELECT DISTINCT user, NULL FROM mysql.user WHERE user REGEXP ?',
    [MANAGED_NAME_SQL_PATTERN],
    'list users',
  );
  const users: ManagedUser[] = [];
  for (const username of rows.filter((r) => r.name !== null).map(userName).sort()) {
    const parsed = parseManagedName(username);
    if (parsed) users.push({ username, reapAfter: parsed.reapAfter });
  }
  const now = rows.find((r) => r.name === null)?.now;
  return { serverNow: new Date(Math.round(Number(now) * 1000)), users };
}
