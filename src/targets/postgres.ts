/**
 * PostgreSQL target. Loaded only when a PostgreSQL base secret is used (see connectTarget),
 * so `pg` is imported here and in postgres/ only. Each job has its file there: the session
 * (connect, statements, failures), create and renew, revoke, the recipe check, the listing.
 *
 * Choices worth knowing:
 * - The password is sent as a SCRAM-SHA-256 verifier computed here, never in plaintext.
 * - A user is created inside one transaction, so a failed grant leaves no role behind.
 * - Grants the admin cannot really hand out (PostgreSQL only warns) are detected by checking
 *   the new role's effective privileges on the schemas and tables a recipe names explicitly.
 * - A non-superuser admin (CREATEROLE) first grants itself membership of the roles it
 *   revokes: PostgreSQL requires it for pg_terminate_backend, REASSIGN OWNED and DROP OWNED.
 * - Revoking ends the role's sessions and logins first, then removes what it owns or was
 *   granted in every database of the cluster that pg_shdepend names (dropped, or handed to
 *   the recipe's NOLOGIN `reassignTo` role; never to the admin, who could then be made to run
 *   a lease's SECURITY DEFINER function), drops it, and checks that it is gone.
 * - No serialisation on the server: concurrent GRANTs on one object fail with "tuple
 *   concurrently updated", and the transaction is simply tried again. (An advisory lock would
 *   be a key any role can take, and so block sy.)
 * - Every session has lock_timeout and statement_timeout: a lock held by anyone fails the
 *   call within seconds, never hangs it.
 * - renewUser of a role that no longer exists throws `user_not_found` (exit 1), so the
 *   caller can mark the lease as gone instead of pretending it was extended.
 */
import type { BaseConnection, GrantPermission } from '../model/secret.js';
import { createUser, renewUser } from './postgres/create.js';
import { listManagedUsers } from './postgres/list.js';
import { checkRecipe } from './postgres/recipe.js';
import { revokeUsers } from './postgres/revoke.js';
import { connectClient, DEFAULT_DATABASE, PgSession } from './postgres/session.js';
import type { ConnectOptions, ManagedUsers, NewUser, RecipeCheckOptions, RevokeOptions, RevokeResult, Target } from './target.js';

/** The admin's session on the base secret's database, with the Target verbs on top. */
export class PostgresTarget extends PgSession implements Target {
  static async connect(conn: BaseConnection, options: ConnectOptions): Promise<PostgresTarget> {
    const database = conn.database ?? DEFAULT_DATABASE;
    return new PostgresTarget(await connectClient(conn, options, database), conn, database, options);
  }

  createUser(user: NewUser): Promise<void> {
    return createUser(this, user);
  }

  renewUser(username: string, expiresAt: Date): Promise<void> {
    return renewUser(this, username, expiresAt);
  }

  revokeUsers(usernames: string[], options?: RevokeOptions): Promise<RevokeResult> {
    return revokeUsers(this, usernames, options);
  }

  listManagedUsers(): Promise<ManagedUsers> {
    return listManagedUsers(this);
  }

  async serverNow(): Promise<Date> {
    const { rows } = await this.query<{ now: Date }>('SELECT pg_catalog.clock_timestamp() AS now', [], "read the server's clock");
    return new Date(rows[0].now);
  }

  checkRecipe(grants: GrantPermission[], options?: RecipeCheckOptions): Promise<string[]> {
    return checkRecipe(this, grants, options);
  }
}
