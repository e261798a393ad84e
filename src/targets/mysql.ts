/**
 * MySQL and MariaDB target. Loaded only when such a base secret is used (see connectTarget),
 * so `mysql2` is imported here and in mysql/ only. Each job has its file there: the session
 * (connect, limits, statements, failures), create and renew, revoke, the recipe check (with
 * the look-up both share), the listing.
 *
 * Choices worth knowing:
 * - Every user sy creates is `'<name>'@'%'`; revoking drops every host variant of the name.
 * - A lease gets exactly its recipe: database names in database-level grants are escaped
 *   (`_` and `%` are wildcards there), `*.*` is granted database by database on the
 *   non-system databases that exist when the lease is created (never `ON *.*`), and `ALL`
 *   is the data privileges of the level named (never `GRANT ALL`).
 * - On MariaDB the password is sent as its mysql_native_password hash, never in plaintext,
 *   also from a creationStatements template; MySQL 8 gets the escaped literal (it rewrites
 *   passwords out of the account statements it logs; not covered by the tests).
 * - There is no transactional DDL: a failed grant drops the user before the error is thrown.
 * - A grant on a missing database or table is refused here, because MySQL accepts one
 *   when CREATE is among the privileges.
 * - renewUser changes nothing (MySQL has no VALID UNTIL; the reap-after bound is in the name)
 *   but, as on PostgreSQL, throws `user_not_found` when the user is gone.
 * - Every wait is bounded: lock_wait_timeout and innodb_lock_wait_timeout, and on MariaDB
 *   max_statement_time, which is the only bound on a wait for the grant tables (MariaDB
 *   opens them ignoring lock_wait_timeout). MySQL 8 has no statement bound for DDL.
 * - TLS: `ssl.servername` is not supported by mysql2; the certificate is checked against
 *   `ca` and against the host, a name or an IP address, before the login packet is sent;
 *   the password itself goes only to a verified server or to `serverPublicKey` (mysql/auth.ts).
 */
import type { BaseConnection, GrantPermission } from '../model/secret.js';
import { createUser, renewUser } from './mysql/create.js';
import { listManagedUsers } from './mysql/list.js';
import { checkRecipe } from './mysql/recipe.js';
import { revokeUsers } from './mysql/revoke.js';
import { connectCore, MysqlSession, type Row } from './mysql/session.js';
import type { ConnectOptions, ManagedUsers, NewUser, RecipeCheckOptions, RevokeOptions, RevokeResult, Target } from './target.js';

export { nativePasswordHash } from './mysql/create.js';

/** The admin's session, its waits bounded, with the Target verbs on top. */
export class MysqlTarget extends MysqlSession implements Target {
  static async connect(conn: BaseConnection, options: ConnectOptions): Promise<MysqlTarget> {
    return new MysqlTarget(await connectCore(conn, options), conn, options).ready();
  }

  createUser(user: NewUser): Promise<void> {
    return createUser(this, user);
  }

  renewUser(username: string, _expiresAt: Date): Promise<void> {
    return renewUser(this, username);
  }

  revokeUsers(usernames: string[], options?: RevokeOptions): Promise<RevokeResult> {
    return revokeUsers(this, usernames, options);
  }

  listManagedUsers(): Promise<ManagedUsers> {
    return listManagedUsers(this);
  }

  async serverNow(): Promise<Date> {
    // Seconds since the epoch as a decimal: no time zone between the server and the driver.
    const rows = await this.run<Row[]>('SELECT UNIX_TIMESTAMP(NOW(6)) AS now', [], "read the server's clock");
    return new Date(Math.round(Number(rows[0]?.now) * 1000));
  }

  /** MySQL has no reassignTo: only the grants are checked. */
  checkRecipe(grants: GrantPermission[], _options?: RecipeCheckOptions): Promise<string[]> {
    return checkRecipe(this, grants);
  }
}
