/**
 * The written sections of the manual page: what the command tree cannot say. Markup:
 * `code` in bold, {name} in italics (see roff.ts). When you change them, bump
 * MANUAL_DATE in man.ts. The exit statuses are not here: they come from src/errors.ts.
 */

export const DESCRIPTION = `
\`sy\` hands out short-lived database credentials. It keeps a locally encrypted store of
base secrets and dynamic secrets. Asking for a dynamic secret creates a brand-new
database user with a random password and the recipe's grants, records it as a lease with
a time to live (TTL), and drops that user when the lease expires or is revoked. There is
no server: \`sy\` talks straight to the target databases.

A secret is {id}, {path}, {version}, {description}, {attributes}, {data}, {created} and
{lastModified}. A path is made of segments of \`A-Za-z0-9@+._-\` joined by \`:\` or \`/\`
(the two are equivalent; \`db:postgresql:root\` is the canonical spelling). Every change
adds a version. JSON values (\`--data\`, \`--attributes\`, \`--body\`) are given inline, as
\`@file\`, or as \`-\` for standard input, so that secret values stay out of the process list.
Each may hold at most 1 MiB and nest at most 64 levels; more is refused (exit 2) and a file or
standard input is not read further. A UUID given where a path or id is taken is read as an id, so
a new path may not have the shape of a UUID.
`;

export const DESCRIPTION_TERMS: [string, string][] = [
  [
    'Base secrets',
    `Admin credentials of a database server. \`attributes.type\` is \`postgresql\` (alias \`postgres\`),
\`mysql\` or \`mariadb\`; \`data\` holds \`host\`, \`port\`, \`username\`, \`password\`, optionally
\`database\` and \`ssl\` (\`true\`, or {ca, rejectUnauthorized}), and for MySQL/MariaDB \`serverPublicKey\`
(the server's RSA public key, PEM). Other names are refused, with the nearest known one as a hint.`,
  ],
  [
    'Dynamic secrets',
    `Recipes linked to a base secret; their \`data\` is empty. \`attributes.linkConfig\` is
{linkType: "dynamic", linkedSecret: <base path>}; \`grantPermissions\` is {what, where} or a list of them
(\`where\` is \`*.*\`, \`schema.*\` or \`schema.table\`); \`ttl\` is the default lease length in seconds;
\`pool\` names the daemon pool that revokes its leases (default \`default\`); \`userPrefix\` prefixes
created user names; \`maxTtl\` caps leases (at most 86400); \`connectionLimit\` caps the sessions one lease
user may hold at once (1 to 1000, default 10); \`reassignTo\` (PostgreSQL) names a
NOLOGIN role that receives what a lease created, which is otherwise dropped with it. System schemas are
never in reach, names are matched as written, and \`ALL\` means the data privileges only. On PostgreSQL,
\`CREATE\` on \`schema.*\` (or \`*.*\`) lets a lease create objects there (migrations, \`pgbench -i\`); its
search_path starts with that schema, and what it created is dropped with it or handed to \`reassignTo\`.
\`ttl\` and \`maxTtl\` may be durations (\`5m\`), stored in seconds. Experts may give
\`creationStatements\` and \`revocationStatements\` templates with \`{{name}}\`, \`{{password}}\` and \`{{expiration}}\`;
\`grantPermissions\` is granted on top of \`creationStatements\`, never ignored.
\`sy secret create\` and \`sy secret update\` (when it changes attributes) check the recipe on the base's
server, read-only, over one connection: each named schema or database and table exists, the admin holds
each privilege WITH GRANT OPTION on everything the grant reaches, and \`reassignTo\` is a role that cannot
log in. A problem fails with exit status 2, naming it, and nothing is stored; \`--no-verify\` skips the
check; a server that cannot be reached, or refuses the login, only costs a warning.
Any other attribute name, in \`linkConfig\` or in a grant too, is refused with the nearest known one as a hint
(\`tll\`: did you mean \`ttl\`?). Reading a dynamic secret with \`sy secret read\` issues a lease, as
\`sy dynamic lease create\` does.`,
  ],
  [
    'Static secrets',
    `Secrets with neither \`attributes.type\` nor \`attributes.linkConfig\`: any data, and free-form attributes
as in DSV, except names that look like a misspelt \`linkConfig\`, or \`type\` holding a database type, which are
refused with the hint (they would silently have made a dynamic or base secret static).`,
  ],
  [
    'Leases',
    `A lease is a database user with a TTL. TTLs are seconds (\`3600\`) or durations (\`90s\`, \`15m\`,
\`1h30m\`), at most 86400 seconds and at most the secret's \`maxTtl\`. A lease is recorded before its
user is created, so that a crash in between leaves something to revoke. A lease is revoked on the
server and database where its user was created, whatever its base secret says now. Revoking a
PostgreSQL lease ends the user's sessions, removes what it owns or was granted in every database of
the cluster and drops the role; revoking a MySQL/MariaDB lease kills its sessions and drops every host
variant of the user. A lease is marked revoked only once \`sy\` has seen the user gone; until then it
stays failed, with the reason, and is retried. Revoking what is already gone succeeds. A lock held on
the server fails a create, renew or revoke within about 5 seconds. Renewing extends a lease from now by
\`--increment\` (default: the secret's \`ttl\`), up to its max TTL; it never shortens a lease: when the
lease already runs longer, its expiry is kept, a notice says so and the exit status is 0. An expired
lease cannot be renewed (exit 1). \`--prefix\` {P} revokes the leases of {P} and of every path below it,
by whole segments and case as written, like a path: \`db:postgresql\` holds \`db:postgresql:dyn1\` but
neither \`db:postgresqlx:a\` nor \`db:post\`; a trailing \`:\` or \`/\` is accepted (\`db/postgresql/\`).
Its confirmation lists the leases. \`--force\` forgets a lease whose user cannot be dropped; like every
destructive act it is confirmed on a terminal and needs \`--yes\` without one.`,
  ],
  [
    'Running a command',
    `\`sy run\` issues a lease, runs the command after \`--\` with it, renews it while the command runs, revokes
it when the command exits and exits with the command's status. The command gets the variables of
\`--format env\`, so \`psql\` connects as the lease with no flags, and for MySQL and MariaDB \`MYSQL_HOME\`,
naming a private directory (mode 0700) whose \`my.cnf\` (mode 0600) gives \`mysql\`, \`mariadb\`, \`mysqldump\`
and \`mysqladmin\` the lease's user, password, host and port (and \`mysql\` its database); it is removed
when the command exits or \`sy run\` is stopped by a signal. Settings in \`~/.my.cnf\` would win over it,
so \`sy run\` warns when that file sets any. The command never gets a variable that opens or locates the
store: \`SY_MASTER_KEY\`, \`SY_MASTER_KEY_FILE\`, \`SY_PASSPHRASE\`, their \`SY_NEW_\` forms, \`SY_HOME\` and
\`SY_STORE\` are removed, and so is \`PGSERVICE\` for a PostgreSQL lease (a service file would override it).`,
  ],
  [
    'Sweep',
    `Before each command, \`sy\` revokes the leases that have expired, within a budget of about a second
and a half; a target that cannot be reached costs a one-line notice on standard error, never the
command. \`--no-sweep\` or \`SY_NO_SWEEP=1\` turn this off; \`sy dynamic sweep\` runs it now and reports.`,
  ],
  [
    'Daemon',
    `\`sy daemon\` keeps revoking leases on time until it is stopped by SIGTERM or SIGINT. It wakes at
each expiry and when the store changes, sleeps at most \`--interval\`, and with \`--pool\` revokes only
the leases of that pool. \`--once\` does one pass and exits. While it runs it is a member of its pool
(every pool without \`--pool\`) in the store's registry, seen every 5 seconds; \`sy pool list\` shows each
pool with its live daemons, its active leases and its next expiry, and flags a pool with leases and no
live daemon. \`--ready-file\` is touched after each pass and heartbeat that succeeded and removed at exit,
for a readiness probe that checks its age. When the store's database cannot be reached the daemon logs
one line, retries with backoff and logs another when it is back; it exits 4 only when the store was
tampered with or the key does not open it.`,
  ],
  [
    'Lease API',
    `\`sy daemon --listen\` {host}:{port} also serves the lease API to the clients that \`sy client create\`
registered: \`POST /api/sm/v1/dynamic/lease\`, \`GET /api/sm/v1/dynamic/leases\`, \`GET\`, \`DELETE\` and
\`POST .../renew\` of \`/api/sm/v1/dynamic/leases/\`{id}, \`GET /api/sm/v1/secrets/\`{path}, and \`/livez\`,
\`/readyz\`, \`/metrics\`. Plain HTTP only on a loopback address; elsewhere \`--tls-cert\` and \`--tls-key\`
are required (exit 2 otherwise). A request carries \`Authorization: Bearer\` {token}: an EdDSA JWT that the
client signs with its own key (\`sy auth token\`), for at most 15 minutes, checked against the key the
store holds now. The daemon decrypts admin credentials in memory only; a client never reads a base
secret. Errors are \`{"error": {"code", "message"}}\`: 400, 401, 403, 404, 413, 429, 502, 503.`,
  ],
  [
    'Reaper',
    `Every user \`sy\` creates carries a marker in its name and, on its server, a bound after which it may
be reaped (its maximum TTL). The orphan reaper of \`sy dynamic sweep\` and of the daemon (every
\`--reap-interval\`) drops, on the server of every base secret, the marked users that the store does not
know as live and that are past that bound, or on PostgreSQL past their VALID UNTIL plus a minute, by
the server's clock: no credential outlives its lease untracked, even after a crash or the loss of the
store. It works user by user and reports each one it cannot drop. \`sy dynamic sweep\` exits 1 when
anything could not be revoked or reaped, after printing its report.`,
  ],
];

export const DESCRIPTION_AFTER = `
\`sy\` asks questions (confirmation of destructive acts, the fields of a new secret) only when standard
input and standard output are terminals. The passphrase is asked on the controlling terminal
(\`/dev/tty\`) whenever there is one, even when standard output is piped or redirected, as ssh and gpg
do. Without a terminal it never waits for input: it fails with a message that names the flag or
variable to use. A wrong passphrase typed at the terminal is asked
again, three tries in all. Answering no to a confirmation says what did not happen
(\`Nothing was deleted.\`, \`No lease was revoked.\`) and exits 130, as Ctrl-C does (\`Interrupted.\`). Ctrl-C
during \`sy dynamic lease create\` leaves no lease behind: before the user was sent the lease is closed at
once, after it the user is dropped, since nobody received its password.

\`sy secret create\` on a terminal without \`--data\`, \`--attributes\` or \`--body\` asks for the secret
field by field, checks each answer as it is given and asks again with the reason, takes durations for
\`ttl\` and \`maxTtl\`, offers to test the connection to the base secret's server, and saves only on yes.
`;

export const OUTPUT = `
Every command that prints data takes \`--format\` \`json\`, \`yaml\`, \`table\`, \`env\` or \`dotenv\`; the
default is \`table\` on a terminal and \`json\` otherwise. For a lease, \`env\` and \`dotenv\` give \`PGHOST\`,
\`PGPORT\`, \`PGDATABASE\`, \`PGUSER\`, \`PGPASSWORD\` (PostgreSQL) or \`MYSQL_HOST\`, \`MYSQL_TCP_PORT\`,
\`MYSQL_DATABASE\`, \`MYSQL_USER\`, \`MYSQL_PWD\` (MySQL and MariaDB), \`DATABASE_URL\`, and \`SY_LEASE_ID\` (to renew
or revoke it later); for a secret, its
\`data\` fields. \`env\` prints \`export KEY='value'\` lines, every value single-quoted, for
\`eval "$(sy ... --format env)"\` in sh, bash or zsh. \`dotenv\` prints plain KEY=value lines for env files,
unquoted and unescaped: everything after the first \`=\` is the value, as Docker's \`--env-file\` reads it;
a value with a line break is refused (exit 2). The Node.js and Ruby \`dotenv\` libraries cut an unquoted
value at \`#\`, which passwords may hold: write their \`.env\` files with \`--format env\`, whose lines they
read too. The MySQL
clients read \`MYSQL_HOST\`, \`MYSQL_TCP_PORT\` and \`MYSQL_PWD\` but no user name from the environment: pass
\`-u "$MYSQL_USER"\`, or use \`sy run\`.
\`--filter\` {field} prints one raw value (\`--filter password\`, \`--filter data.password\`; on a lease,
which has no \`data\`, \`data.password\` is \`password\`). Each \`lease create\` is a new lease, \`--filter\`
included: for several fields of one lease, write it with \`--output\` and read the file with \`jq\`.
\`--output\` {file} writes the result to {file} instead of standard output: created with mode 0600,
atomically, never through a symbolic link.

\`sy dynamic lease create\` (and \`sy secret read\` of a dynamic secret) prints:
`;

export const LEASE_EXAMPLE = `
{"lease_id": "...", "record_uid": "<dynamic secret id>", "path": "db:postgresql:dyn1",
 "engine": "postgresql", "host": "...", "port": 5432, "database": "...",
 "username": "...", "password": "...",
 "connection_string": "postgresql://user:pass@host:5432/db",
 "created_at": "2026-04-06T12:00:00Z", "expires_at": "2026-04-06T13:00:00Z",
 "lease_duration": 3600, "renewable": true}
`;

export const OUTPUT_AFTER = `
The connection string percent-encodes user and password (\`mysql://\` for MySQL and MariaDB).
\`sy dynamic lease list --format json\` prints {"data": [...]} with {lease_id}, {record_uid}, {path},
{username}, {state}, {created_at} and {expires_at}, and never a password.

Data goes to standard output; progress, spinners, notices and errors go to standard error.
Spinners and colour appear only on a terminal; \`NO_COLOR\` and \`--no-color\` turn colour off.
Tables show times in local time with the UTC offset (\`2026-12-01 22:40:05 +01:00\`); JSON and YAML keep
ISO-8601 UTC.
`;

export const ENVIRONMENT: [string, string][] = [
  ['`SY_HOME`', 'The directory of the store and the audit log. See FILES for the default.'],
  [
    '`SY_STORE`',
    'A `postgresql://` URL: the whole store (secrets, leases, audit log) lives in that database instead, shared by every machine with the URL and the key. TLS settings go in the URL (`sslmode=verify-full&sslrootcert=`{file}). Unset: the SQLite store in `SY_HOME`.',
  ],
  ['`SY_MASTER_KEY`', 'Base64 of a 32-byte key that opens the store (for containers: from a Kubernetes secret). `sy key generate` prints a fresh one.'],
  ['`SY_MASTER_KEY_FILE`', 'A file holding that key.'],
  ['`SY_PASSPHRASE`', 'A passphrase the key is derived from.'],
  [
    '`SY_NEW_MASTER_KEY`, `SY_NEW_MASTER_KEY_FILE`, `SY_NEW_PASSPHRASE`',
    'The new key of `sy key change --to` {source}, in the same forms.',
  ],
  ['`SY_NO_SWEEP`', '`1` turns off the revocation sweep that runs on each invocation.'],
  ['`SY_CLIENT_ID`', 'Who is acting, as written in the audit log (default: {user}@{host}); as a client of the lease API, the client\'s name.'],
  [
    '`SY_SERVER`',
    '`https://`{host}:{port} of a pool\'s lease API: `sy` acts as its client. `dynamic lease create|list|lookup|renew|revoke`, `secret read`, `agent` and `auth token` go to the server with the same flags, output and exit codes; every other command needs the store and exits 2.',
  ],
  ['`SY_PRIVATE_KEY`, `SY_PRIVATE_KEY_FILE`', 'The client\'s Ed25519 private key (PKCS#8 PEM), or a file holding it.'],
  ['`SY_CA_CERT`', 'A CA certificate file that the server\'s certificate must chain to.'],
  ['`NO_COLOR`', 'Set and not empty: no colour, as with `--no-color`.'],
];

export const FILES: [string, string][] = [
  ['`$SY_HOME/sy.db`', 'The encrypted store: secrets, their versions and the lease ledger (SQLite).'],
  [
    '`$SY_HOME/audit.log`',
    'The audit log: one JSON line per act, each chained to the previous one by an HMAC-SHA256 keyed from the store; never a password or key. Where it ends is recorded in the store. It is never opened through a link.',
  ],
  [
    '`$SY_HOME`',
    'Defaults to `$XDG_DATA_HOME/sy`, or `~/.local/share/sy` without `XDG_DATA_HOME` (`~/Library/Application Support/sy` on macOS). It and its files must belong to the user running `sy`: one that others can write is tightened to 0700 (files 0600) with a notice; one that belongs to another user is refused (exit 4).',
  ],
];

export const EXIT_STATUS_AFTER = `
Errors are one or two plain sentences on standard error, the first starting with \`sy:\` (usage
errors of the command line too), without a stack trace unless \`--debug\` is given, and never contain
a password or key.
`;

export const SECURITY = `
Every record in the store is sealed with AES-256-GCM under a random data key and bound to its
identity (a sealed record moved to another row or version does not open). The data key is wrapped by
the master key: a raw 32-byte key (\`SY_MASTER_KEY\`, \`SY_MASTER_KEY_FILE\` or the OS keychain) or a
key derived from a passphrase with scrypt (N=2^17, r=8, p=1). \`sy key change\` re-wraps the data key;
no record is re-encrypted. A wrong key is an error that changes nothing.

The columns the store keeps in clear so that it can search them (a lease's user, state and expiry, a
secret's path and current version) are covered by an HMAC-SHA256 per row, under a key derived from
the data key and bound to the row and the store. A row changed, or copied from another row or
store, by someone without the key is reported when it is read (exit 4, naming the record) and never
acted on. A count and sum of the live leases' MACs, kept in the store, finds a live lease hidden from
the sweep (its state or expiry changed), removed or replaced by an older copy: \`sy dynamic sweep\` and
\`sy daemon\` check it. A whole store set back to an older copy of itself cannot be told from the file:
keep backups, and compare \`sy audit verify\` with a copy of the log kept elsewhere.

For PostgreSQL, \`sy\` sends the server a SCRAM-SHA-256 verifier, not the password, so the password
is not in the server's logs. Passwords and keys never appear in error messages, logs, the audit log
or the command line of a process: give secret values with \`@file\` or \`-\`.

The store, the audit log and \`--output\` files are created with mode 0600, and \`SY_HOME\` with
mode 0700.
`;

export const EXAMPLES: [string, string][] = [
  [
    'Create a store whose key comes from the environment (keep the key: nothing else opens the store):',
    'export SY_MASTER_KEY=$(sy key generate)\nsy init',
  ],
  [
    'Store the admin credentials of a PostgreSQL server, and a dynamic secret that grants SELECT on every table:',
    `cat > root.json <<'EOF'
{"path": "db:postgresql:root", "attributes": {"type": "postgresql"},
 "description": "postgresql root credentials",
 "data": {"host": "127.0.0.1", "port": 5432, "username": "admin", "password": "P@ssword!"}}
EOF
sy secret create --body @root.json

cat > dyn1.json <<'EOF'
{"path": "db:postgresql:dyn1", "data": {},
 "attributes": {"linkConfig": {"linkType": "dynamic", "linkedSecret": "db:postgresql:root"},
                "grantPermissions": {"what": "SELECT", "where": "*.*"},
                "pool": "pool1", "ttl": 1000}}
EOF
sy secret create --body @dyn1.json`,
  ],
  ['Get a fresh database user (reading a dynamic secret issues a lease):', 'sy secret read db:postgresql:dyn1'],
  [
    'In a script or an init container, a 15-minute lease written to a private file:',
    'sy dynamic lease create --path db:postgresql:dyn1 --ttl 15m --output /run/secrets/db.json',
  ],
  ['Only the connection string:', 'psql "$(sy dynamic lease create --path db:postgresql:dyn1 --filter connection_string)"'],
  [
    'In a shell script, a lease for the commands that follow (they connect as it with no flags):',
    `eval "$(sy dynamic lease create --path db:postgresql:dyn1 --ttl 15m --format env)"\npsql -c 'select current_user'\nsy dynamic lease revoke "$SY_LEASE_ID"`,
  ],
  ['One command as a fresh lease, revoked when it exits (MySQL clients get an option file):', "sy run --path db:mariadb:dyn1 -- mariadb -e 'select current_user()'"],
  ['Drop every user issued from the secrets under db:postgresql, without asking:', 'sy dynamic lease revoke --prefix db:postgresql --yes'],
  [
    'Turn on completion in bash (zsh and fish: `sy completion zsh`, `sy completion fish`):',
    'source <(sy completion bash)',
  ],
];
