import { Command, Option } from 'commander';
import type { Context } from './context.js';
import { registerCompletionCommands } from './completion-commands.js';
import { FORMATS } from '../io/format.js';
import { KEY_SOURCES } from '../keys/sources.js';

/**
 * The command tree. It only wires names and flags to lazily imported command modules, so
 * `sy --help` loads none of them. Completions and the man page are generated from it.
 */
export function buildProgram(ctx: Context, version: string, argv?: readonly string[]): Command {
  // Building the whole tree costs milliseconds at every start-up; a command needs only its
  // own branch. Help, completion scripts and unknown words get the whole tree.
  const first = argv?.find((arg) => !arg.startsWith('-'));
  const only = first !== undefined && GROUPS.includes(first) && first !== 'completion' ? first : undefined;
  const want = (group: string) => only === undefined || only === group;

  const program = new Command('sy')
    .description('Short-lived database credentials from a local encrypted store.')
    .version(version, '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .enablePositionalOptions()
    // Settings are copied to subcommands when they are created: set them first.
    .exitOverride()
    // Commander's errors are thrown (exitOverride) and reported by the entry point as sy's own.
    .configureOutput({ outputError: () => undefined })
    .showSuggestionAfterError()
    .addHelpText('after', '\nEnvironment: SY_HOME, SY_STORE, SY_MASTER_KEY, SY_MASTER_KEY_FILE, SY_PASSPHRASE, SY_NO_SWEEP, SY_CLIENT_ID.\nRun `man sy` for the whole manual.');

  if (want('init')) {
    program
      .command('init')
      .description('create the encrypted store in SY_HOME, or in the database SY_STORE names (there it may run again)')
      .addOption(new Option('--key-source <source>', 'where the key comes from (default: the first available)').choices(KEY_SOURCES))
      .addOption(formatOption())
      .action(lazy(() => import('../commands/init.js'), (m, opts) => m.initCommand(ctx, opts)));
  }

  if (want('key')) {
    const key = program.command('key').description('manage the key that opens the store');
    key
      .command('generate')
      .description('print a fresh random key for SY_MASTER_KEY')
      .action(lazy(() => import('../commands/key/generate.js'), (m) => m.generateCommand(ctx)));
    key
      .command('change')
      .description('re-wrap the store key under a new key source (no record is re-encrypted)')
      .addOption(new Option('--to <source>', 'the new key source; its key comes from SY_NEW_MASTER_KEY, SY_NEW_MASTER_KEY_FILE or SY_NEW_PASSPHRASE').choices(KEY_SOURCES).makeOptionMandatory())
      .addOption(formatOption())
      .action(lazy(() => import('../commands/key/change.js'), (m, opts) => m.changeCommand(ctx, opts)));
  }

  if (want('secret')) {
    const secret = program.command('secret').description('create, read and manage secrets (DSV style)');
    withOutput(
      secret
        .command('create')
        .description('create version 1 of a secret')
        .argument('[path]', 'secret path, e.g. db:postgresql:root')
        .option('--path <path>', 'secret path (instead of the argument)')
        .option('--data <json>', 'secret data: inline JSON, @file, or - for stdin')
        .option('--attributes <json>', 'attributes: inline JSON, @file, or - for stdin')
        .option('--desc <text>', 'description')
        .option('--body <json>', 'a whole secret {path, description, attributes, data}: inline JSON, @file, or -')
        .option('--no-verify', "store a dynamic secret without checking its recipe on the base's server"),
    ).action(lazy(() => import('../commands/secret/create.js'), (m, opts, path) => m.createCommand(ctx, path, opts)));

    withOutput(
      secret
        .command('read')
        .description('print a secret; for a dynamic secret, issue a lease')
        .argument('[path|id]', 'secret path or id')
        .option('--path <path>', 'secret path (instead of the argument)')
        .option('--version <n>', 'read this version')
        .option('--ttl <duration>', 'lease length when the secret is dynamic'),
    ).action(lazy(() => import('../commands/secret/read.js'), (m, opts, path) => m.readCommand(ctx, path, opts)));

    withOutput(
      secret
        .command('describe')
        .description('print everything about a secret but its data')
        .argument('[path|id]', 'secret path or id')
        .option('--path <path>', 'secret path (instead of the argument)'),
    ).action(lazy(() => import('../commands/secret/describe.js'), (m, opts, path) => m.describeCommand(ctx, path, opts)));

    withOutput(
      secret
        .command('update')
        .description('add a version; data and attributes are merged unless --overwrite')
        .argument('[path]', 'secret path')
        .option('--path <path>', 'secret path (instead of the argument)')
        .option('--data <json>', 'data to merge: inline JSON, @file, or - for stdin')
        .option('--attributes <json>', 'attributes to merge: inline JSON, @file, or - for stdin')
        .option('--desc <text>', 'new description')
        .option('--overwrite', 'replace data and attributes instead of merging')
        .option('--no-verify', "store changed dynamic attributes without checking them on the base's server"),
    ).action(lazy(() => import('../commands/secret/update.js'), (m, opts, path) => m.updateCommand(ctx, path, opts)));

    secret
      .command('delete')
      .description('delete a secret and all its versions')
      .argument('[path]', 'secret path')
      .option('--path <path>', 'secret path (instead of the argument)')
      .option('--force', 'delete even while dynamic secrets link to it or leases are active')
      .option('-y, --yes', 'do not ask for confirmation')
      .action(lazy(() => import('../commands/secret/delete.js'), (m, opts, path) => m.deleteCommand(ctx, path, opts)));

    withOutput(
      secret
        .command('rollback')
        .description('add a version equal to an earlier one')
        .argument('[path]', 'secret path')
        .option('--path <path>', 'secret path (instead of the argument)')
        .option('--version <n>', 'version to return to (default: the previous one)'),
    ).action(lazy(() => import('../commands/secret/rollback.js'), (m, opts, path) => m.rollbackCommand(ctx, path, opts)));

    withOutput(
      secret
        .command('search')
        .description('find secrets whose path contains a text, or the dynamic secrets linked to a base')
        .argument('[query]', 'text to look for in paths')
        .option('--query <text>', 'text to look for (instead of the argument)')
        .option('--search-links', 'list the dynamic secrets whose linkedSecret is the query')
        .option('--limit <n>', 'at most this many results (default 25)'),
    ).action(lazy(() => import('../commands/secret/search.js'), (m, opts, query) => m.searchCommand(ctx, query, opts)));
  }

  if (want('dynamic')) {
    const dynamic = program.command('dynamic').description('dynamic secrets: leases of short-lived database users');
    const lease = dynamic.command('lease').description('create, list, renew and revoke leases');
    withOutput(
      lease
        .command('create')
        .description('create a database user and print its lease')
        .option('--record-uid <id>', 'id of the dynamic secret')
        .option('--path <path>', 'path of the dynamic secret')
        .option('--ttl <duration>', "lease length: seconds or 90s, 15m, 1h30m (default: the secret's ttl; at most 86400)"),
    ).action(lazy(() => import('../commands/dynamic/lease/create.js'), (m, opts) => m.createLeaseCommand(ctx, opts)));

    withOutput(
      lease
        .command('list')
        .description('list active leases (with --all, ended ones too)')
        .option('--record-uid <id>', 'only leases of this dynamic secret')
        .option('--path <path>', 'only leases of this path')
        .option('--all', 'include revoked and forgotten leases')
        .option('--limit <n>', 'at most this many (default 1000)')
        .option('--offset <n>', 'skip this many (paging)'),
    ).action(lazy(() => import('../commands/dynamic/lease/list.js'), (m, opts) => m.listLeasesCommand(ctx, opts)));

    withOutput(
      lease.command('lookup').description('show one lease (never its password)').argument('<lease_id>', 'lease id'),
    ).action(lazy(() => import('../commands/dynamic/lease/lookup.js'), (m, opts, id) => m.lookupLeaseCommand(ctx, id, opts)));

    withOutput(
      lease
        .command('renew')
        .description('extend a lease from now, capped at its max TTL; it never shortens a lease, and an expired lease cannot be renewed')
        .argument('<lease_id>', 'lease id')
        .option('--increment <duration>', "extension from now (default: the secret's ttl); shorter than what is left keeps the expiry"),
    ).action(lazy(() => import('../commands/dynamic/lease/renew.js'), (m, opts, id) => m.renewLeaseCommand(ctx, id, opts)));

    withOutput(
      lease
        .command('revoke')
        .description('drop the database user(s) now')
        .argument('[lease_id]', 'lease id')
        .option('--prefix <path>', 'revoke the leases of this path and of every path below it (whole segments, case as written; a trailing : or / is fine)')
        .option('--force', 'forget leases whose user cannot be dropped (it may remain); asks first, or needs --yes without a terminal')
        .option('-y, --yes', 'do not ask for confirmation (needed without a terminal for --prefix and --force)'),
    ).action(lazy(() => import('../commands/dynamic/lease/revoke.js'), (m, opts, id) => m.revokeLeaseCommand(ctx, id, opts)));

    withOutput(
      dynamic
        .command('sweep')
        .description('revoke every lease that is due now, drop orphaned users past their bound, and report')
        .option('--pool <name>', 'only leases of dynamic secrets in this pool')
        .option('--no-reap', 'skip the orphan reaper (it connects to every base secret\'s server)'),
    ).action(lazy(() => import('../commands/dynamic/sweep.js'), (m, opts) => m.sweepCommand(ctx, opts)));
  }

  if (want('daemon')) {
    program
      .command('daemon')
      .description('keep revoking leases on time until stopped (SIGTERM/SIGINT)')
      .option('--interval <duration>', 'longest sleep between passes (default 60s); the daemon also wakes at each expiry')
      .option('--pool <name>', 'join this pool and revoke only its leases (default: serve every pool)')
      .option('--once', 'do one pass and exit')
      .addOption(new Option('--log-format <format>', 'one JSON line per event, or text for people').choices(['json', 'text']).default('json'))
      .option('--reap-interval <duration>', 'how often to look for orphaned users (default 10m)')
      .option('--ready-file <path>', 'touch this file after each pass and heartbeat that succeeded, remove it at exit (a readiness probe checks its age)')
      .option('--listen <host:port>', 'also serve the lease API there (plain HTTP on loopback only; otherwise with --tls-cert and --tls-key)')
      .option('--tls-cert <file>', 'the PEM certificate (chain) the API serves')
      .option('--tls-key <file>', 'the PEM private key of --tls-cert')
      .action(lazy(() => import('../daemon/command.js'), (m, opts) => m.daemonCommand(ctx, opts)));
  }

  if (want('auth')) {
    const auth = program.command('auth').description('tokens for the lease API (client side: SY_SERVER, SY_CLIENT_ID, SY_PRIVATE_KEY)');
    auth
      .command('token')
      .description('print a signed token for `Authorization: Bearer` (as for curl in the seed)')
      .option('--ttl <duration>', 'how long the token lives (default 5m; at most 15m)')
      .action(lazy(() => import('../commands/auth/token.js'), (m, opts) => m.tokenCommand(ctx, opts)));
  }

  if (want('pool')) {
    const pool = program.command('pool').description('the daemon pools that revoke leases on time');
    withOutput(
      pool.command('list').description('list each pool with its live daemons, active leases and next expiry; flag a pool with leases and no live daemon'),
    ).action(lazy(() => import('../commands/pool/list.js'), (m, opts) => m.listPoolsCommand(ctx, opts)));
  }

  if (want('client')) {
    const client = program.command('client').description('the clients of the lease API: who may ask the daemons for leases without the master key');
    const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];
    const allow = (required: boolean) =>
      new Option('--allow <pattern>', `a secret path, a path ending in ":*" for every path below it, or "*" (repeat for more${required ? '' : '; replaces them all'})`).argParser(collect);
    const caps = (command: Command) =>
      command
        .option('--max-ttl <duration>', "cap on its leases' TTL: seconds or 15m, 1h (at most 86400; the recipe's own cap still holds)")
        .option('--max-leases <n>', 'how many of its leases may be active at once (default 100)')
        .option('--public-key <pem>', 'its Ed25519 public key (PEM): inline, @file, or - for stdin');
    caps(
      client
        .command('create')
        .description('register a client; without --public-key, make its key pair and print the private key once')
        .argument('<name>', 'client name: 1-64 of letters, digits, . _ @ -')
        .addOption(allow(true).makeOptionMandatory()),
    )
      .addOption(formatOption())
      .option('--filter <field>', 'print one raw value, e.g. private_key')
      .option('-o, --output <file>', 'write the private key there (mode 0600, atomic) instead of printing it')
      .action(lazy(() => import('../commands/client/create.js'), (m, opts, name) => m.createClientCommand(ctx, name, opts)));
    withOutput(client.command('list').description('list the clients, their patterns, caps and active leases (never a key)')).action(
      lazy(() => import('../commands/client/list.js'), (m, opts) => m.listClientsCommand(ctx, opts)),
    );
    withOutput(client.command('describe').description('show one client: patterns, caps, active leases, key fingerprint').argument('<name>', 'client name')).action(
      lazy(() => import('../commands/client/describe.js'), (m, opts, name) => m.describeClientCommand(ctx, name, opts)),
    );
    withOutput(
      caps(client.command('update').description('change what is given; the rest stays').argument('<name>', 'client name').addOption(allow(false))),
    ).action(lazy(() => import('../commands/client/update.js'), (m, opts, name) => m.updateClientCommand(ctx, name, opts)));
    withOutput(
      client
        .command('delete')
        .description("delete a client: every daemon refuses its tokens from the next request on")
        .argument('<name>', 'client name')
        .option('--revoke-leases', 'also revoke every lease it holds')
        .option('-y, --yes', 'do not ask for confirmation (needed without a terminal)'),
    ).action(lazy(() => import('../commands/client/delete.js'), (m, opts, name) => m.deleteClientCommand(ctx, name, opts)));
  }

  if (want('run')) {
    program
      .command('run')
      .description('run a command as a fresh lease (PG* variables, or a MySQL option file in MYSQL_HOME), without the store key; revoke it when the command exits')
      .option('--path <path>', 'path of the dynamic secret')
      .option('--record-uid <id>', 'id of the dynamic secret')
      .option('--ttl <duration>', 'lease length; renewed while the command runs, up to the max TTL')
      .argument('<command...>', 'the command and its arguments, after --')
      .passThroughOptions()
      .action(lazy(() => import('../commands/run.js'), (m, opts, argv) => m.runCommand(ctx, argv, opts)));
  }

  if (want('agent')) {
    program
      .command('agent')
      .description('keep one lease fresh in a file for a long-running application: renew it, rotate it before its max TTL, revoke it on SIGTERM')
      .option('--path <path>', 'path of the dynamic secret')
      .option('--record-uid <id>', 'id of the dynamic secret')
      .requiredOption('-o, --output <file>', 'the file the current lease is written to (mode 0600, atomic rename)')
      .addOption(new Option('-f, --format <format>', 'the file\'s format (default json)').choices(['json', 'yaml', 'env', 'dotenv']))
      .option('--ttl <duration>', 'length of each lease (default: the secret\'s ttl)')
      .option('--exec <command>', 'shell command run after each new lease is written, e.g. "kill -HUP $(cat /run/app.pid)"')
      .option('--drain <duration>', 'how long an old lease may stay while its user still has sessions (default 5m)')
      .addOption(new Option('--log-format <format>', 'one line per event on stderr: text for people, json for collectors').choices(['text', 'json']).default('text'))
      .action(lazy(() => import('../commands/agent.js'), (m, opts) => m.agentCommand(ctx, opts)));
  }

  if (want('audit')) {
    const audit = program.command('audit').description('the hash-chained audit log of every change and lease event');
    withOutput(
      audit
        .command('list')
        .description('print audit entries, oldest first')
        .option('--since <time>', 'only entries since an ISO-8601 time or a duration ago (1h, 30m)')
        .option('--lease <lease_id>', 'only entries of this lease')
        .option('--path <path>', 'only entries of this secret path')
        .option('--limit <n>', 'only the last n entries'),
    ).action(lazy(() => import('../commands/audit/list.js'), (m, opts) => m.auditListCommand(ctx, opts)));
    withOutput(
      audit.command('verify').description('check the hash chain; exits 1 and names the first bad line when it is broken'),
    ).action(lazy(() => import('../commands/audit/verify.js'), (m, opts) => m.auditVerifyCommand(ctx, opts)));
  }

  if (want('store')) {
    const store = program.command('store').description('where the store lives: SQLite in SY_HOME, or PostgreSQL (SY_STORE)');
    withOutput(store.command('info').description('print the store\'s kind, location, schema version and counts')).action(
      lazy(() => import('../commands/store/info.js'), (m, opts) => m.storeInfoCommand(ctx, opts)),
    );
    withOutput(
      store
        .command('copy')
        .description('copy the whole store (every version, the leases, the audit log) into an empty one, keeping its key')
        .addOption(new Option('--to <url|dir>', 'a postgresql:// URL, or a directory for a SQLite store; it must hold no store').makeOptionMandatory()),
    ).action(lazy(() => import('../commands/store/copy.js'), (m, opts) => m.storeCopyCommand(ctx, opts)));
  }

  if (want('config')) {
    const config = program.command('config').description('non-secret preferences (default output format, colour)');
    withOutput(config.command('list').description('show every setting and its value')).action(
      lazy(() => import('../commands/config/config.js'), (m, opts) => m.listCommand(ctx, opts)),
    );
    config
      .command('get')
      .description('print one setting')
      .argument('<key>', 'format or color')
      .action(lazy(() => import('../commands/config/config.js'), (m, _opts, key) => m.getCommand(ctx, key)));
    config
      .command('set')
      .description('change one setting')
      .argument('<key>', 'format or color')
      .argument('<value>', 'format: json|yaml|table|env|dotenv; color: auto|never')
      .action(lazy(() => import('../commands/config/config.js'), (m, _opts, key, value) => m.setCommand(ctx, key, value)));
    config
      .command('unset')
      .description('return one setting to its default')
      .argument('<key>', 'format or color')
      .action(lazy(() => import('../commands/config/config.js'), (m, _opts, key) => m.unsetCommand(ctx, key)));
  }

  if (want('completion') || want('__complete')) registerCompletionCommands(program, ctx);
  addGlobalOptions(program);
  addGlobalOptionsToLeaves(program);
  return program;
}

/** The top-level commands: buildProgram can build one of them alone. */
const GROUPS = ['init', 'key', 'secret', 'dynamic', 'daemon', 'pool', 'client', 'run', 'agent', 'audit', 'store', 'config', 'auth', 'completion', '__complete'];

/**
 * The flags every command takes. They are added to each command (not only to the root)
 * so they work anywhere on the line while a subcommand's own `--version` stays its own.
 */
function addGlobalOptions(command: Command): void {
  command
    .option('--debug', 'print stack traces of errors (never secret values)')
    .option('-q, --quiet', 'no spinners or notices on stderr')
    .option('--no-color', 'no colour, as with NO_COLOR')
    .option('--no-sweep', 'skip the revocation sweep that runs before each command (also SY_NO_SWEEP=1)');
}

function addGlobalOptionsToLeaves(command: Command): void {
  for (const sub of command.commands) {
    if (sub.commands.length === 0) addGlobalOptions(sub);
    else addGlobalOptionsToLeaves(sub);
  }
}

function formatOption(): Option {
  return new Option('-f, --format <format>', 'output format (default: table on a terminal, json otherwise)').choices(FORMATS);
}

/** The output flags every command that prints data shares. */
export function withOutput(command: Command): Command {
  return command
    .addOption(formatOption())
    .option('--filter <field>', 'print one raw value, e.g. data.password')
    .option('-o, --output <file>', 'write the result to a file (mode 0600, atomic) instead of stdout');
}

type Action = (...args: unknown[]) => Promise<void>;

/**
 * Imports a command module only when its command runs. Commander passes positional
 * arguments first, then the options and the command itself.
 */
function lazy<M>(
  load: () => Promise<M>,
  run: (module: M, options: any, ...positionals: any[]) => Promise<unknown>,
): Action {
  return async (...args: unknown[]) => {
    const command = args[args.length - 1] as Command;
    const positionals = args.slice(0, -2);
    const module = await load();
    await run(module, command.opts(), ...positionals);
  };
}
