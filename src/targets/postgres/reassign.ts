/**
 * The rule for a recipe's `reassignTo` role, which receives what a lease created when it is
 * revoked: createUser and revokeUsers refuse to go on without it, checkRecipe reports it.
 */
import { failed } from '../../errors.js';
import type { PgSession } from './session.js';

/**
 * A `reassignTo` role must exist, must not log in, and must hold no role attribute: what it
 * receives (a lease's tables, functions) must not become anyone's way in.
 */
export async function checkReassignTarget(session: PgSession, role: string, action: string): Promise<void> {
  const reason = await reassignProblem(session, role, action);
  if (reason !== undefined) {
    throw failed('reassign_role_invalid', `Could not ${action} at ${session.address}: the reassignTo role "${role}" ${reason}.`);
  }
}

/** Why `role` may not receive what a lease created (see checkReassignTarget), or undefined. */
export async function reassignProblem(session: PgSession, role: string, action: string): Promise<string | undefined> {
  const { rows } = await session.query<{ ok: boolean; self: boolean }>(
    `SELECT NOT (rolcanlogin OR rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls) AS ok,
              rolname OPERATOR(pg_catalog.=) CURRENT_USER AS self
         FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) $1::pg_catalog.text`,
    [role],
    action,
  );
  if (rows.length === 0) return 'does not exist';
  if (rows[0].self) return 'is the admin itself';
  return rows[0].ok ? undefined : 'can log in or holds a role attribute (it must be NOLOGIN, with none)';
}
