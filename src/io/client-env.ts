import type { IssuedLease } from './lease-view.js';

/**
 * How a lease is handed to database clients: the variables they read (`--format env`,
 * `--format dotenv`, `sy run`) and, for MySQL and MariaDB, whose clients take no user name
 * from the environment, an option file. Presentation only: nothing here connects.
 */

/**
 * The variables of the engine's clients, plus DATABASE_URL and SY_LEASE_ID (so that a script
 * that evaluated them can renew or revoke what it got). libpq reads every PG* one. The
 * MySQL and MariaDB clients read MYSQL_HOST, MYSQL_TCP_PORT and MYSQL_PWD but neither a user
 * nor a database from the environment: MYSQL_USER and MYSQL_DATABASE are for scripts
 * (`-u "$MYSQL_USER"`), and `sy run` adds the option file below.
 */
export function clientEnv(lease: IssuedLease): Record<string, string> {
  const database = lease.database ?? '';
  if (lease.engine === 'postgresql') {
    return {
      PGHOST: lease.host,
      PGPORT: String(lease.port),
      PGDATABASE: database,
      PGUSER: lease.username,
      PGPASSWORD: lease.password,
      DATABASE_URL: lease.connection_string,
      SY_LEASE_ID: lease.lease_id,
    };
  }
  return {
    MYSQL_HOST: lease.host,
    MYSQL_TCP_PORT: String(lease.port),
    MYSQL_DATABASE: database,
    MYSQL_USER: lease.username,
    MYSQL_PWD: lease.password,
    DATABASE_URL: lease.connection_string,
    SY_LEASE_ID: lease.lease_id,
  };
}

/**
 * A MySQL option file (`my.cnf`) that makes `mysql`, `mariadb`, `mysqldump` and
 * `mysqladmin` connect as the lease with no flags.
 * - Everything in `[client]` must be known to every client, or that client refuses to start
 *   ("unknown variable"): `database` is not (mysqladmin rejects it, mysqldump takes it for
 *   `--databases`), so it goes in `[mysql]`, which only the interactive clients read.
 * - `protocol=TCP`: sy reached the server over TCP; without it a host of `localhost` would
 *   send the client to a local socket instead.
 * - Values are double-quoted: outside quotes `#` starts a comment, and passwords contain it.
 */
export function mysqlOptionFile(lease: IssuedLease): string {
  const lines = [
    '# Written by sy run for one lease; removed when the command ends.',
    '[client]',
    `user=${optionValue(lease.username)}`,
    `password=${optionValue(lease.password)}`,
    `host=${optionValue(lease.host)}`,
    `port=${lease.port}`,
    'protocol=TCP',
  ];
  if (lease.database) lines.push('[mysql]', `database=${optionValue(lease.database)}`);
  return `${lines.join('\n')}\n`;
}

/** A double-quoted option-file value: the escapes both MySQL and MariaDB undo when reading. */
export function optionValue(value: string): string {
  const escaped = value.replace(/[\\"\n\r\t]/g, (c) => ({ '\\': '\\\\', '"': '\\"', '\n': '\\n', '\r': '\\r', '\t': '\\t' })[c]!);
  return `"${escaped}"`;
}
