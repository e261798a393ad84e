/**
 * Listing the PostgreSQL users sy made, for the reaper: the users and the server's own clock
 * in one round trip.
 */
import { MANAGED_NAME_SQL_PATTERN, parseManagedName } from '../names.js';
import type { ManagedUser, ManagedUsers } from '../target.js';
import type { PgSession } from './session.js';

/** sy's users on this server, by the marker in their names, with VALID UNTIL and the server's clock. */
export async function listManagedUsers(session: PgSession): Promise<ManagedUsers> {
  const { rows } = await session.query<{ server_now: Date; users: { name: string; valid_until: string | null }[] }>(
    `SELECT pg_catalog.now() AS server_now,
              COALESCE((SELECT pg_catalog.json_agg(pg_catalog.json_build_object('name', rolname, 'valid_until', rolvaliduntil) ORDER BY rolname)
                          FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.~) $1::pg_catalog.text), '[]'::pg_catalog.json) AS users`,
    [MANAGED_NAME_SQL_PATTERN],
    'list users',
  );
  const users: ManagedUser[] = [];
  for (const { name, valid_until } of rows[0].users) {
    const parsed = parseManagedName(name);
    if (!parsed) continue;
    const until = valid_until === null ? NaN : Date.parse(valid_until);
    users.push({ username: name, reapAfter: parsed.reapAfter, ...(Number.isFinite(until) ? { validUntil: new Date(until) } : {}) });
  }
  return { serverNow: new Date(rows[0].server_now), users };
}
