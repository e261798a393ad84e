import type { Argument, Command, Option } from 'commander';

/**
 * The manual page and the shell completion scripts, generated from the live command tree
 * (so a new command or flag is documented and completed without anyone remembering to),
 * plus the sections of the manual that a tree cannot say. Pure functions: no I/O.
 */

// ------------------------------------------------------------------------------ the tree

/** Where the values of a flag or an argument come from when completing. */
export type ValueSource =
  | { kind: 'choices'; values: readonly string[] }
  /** Secret paths, from `sy __complete paths`. */
  | { kind: 'paths' }
  /** Ids of active leases, from `sy __complete leases`. */
  | { kind: 'leases' }
  | { kind: 'file' }
  /** Free text: nothing to offer. */
  | { kind: 'text' };

export interface OptionSpec {
  flags: string;
  short?: string;
  long?: string;
  description: string;
  /** Absent for a switch. */
  value?: { name: string; optional: boolean; source: ValueSource };
  mandatory: boolean;
  defaultValue?: unknown;
}

export interface ArgumentSpec {
  name: string;
  description: string;
  required: boolean;
  variadic: boolean;
  source: ValueSource;
}

export interface CommandSpec {
  /** The full name, `['sy', 'dynamic', 'lease', 'revoke']`. */
  names: string[];
  aliases: string[];
  description: string;
  subcommands: CommandSpec[];
  options: OptionSpec[];
  arguments: ArgumentSpec[];
}

/** Flags and positional arguments that name secrets or leases (completed from the store). */
const PATH_OPTIONS = new Set(['--path', '--query', '--prefix']);
const PATH_ARGUMENTS = new Set(['path', 'path|id', 'query']);
const LEASE_ARGUMENTS = new Set(['lease_id']);
const FILE_VALUES = new Set(['file']);

/** The visible command tree: hidden commands (`__complete`) and the implicit `help` are left out. */
export function describeTree(program: Command): CommandSpec {
  return describeCommand(program, [program.name()]);
}

function describeCommand(command: Command, names: string[]): CommandSpec {
  const help = command.createHelp();
  const visible = new Set(help.visibleCommands(command));
  return {
    names,
    aliases: command.aliases(),
    description: command.description(),
    subcommands: command.commands.filter((sub) => visible.has(sub)).map((sub) => describeCommand(sub, [...names, sub.name()])),
    options: help.visibleOptions(command).map(describeOption),
    arguments: help.visibleArguments(command).map(describeArgument),
  };
}

function describeOption(option: Option): OptionSpec {
  const takesValue = option.required || option.optional;
  const valueName = /[<[]([^>\]]+)[>\]]/.exec(option.flags)?.[1] ?? 'value';
  let source: ValueSource = { kind: 'text' };
  if (option.argChoices) source = { kind: 'choices', values: option.argChoices };
  else if (option.long && PATH_OPTIONS.has(option.long)) source = { kind: 'paths' };
  else if (FILE_VALUES.has(valueName)) source = { kind: 'file' };
  return {
    flags: option.flags,
    short: option.short,
    long: option.long,
    description: option.description,
    value: takesValue ? { name: valueName, optional: option.optional, source } : undefined,
    mandatory: option.mandatory,
    defaultValue: option.defaultValue,
  };
}

function describeArgument(argument: Argument): ArgumentSpec {
  const name = argument.name();
  let source: ValueSource = { kind: 'text' };
  if (argument.argChoices) source = { kind: 'choices', values: argument.argChoices };
  else if (PATH_ARGUMENTS.has(name)) source = { kind: 'paths' };
  else if (LEASE_ARGUMENTS.has(name)) source = { kind: 'leases' };
  else if (FILE_VALUES.has(name)) source = { kind: 'file' };
  return { name, description: argument.description, required: argument.required, variadic: argument.variadic, source };
}

/** Every command of the tree, parents before children. */
export function allCommands(spec: CommandSpec): CommandSpec[] {
  return [spec, ...spec.subcommands.flatMap(allCommands)];
}

/** The commands that run something (no subcommands), in the order of the tree. */
export function leafCommands(spec: CommandSpec): CommandSpec[] {
  return allCommands(spec).filter((command) => command.subcommands.length === 0);
}

const fullName = (command: CommandSpec): string => command.names.join(' ');
const flagNames = (option: OptionSpec): string[] => [option.short, option.long].filter((flag): flag is string => flag !== undefined);
const argumentTerm = (argument: ArgumentSpec): string => {
  const name = `${argument.name}${argument.variadic ? '...' : ''}`;
  return argument.required ? `<${name}>` : `[${name}]`;
};

// -------------------------------------------------------------------------- the man page

export interface ManPageMeta {
  version: string;
  /** The date in the page footer: a fixed string, so that regenerating is reproducible. */
  date: string;
}

/**
 * The date of the manual's last substantive revision. Fixed (not today's date) so that
 * `npm run docs` is reproducible and the freshness test is stable: bump it when you
 * change the written sections below.
 */
export const MANUAL_DATE = '2026-12-01';

/** Escapes for roff in code: every character stands for itself. */
function roffCode(text: string): string {
  return text
    .replace(/\\/g, '\\e')
    .replace(/-/g, '\\-')
    .replace(/'/g, '\\(aq')
    .replace(/`/g, '\\(ga')
    .replace(/~/g, '\\(ti')
    .replace(/\^/g, '\\(ha');
}

/**
 * Escapes prose for roff and renders a little markup: `code` in bold, {name} in italics.
 * A hyphen that starts an option (`-q`, `--no-sweep`) becomes a minus sign, as do the
 * hyphens inside it, so that copying from the page gives what the shell wants.
 */
function roffProse(text: string): string {
  let out = '';
  const pattern = /`([^`]+)`|\{([^}\s]+)\}/g;
  let last = 0;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    out += roffPlain(text.slice(last, match.index));
    out += match[1] !== undefined ? `\\fB${roffCode(match[1])}\\fP` : `\\fI${roffCode(match[2])}\\fP`;
    last = match.index + match[0].length;
  }
  return out + roffPlain(text.slice(last));
}

function roffPlain(text: string): string {
  return text
    .replace(/\\/g, '\\e')
    .replace(/(^|[\s([|,=/])(--?[A-Za-z0-9][A-Za-z0-9-]*)/g, (_, before: string, flag: string) => before + flag.replace(/-/g, '\\-'));
}

/** A text line: a leading dot or apostrophe would make it a request. */
function textLine(line: string): string {
  return /^[.']/.test(line) ? `\\&${line}` : line;
}

/** Text for a quoted macro argument. */
function macroArgument(text: string): string {
  return text.replace(/"/g, '\\(dq');
}

function sentence(text: string): string {
  const trimmed = text.trim();
  if (trimmed === '') return trimmed;
  const capitalised = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capitalised) ? capitalised : `${capitalised}.`;
}

/** A paragraph of prose (blank-line separated paragraphs become .PP). */
function paragraphs(text: string): string[] {
  return text
    .trim()
    .split(/\n\s*\n/)
    .flatMap((paragraph, index) => [...(index > 0 ? ['.PP'] : []), ...paragraph.split('\n').map((line) => textLine(roffProse(line.trim())))]);
}

/** An indented block of code, one line per line, as a paragraph of its own. */
function codeBlock(code: string): string[] {
  return [
    '.PP',
    '.RS 4',
    '.nf',
    ...code
      .replace(/^\n+|\s+$/g, '')
      .split('\n')
      .map((line) => (line === '' ? '.sp' : textLine(roffCode(line)))),
    '.fi',
    '.RE',
  ];
}

/** A tagged paragraph: the tag in the markup of `roffProse`, then the body. */
function tagged(tag: string, body: string): string[] {
  return ['.TP', textLine(roffProse(tag)), ...body.trim().split('\n').map((line) => textLine(roffProse(line.trim())))];
}

function optionTag(option: OptionSpec): string {
  const names = flagNames(option)
    .map((flag) => `\\fB${roffCode(flag)}\\fP`)
    .join(', ');
  if (!option.value) return names;
  const value = `\\fI${roffCode(option.value.name)}\\fP`;
  return `${names} ${option.value.optional ? `[${value}]` : value}`;
}

function optionBody(option: OptionSpec): string {
  const parts = [roffProse(sentence(option.description))];
  if (option.value?.source.kind === 'choices') {
    parts.push(`One of: ${option.value.source.values.map((value) => `\\fB${roffCode(value)}\\fP`).join(', ')}.`);
  }
  if (option.defaultValue !== undefined && typeof option.defaultValue !== 'boolean') {
    parts.push(`Default: \\fB${roffCode(String(option.defaultValue))}\\fP.`);
  }
  if (option.mandatory) parts.push('Required.');
  return parts.join(' ');
}

function optionEntries(options: OptionSpec[]): string[] {
  return options.flatMap((option) => ['.TP', textLine(optionTag(option)), textLine(optionBody(option))]);
}

function synopsisOf(command: CommandSpec, globalFlags: Set<string>): string {
  const own = command.options.filter((option) => !globalFlags.has(option.flags));
  const parts = [`\\fB${roffCode(fullName(command))}\\fP`];
  for (const argument of command.arguments) {
    const term = `\\fI${roffCode(argument.name)}\\fP${argument.variadic ? '...' : ''}`;
    parts.push(argument.required ? term : `[${term}]`);
  }
  for (const option of own.filter((o) => o.mandatory)) {
    const flag = `\\fB${roffCode(option.long ?? option.short ?? option.flags)}\\fP`;
    parts.push(option.value ? `${flag} \\fI${roffCode(option.value.name)}\\fP` : flag);
  }
  if (own.some((option) => !option.mandatory)) parts.push('[\\fIoptions\\fP]');
  return parts.join(' ');
}

/** The manual page, `man/sy.1`. */
export function manPage(program: Command, meta: ManPageMeta): string {
  const tree = describeTree(program);
  const name = tree.names[0];
  // The flags every command takes are the root's; they are documented once.
  const globalFlags = new Set(tree.options.map((option) => option.flags));
  const leaves = leafCommands(tree);
  const lines: string[] = [
    `.\\" Generated by \`npm run docs\` from the command tree (src/cli/program.ts) and src/cli/docs.ts. Do not edit.`,
    `.TH ${name.toUpperCase()} 1 "${macroArgument(meta.date)}" "${macroArgument(`${name} ${meta.version}`)}" "User Commands"`,
    // Command names, flags and values must stay whole: no hyphenation, no stretched spaces.
    '.nh',
    '.ad l',
    '.SH NAME',
    `${name} \\- ${roffProse(tree.description.replace(/\.$/, '').replace(/^./, (c) => c.toLowerCase()))}`,
    '.SH SYNOPSIS',
    `\\fB${name}\\fP [\\fIglobal options\\fP] \\fIcommand\\fP [\\fIarguments\\fP] [\\fIoptions\\fP]`,
    ...leaves.flatMap((leaf) => ['.br', synopsisOf(leaf, globalFlags)]),
    '.SH DESCRIPTION',
    ...paragraphs(DESCRIPTION),
    ...DESCRIPTION_TERMS.flatMap(([tag, body]) => tagged(tag, body)),
    '.PP',
    ...paragraphs(DESCRIPTION_AFTER),
    '.SH COMMANDS',
    ...paragraphs('Each command also takes the global options below. A path may be given as an argument or with `--path`.'),
  ];
  for (const leaf of leaves) {
    lines.push(`.SS "${macroArgument(synopsisOf(leaf, globalFlags))}"`);
    lines.push(textLine(roffProse(sentence(leaf.description))));
    const args = leaf.arguments.filter((argument) => argument.description);
    const own = leaf.options.filter((option) => !globalFlags.has(option.flags));
    for (const argument of args) {
      const choices = argument.source.kind === 'choices' ? ` One of: ${argument.source.values.map((value) => `\\fB${roffCode(value)}\\fP`).join(', ')}.` : '';
      lines.push('.TP', `\\fI${roffCode(argument.name)}\\fP`, textLine(`${roffProse(sentence(argument.description))}${choices}`));
    }
    lines.push(...optionEntries(own));
  }
  lines.push(
    '.SH GLOBAL OPTIONS',
    ...paragraphs('These are accepted by every command, before or after its name.'),
    ...optionEntries(tree.options),
    '.SH OUTPUT',
    ...paragraphs(OUTPUT),
    ...codeBlock(LEASE_EXAMPLE),
    '.PP',
    ...paragraphs(OUTPUT_AFTER),
    '.SH ENVIRONMENT',
    ...ENVIRONMENT.flatMap(([tag, body]) => tagged(tag, body)),
    '.SH FILES',
    ...FILES.flatMap(([tag, body]) => tagged(tag, body)),
    '.SH EXIT STATUS',
    ...EXIT_STATUS.flatMap(([tag, body]) => tagged(tag, body)),
    '.PP',
    ...paragraphs(EXIT_STATUS_AFTER),
    '.SH SECURITY',
    ...paragraphs(SECURITY),
    '.SH EXAMPLES',
    ...EXAMPLES.flatMap(([text, code], index) => [...(index > 0 ? ['.PP'] : []), ...paragraphs(text), ...codeBlock(code)]),
    '.SH SEE ALSO',
    '\\fBpsql\\fP(1), \\fBmysql\\fP(1)',
  );
  return `${lines.join('\n')}\n`;
}

// The written sections. Markup: `code` in bold, {name} in italics.

const DESCRIPTION = `
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

const DESCRIPTION_TERMS: [string, string][] = [
  [
    'Base secrets',
    `Admin credentials of a database server. \`attributes.type\` is \`postgresql\` (alias \`postgres\`),
\`mysql\` or \`mariadb\`; \`data\` holds \`host\`, \`port\`, \`username\`, \`password\`, optionally
\`database\` and \`ssl\` (\`true\`, or {ca, rejectUnauthorized}). Other names are refused, with the nearest
known one as a hint.`,
  ],
  [
    'Dynamic secrets',
    `Recipes linked to a base secret; their \`data\` is empty. \`attributes.linkConfig\` is
{linkType: "dynamic", linkedSecret: <base path>}; \`grantPermissions\` is {what, where} or a list of them
(\`where\` is \`*.*\`, \`schema.*\` or \`schema.table\`); \`ttl\` is the default lease length in seconds;
\`pool\` names the daemon pool that revokes its leases (default \`default\`); \`userPrefix\` prefixes
created user names; \`maxTtl\` caps leases (at most 86400); \`reassignTo\` (PostgreSQL) names a
NOLOGIN role that receives what a lease created, which is otherwise dropped with it. System schemas are
never in reach, names are matched as written, and \`ALL\` means the data privileges only. Experts may give
\`creationStatements\` and \`revocationStatements\` templates with \`{{name}}\`, \`{{password}}\` and \`{{expiration}}\`.
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
the leases of that pool. \`--once\` does one pass and exits.`,
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

const DESCRIPTION_AFTER = `
\`sy\` asks questions (passphrase, confirmation of destructive acts, the fields of a new secret) only
when standard input and standard output are terminals. Otherwise it never waits for input: it fails
with a message that names the flag or variable to use. A wrong passphrase typed at the terminal is asked
again, three tries in all. Answering no to a confirmation says what did not happen
(\`Nothing was deleted.\`, \`No lease was revoked.\`) and exits 130, as Ctrl-C does (\`Interrupted.\`).

\`sy secret create\` on a terminal without \`--data\`, \`--attributes\` or \`--body\` asks for the secret
field by field, checks each answer as it is given and asks again with the reason, takes durations for
\`ttl\` and \`maxTtl\`, offers to test the connection to the base secret's server, and saves only on yes.
`;

const OUTPUT = `
Every command that prints data takes \`--format\` \`json\`, \`yaml\`, \`table\`, \`env\` or \`dotenv\`; the
default is \`table\` on a terminal and \`json\` otherwise. For a lease, \`env\` and \`dotenv\` give \`PGHOST\`,
\`PGPORT\`, \`PGDATABASE\`, \`PGUSER\`, \`PGPASSWORD\` (PostgreSQL) or \`MYSQL_HOST\`, \`MYSQL_TCP_PORT\`,
\`MYSQL_DATABASE\`, \`MYSQL_USER\`, \`MYSQL_PWD\` (MySQL and MariaDB), and \`DATABASE_URL\`; for a secret, its
\`data\` fields. \`env\` prints \`export KEY='value'\` lines, every value single-quoted, for
\`eval "$(sy ... --format env)"\` in sh, bash or zsh. \`dotenv\` prints plain KEY=value lines for env files,
unquoted and unescaped: everything after the first \`=\` is the value, as Docker's \`--env-file\` reads it;
a value with a line break is refused (exit 2). The Node.js and Ruby \`dotenv\` libraries cut an unquoted
value at \`#\`, which passwords may hold: write their \`.env\` files with \`--format env\`, whose lines they
read too. The MySQL
clients read \`MYSQL_HOST\`, \`MYSQL_TCP_PORT\` and \`MYSQL_PWD\` but no user name from the environment: pass
\`-u "$MYSQL_USER"\`, or use \`sy run\`.
\`--filter\` {field} prints one raw value (\`--filter password\`, \`--filter data.password\`).
\`--output\` {file} writes the result to {file} instead of standard output: created with mode 0600,
atomically, never through a symbolic link.

\`sy dynamic lease create\` (and \`sy secret read\` of a dynamic secret) prints:
`;

const LEASE_EXAMPLE = `
{"lease_id": "...", "record_uid": "<dynamic secret id>", "path": "db:postgresql:dyn1",
 "engine": "postgresql", "host": "...", "port": 5432, "database": "...",
 "username": "...", "password": "...",
 "connection_string": "postgresql://user:pass@host:5432/db",
 "created_at": "2026-04-06T12:00:00Z", "expires_at": "2026-04-06T13:00:00Z",
 "lease_duration": 3600, "renewable": true}
`;

const OUTPUT_AFTER = `
The connection string percent-encodes user and password (\`mysql://\` for MySQL and MariaDB).
\`sy dynamic lease list --format json\` prints {"data": [...]} with {lease_id}, {record_uid}, {path},
{username}, {state}, {created_at} and {expires_at}, and never a password.

Data goes to standard output; progress, spinners, notices and errors go to standard error.
Spinners and colour appear only on a terminal; \`NO_COLOR\` and \`--no-color\` turn colour off.
Tables show times in local time with the UTC offset (\`2026-12-01 22:40:05 +01:00\`); JSON and YAML keep
ISO-8601 UTC.
`;

const ENVIRONMENT: [string, string][] = [
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
  ['`SY_CLIENT_ID`', 'Who is acting, as written in the audit log (default: {user}@{host}).'],
  ['`NO_COLOR`', 'Set and not empty: no colour, as with `--no-color`.'],
];

const FILES: [string, string][] = [
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

const EXIT_STATUS: [string, string][] = [
  ['0', 'Success.'],
  ['1', 'The operation failed (a target database refused or was unreachable, ...).'],
  ['2', 'Bad usage or invalid input (flags, JSON, TTL, validation, a recipe its server cannot fulfil).'],
  ['3', 'Not found (secret, lease, version).'],
  ['4', 'The store could not be opened (no key, wrong key, tampered or locked).'],
  ['130', 'Interrupted, or a prompt was cancelled or answered no.'],
];

const EXIT_STATUS_AFTER = `
Errors are one or two plain sentences on standard error, the first starting with \`sy:\` (usage
errors of the command line too), without a stack trace unless \`--debug\` is given, and never contain
a password or key.
`;

const SECURITY = `
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

const EXAMPLES: [string, string][] = [
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
    `eval "$(sy dynamic lease create --path db:postgresql:dyn1 --ttl 15m --format env)"\npsql -c 'select current_user'`,
  ],
  ['One command as a fresh lease, revoked when it exits (MySQL clients get an option file):', "sy run --path db:mariadb:dyn1 -- mariadb -e 'select current_user()'"],
  ['Drop every user issued from the secrets under db:postgresql, without asking:', 'sy dynamic lease revoke --prefix db:postgresql --yes'],
  [
    'Turn on completion in bash (zsh and fish: `sy completion zsh`, `sy completion fish`):',
    'source <(sy completion bash)',
  ],
];

// ------------------------------------------------------------------- completion scripts

const GENERATED = 'Generated by `npm run docs` from the command tree of sy; do not edit.';

/** Single-quoted for sh, bash, zsh: nothing inside is special but the quote itself. */
function shQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** Single-quoted for fish, where backslash and quote are escaped inside single quotes. */
function fishQuote(text: string): string {
  return `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

const identifier = (command: CommandSpec): string => command.names.join('_').replace(/[^A-Za-z0-9_]/g, '_');

/** The bash script: `source <(sy completion bash)`. */
export function bashCompletion(program: Command): string {
  const tree = describeTree(program);
  const name = tree.names[0];
  const fn = `_${identifier(tree)}`;
  const commands = allCommands(tree);

  const specCases = commands.flatMap((command) => {
    const flags = command.options.flatMap(flagNames);
    const valued = command.options.filter((option) => option.value && !option.value.optional).flatMap(flagNames);
    const args = command.arguments.map((argument) => (argument.variadic ? `${argument.source.kind}...` : argument.source.kind));
    const subcommands = command.subcommands.flatMap((sub) => [sub.names[sub.names.length - 1], ...sub.aliases]);
    return [
      `    ${shQuote(fullName(command))})`,
      `      ${fn}_subcommands=${shQuote(subcommands.join(' '))}`,
      `      ${fn}_flags=${shQuote(flags.join(' '))}`,
      `      ${fn}_valued=${shQuote(valued.join(' '))}`,
      `      ${fn}_args=${shQuote(args.join(' '))}`,
      '      ;;',
    ];
  });

  // Which command an alias stands for.
  const aliasCases = commands.flatMap((command) =>
    command.aliases.map((alias) => `    ${shQuote(`${fullName(command).replace(/ [^ ]+$/, '')} ${alias}`)}) echo ${shQuote(fullName(command))} ;;`),
  );

  const valueCases = commands.flatMap((command) =>
    command.options.flatMap((option) => {
      if (!option.value) return [];
      const patterns = flagNames(option).map((flag) => shQuote(`${fullName(command)} ${flag}`)).join('|');
      const source = option.value.source;
      const words = source.kind === 'choices' ? `; ${fn}_words=${shQuote(source.values.join(' '))}` : '';
      return [`    ${patterns}) ${fn}_source=${source.kind}${words} ;;`];
    }),
  );

  const argumentChoiceCases = commands.flatMap((command) =>
    command.arguments.flatMap((argument, index) =>
      argument.source.kind === 'choices' ? [`    ${shQuote(`${fullName(command)} ${index}`)}) ${fn}_words=${shQuote(argument.source.values.join(' '))} ;;`] : [],
    ),
  );

  return `# bash completion for ${name}
# ${GENERATED}
#
# Load it with: source <(${name} completion bash)
# or install it as ${name} in bash-completion's directory (e.g. /usr/share/bash-completion/completions).

# The shape of one command: subcommands, flags, flags that take a value, positional arguments.
${fn}_spec() {
  ${fn}_subcommands= ${fn}_flags= ${fn}_valued= ${fn}_args=
  case "$1" in
${specCases.join('\n')}
  esac
}

${fn}_resolve_alias() {
  case "$1" in
${aliasCases.join('\n')}
    *) echo "$1" ;;
  esac
}

# Where the values of a flag come from: choices, paths, leases, file or text.
${fn}_value_source() {
  ${fn}_source=text ${fn}_words=
  case "$1 $2" in
${valueCases.join('\n')}
  esac
}

${fn}_argument_choices() {
  ${fn}_words=
  case "$1 $2" in
${argumentChoiceCases.join('\n')}
  esac
}

# Secret paths or lease ids from the store. Silent and harmless when there is no store or
# no key: completion must never print an error, prompt, or revoke anything.
${fn}_dynamic() {
  local bin="\${${fn}_bin:-${name}}"
  [[ $bin == "~/"* ]] && bin="$HOME/\${bin#"~/"}"
  SY_NO_SWEEP=1 command "$bin" __complete "$1" --no-sweep </dev/null 2>/dev/null
}

${fn}_add() { # $1: kind or word list source, $2: the word being completed
  local candidate
  case "$1" in
    paths|leases)
      while IFS= read -r candidate; do
        [[ -n $candidate && $candidate == "$2"* ]] && COMPREPLY+=("$candidate")
      done < <(${fn}_dynamic "$1")
      ;;
    file)
      compopt -o filenames 2>/dev/null
      while IFS= read -r candidate; do COMPREPLY+=("$candidate"); done < <(compgen -f -- "$2")
      ;;
    choices)
      while IFS= read -r candidate; do COMPREPLY+=("$candidate"); done < <(compgen -W "\${${fn}_words}" -- "$2")
      ;;
  esac
}

${fn}() {
  local IFS=$' \\t\\n'
  # Words are taken from the line itself, not COMP_WORDS, which bash splits at ':' and '='.
  local line="\${COMP_LINE:0:COMP_POINT}"
  local -a words=()
  read -r -a words <<< "$line"
  local cur=""
  if [[ -n $line && $line != *[[:space:]] && \${#words[@]} -gt 0 ]]; then
    local n=\${#words[@]}
    cur="\${words[n-1]}"
    words=("\${words[@]:0:n-1}")
  fi
  local ${fn}_bin="\${words[0]}"
  local ${fn}_subcommands ${fn}_flags ${fn}_valued ${fn}_args ${fn}_source ${fn}_words
  local path=${shQuote(name)} word pending="" positionals=0 i ended=""
  ${fn}_spec "$path"
  for ((i = 1; i < \${#words[@]}; i++)); do
    word="\${words[i]}"
    if [[ -n $pending ]]; then pending=""; continue; fi
    if [[ -n $ended ]]; then ((positionals++)); continue; fi
    case "$word" in
      --) ended=1 ;;
      -*=*) ;;
      -*) [[ " \${${fn}_valued} " == *" $word "* ]] && pending="$word" ;;
      *)
        if [[ -n \${${fn}_subcommands} && " \${${fn}_subcommands} " == *" $word "* ]]; then
          path="$(${fn}_resolve_alias "$path $word")"
          ${fn}_spec "$path"
          positionals=0
        else
          ((positionals++))
        fi
        ;;
    esac
  done

  COMPREPLY=()
  local value="" flag=""
  if [[ -n $pending ]]; then
    flag="$pending" value="$cur"
  elif [[ -z $ended && $cur == -*=* ]]; then
    flag="\${cur%%=*}" value="\${cur#*=}"
  fi
  if [[ -n $flag ]]; then
    ${fn}_value_source "$path" "$flag"
    ${fn}_add "\${${fn}_source}" "$value"
    # bash replaces only the part of the word after the last ':' or '='.
    if [[ $value == *:* && $COMP_WORDBREAKS == *:* ]]; then
      local prefix="\${value%"\${value##*:}"}" k
      for k in "\${!COMPREPLY[@]}"; do COMPREPLY[k]="\${COMPREPLY[k]#"$prefix"}"; done
    elif [[ -z $pending && $COMP_WORDBREAKS != *=* ]]; then
      local k
      for k in "\${!COMPREPLY[@]}"; do COMPREPLY[k]="$flag=\${COMPREPLY[k]}"; done
    fi
    return 0
  fi
  if [[ -z $ended && $cur == -* ]]; then
    while IFS= read -r word; do COMPREPLY+=("$word"); done < <(compgen -W "\${${fn}_flags}" -- "$cur")
    return 0
  fi
  if [[ -n \${${fn}_subcommands} ]]; then
    while IFS= read -r word; do COMPREPLY+=("$word"); done < <(compgen -W "\${${fn}_subcommands}" -- "$cur")
    return 0
  fi
  local -a kinds=(\${${fn}_args})
  local kind="\${kinds[positionals]}"
  if [[ -z $kind && \${#kinds[@]} -gt 0 && \${kinds[\${#kinds[@]}-1]} == *... ]]; then kind="\${kinds[\${#kinds[@]}-1]}"; fi
  kind="\${kind%...}"
  if [[ $kind == choices ]]; then ${fn}_argument_choices "$path" "$positionals"; fi
  [[ -n $kind ]] && ${fn}_add "$kind" "$cur"
  if [[ $cur == *:* && $COMP_WORDBREAKS == *:* ]]; then
    local prefix="\${cur%"\${cur##*:}"}" k
    for k in "\${!COMPREPLY[@]}"; do COMPREPLY[k]="\${COMPREPLY[k]#"$prefix"}"; done
  fi
  return 0
}

complete -F ${fn} ${name}
`;
}

/** zsh `_arguments` text: brackets and colons are special in option descriptions. */
function zshDescription(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/([[\]:])/g, '\\$1');
}

function zshAction(source: ValueSource, fn: string): string {
  switch (source.kind) {
    case 'choices':
      return `(${source.values.map((value) => value.replace(/([\\\s()'"$`:])/g, '\\$1')).join(' ')})`;
    case 'paths':
      return `${fn}__paths`;
    case 'leases':
      return `${fn}__leases`;
    case 'file':
      return '_files';
    case 'text':
      return ' ';
  }
}

function zshOptionSpecs(command: CommandSpec, fn: string): string[] {
  return command.options.flatMap((option) => {
    const names = flagNames(option);
    const exclusion = names.length > 1 ? `(${names.join(' ')})` : '';
    return names.map((flag) => {
      let spec = `${exclusion}${flag}`;
      if (option.value) spec += flag.startsWith('--') ? (option.value.optional ? '=-' : '=') : option.value.optional ? '-' : '+';
      spec += `[${zshDescription(option.description)}]`;
      if (option.value) {
        spec += `${option.value.optional ? '::' : ':'}${zshDescription(option.value.name)}:${zshAction(option.value.source, fn)}`;
      }
      return shQuote(spec);
    });
  });
}

/** The zsh script: `#compdef`, for fpath or for sourcing after compinit. */
export function zshCompletion(program: Command): string {
  const tree = describeTree(program);
  const name = tree.names[0];
  const fn = `_${identifier(tree)}`;
  const functions = allCommands(tree).map((command) => {
    const id = `_${identifier(command)}`;
    const specs = zshOptionSpecs(command, fn);
    const body: string[] = [];
    if (command.subcommands.length > 0) {
      const entries = command.subcommands.flatMap((sub) => {
        const subName = sub.names[sub.names.length - 1];
        return [subName, ...sub.aliases].map((word) => shQuote(`${word.replace(/:/g, '\\:')}:${sub.description}`));
      });
      const cases = command.subcommands.map((sub) => `        ${[sub.names[sub.names.length - 1], ...sub.aliases].map(shQuote).join('|')}) _${identifier(sub)} ;;`);
      body.push(
        '  local curcontext="$curcontext" state state_descr line ret=1',
        '  typeset -A opt_args',
        `  _arguments -C -s -S \\`,
        ...specs.map((spec) => `    ${spec} \\`),
        `    ${shQuote(`1:${fullName(command)} command:->command`)} \\`,
        `    '*:: :->argument' && ret=0`,
        '  case $state in',
        '    command)',
        '      local -a commands',
        `      commands=(${entries.join(' ')})`,
        `      _describe -t commands ${shQuote(`${fullName(command)} command`)} commands && ret=0`,
        '      ;;',
        '    argument)',
        `      curcontext="\${curcontext%:*:*}:${identifier(command).replace(/_/g, '-')}-$words[1]:"`,
        '      case $words[1] in',
        ...cases,
        '      esac',
        '      ret=$?',
        '      ;;',
        '  esac',
        '  return ret',
      );
    } else {
      const positional = command.arguments.map((argument, index) => {
        const position = argument.variadic ? '*' : String(index + 1);
        const optional = !argument.required && !argument.variadic ? ':' : '';
        return shQuote(`${position}:${optional}${zshDescription(argument.name)}:${zshAction(argument.source, fn)}`);
      });
      body.push(`  _arguments -s -S \\`, ...[...specs, ...positional].map((spec, i, all) => `    ${spec}${i < all.length - 1 ? ' \\' : ''}`));
    }
    if (command === tree) {
      // The command typed (sy, ./bin/sy), for the dynamic values; nested functions see it.
      body.unshift(`  local ${fn}__bin="\${words[1]/#\\~/$HOME}"`);
    }
    return `${id}() {\n${body.join('\n')}\n}`;
  });

  return `#compdef ${name}
# zsh completion for ${name}
# ${GENERATED}
#
# Install it as _${name} in a directory of $fpath, or load it with:
#   source <(${name} completion zsh)    (after compinit)

# Secret paths or lease ids from the store. Silent and harmless when there is no store or
# no key: completion must never print an error, prompt, or revoke anything.
${fn}__values() {
  local bin="\${${fn}__bin:-${name}}"
  SY_NO_SWEEP=1 command $bin __complete $1 --no-sweep </dev/null 2>/dev/null
}

${fn}__paths() {
  local -a values expl
  values=(\${(f)"$(${fn}__values paths)"})
  _wanted secret-paths expl 'secret path' compadd -a values
}

${fn}__leases() {
  local -a values expl
  values=(\${(f)"$(${fn}__values leases)"})
  _wanted leases expl 'lease id' compadd -a values
}

${functions.join('\n\n')}

if [ "$funcstack[1]" = "${fn}" ]; then
  ${fn} "$@"
else
  compdef ${fn} ${name}
fi
`;
}

/** The fish script: `sy completion fish | source`, or ~/.config/fish/completions/sy.fish. */
export function fishCompletion(program: Command): string {
  const tree = describeTree(program);
  const name = tree.names[0];
  const fn = `__${identifier(tree)}`;
  const commands = allCommands(tree);

  const valuedCases = commands.flatMap((command) => {
    const flags = command.options.filter((option) => option.value && !option.value.optional).flatMap(flagNames);
    return flags.length > 0 ? [`        case ${fishQuote(fullName(command))}`, `            contains -- $argv[2] ${flags.map(fishQuote).join(' ')}`] : [];
  });
  const subcommandCases = commands.flatMap((command) =>
    command.subcommands.flatMap((sub) => {
      const subName = sub.names[sub.names.length - 1];
      return [subName, ...sub.aliases].map((word) => `        case ${fishQuote(`${fullName(command)} ${word}`)}\n            echo ${fishQuote(subName)}`);
    }),
  );

  const lines: string[] = [];
  for (const command of commands) {
    const at = `${fn}_at "${fullName(command)}"`;
    for (const sub of command.subcommands) {
      lines.push(`complete -c ${name} -n ${fishQuote(`${at} 0`)} -f -a ${fishQuote(sub.names[sub.names.length - 1])} -d ${fishQuote(sub.description)}`);
    }
    for (const option of command.options) {
      const parts = [`complete -c ${name} -n ${fishQuote(at)}`];
      if (option.short) parts.push(`-s ${option.short.replace(/^-/, '')}`);
      if (option.long) parts.push(`-l ${option.long.replace(/^--/, '')}`);
      if (option.value) {
        const source = option.value.source;
        if (source.kind === 'file') parts.push('-r -F');
        else {
          parts.push('-x');
          if (source.kind === 'choices') parts.push(`-a ${fishQuote(source.values.join(' '))}`);
          if (source.kind === 'paths' || source.kind === 'leases') parts.push(`-a ${fishQuote(`(${fn}_dynamic ${source.kind})`)}`);
        }
      }
      parts.push(`-d ${fishQuote(option.description)}`);
      lines.push(parts.join(' '));
    }
    command.arguments.forEach((argument, index) => {
      const condition = argument.variadic ? `${at} ${index}+` : `${at} ${index}`;
      const source = argument.source;
      let values: string | undefined;
      if (source.kind === 'choices') values = source.values.join(' ');
      if (source.kind === 'paths' || source.kind === 'leases') values = `(${fn}_dynamic ${source.kind})`;
      if (source.kind === 'file') values = '(__fish_complete_path (commandline -ct))';
      if (values !== undefined) lines.push(`complete -c ${name} -n ${fishQuote(condition)} -f -a ${fishQuote(values)} -d ${fishQuote(argument.description || argument.name)}`);
    });
  }

  return `# fish completion for ${name}
# ${GENERATED}
#
# Install it as ~/.config/fish/completions/${name}.fish, or load it with:
#   ${name} completion fish | source

# Prints the command being completed ('${name} dynamic lease revoke'), then how many positional
# arguments it already has.
function ${fn}_state
    set -l tokens (commandline -opc)
    set -l path ${fishQuote(name)}
    set -l positionals 0
    set -l pending 0
    set -l ended 0
    for token in $tokens[2..-1]
        if test $pending = 1
            set pending 0
        else if test $ended = 1
            set positionals (math $positionals + 1)
        else if test "$token" = --
            set ended 1
        else if string match -q -- '-*=*' $token
        else if string match -q -- '-*' $token
            if ${fn}_valued "$path" $token
                set pending 1
            end
        else
            set -l sub (${fn}_subcommand "$path" $token)
            if test -n "$sub"
                set path "$path $sub"
                set positionals 0
            else
                set positionals (math $positionals + 1)
            end
        end
    end
    echo $path
    echo $positionals
end

function ${fn}_valued --argument-names path flag
    switch $path
${valuedCases.join('\n')}
        case '*'
            return 1
    end
end

function ${fn}_subcommand --argument-names path word
    switch "$path $word"
${subcommandCases.join('\n')}
    end
end

# True when completing the command named $argv[1]; with $argv[2] (N or N+), only when it
# has N positional arguments (or at least N).
function ${fn}_at
    set -l state (${fn}_state)
    test "$state[1]" = "$argv[1]"; or return 1
    set -q argv[2]; or return 0
    if string match -q -- '*+' $argv[2]
        test $state[2] -ge (string trim -r -c + -- $argv[2])
    else
        test $state[2] -eq $argv[2]
    end
end

# Secret paths or lease ids from the store. Silent and harmless when there is no store or
# no key: completion must never print an error, prompt, or revoke anything.
function ${fn}_dynamic
    set -l tokens (commandline -opc)
    set -l bin (string replace -r '^~/' "$HOME/" -- $tokens[1])
    test -n "$bin"; or set bin ${name}
    env SY_NO_SWEEP=1 $bin __complete $argv[1] --no-sweep </dev/null 2>/dev/null
end

complete -c ${name} -f
${lines.join('\n')}
`;
}

export type Shell = 'bash' | 'zsh' | 'fish';

export function completionScript(shell: Shell, program: Command): string {
  switch (shell) {
    case 'bash':
      return bashCompletion(program);
    case 'zsh':
      return zshCompletion(program);
    case 'fish':
      return fishCompletion(program);
  }
}

/** Every generated file, by its path in the repository: what `npm run docs` writes. */
export function docFiles(program: Command, version: string): Record<string, string> {
  return {
    'man/sy.1': manPage(program, { version, date: MANUAL_DATE }),
    'completions/sy.bash': bashCompletion(program),
    'completions/_sy': zshCompletion(program),
    'completions/sy.fish': fishCompletion(program),
  };
}
