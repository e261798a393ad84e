import type { Context } from '../../cli/context.js';
import { SyError, cancelled, usageError } from '../../errors.js';
import { prompts } from '../../io/prompt.js';
import { newSecretPath } from '../../secrets/path.js';
import { kindOf, parseBaseConnection, parseDatabaseName, parseGrant, parseHost, parseMaxTtl, parsePool, parsePort, parsePrivileges, parseUserPrefix } from '../../secrets/validate.js';
import { type BaseConnection, MAX_LEASE_SECONDS } from '../../model/secret.js';
import type { Store } from '../../store/store.js';
import { BASE_TYPES, ENGINES, type Engine, engineOfType } from '../../model/engines.js';
import { parseDuration } from '../../util/duration.js';

export interface WizardResult {
  path: string;
  description: string;
  attributes: Record<string, unknown>;
  data: Record<string, unknown>;
}

type Validator = (value: string) => true | string | Promise<true | string>;

/**
 * A question's check, made of the same parser that checks the stored secret: each answer
 * is checked as it is given, and a wrong one is asked again (inquirer keeps it for editing)
 * instead of failing the whole wizard at the end.
 */
const checkedBy =
  (parse: (value: string) => unknown): Validator =>
  (value) => {
    try {
      parse(value.trim());
      return true;
    } catch (error) {
      if (error instanceof SyError) return error.message;
      throw error;
    }
  };

const optional = (validate: Validator): Validator => (value) => (value.trim() === '' ? true : validate(value));
const required = (label: string): Validator => (value) => (value.trim() !== '' ? true : `${label} is required.`);

function leaseSeconds(value: string, what: string): number {
  const seconds = parseDuration(value, what);
  if (seconds > MAX_LEASE_SECONDS) throw usageError('ttl_too_long', `${what} may be at most ${MAX_LEASE_SECONDS} seconds (24h).`);
  return seconds;
}

/** How long the wizard's connection test waits for the server. */
const CONNECTION_TEST_TIMEOUT_MS = 5_000;

/**
 * `sy secret create` on a terminal without --data, --attributes or --body: asks for a base
 * or dynamic secret field by field, checking each answer, offers to test the connection,
 * shows the JSON it will store, and saves only on yes.
 */
export async function secretWizard(ctx: Context, path: string | undefined): Promise<WizardResult> {
  const { askConfirm, askPassword, askSelect, askText } = prompts(ctx.io);
  const store = await ctx.store();
  const freePath = async (value: string): Promise<true | string> => {
    try {
      const canonical = newSecretPath(value.trim());
      return (await store.secrets.get({ path: canonical })) ? `A secret already exists at ${canonical}.` : true;
    } catch (error) {
      if (error instanceof SyError) return error.message;
      throw error;
    }
  };
  if (path !== undefined) {
    // Before the first question: a path that cannot be used would waste every answer.
    const problem = await freePath(path);
    if (problem !== true) throw usageError('invalid_path', problem);
  }

  const kind = await askSelect('What kind of secret?', [
    { name: 'base — admin credentials of a PostgreSQL or MySQL/MariaDB server', value: 'base' },
    { name: 'dynamic — a recipe that issues short-lived users from a base secret', value: 'dynamic' },
  ]);
  const example = kind === 'base' ? 'db:postgresql:root' : 'db:postgresql:dyn1';
  const finalPath = (path ?? (await askText(`Path (e.g. ${example}):`, { validate: freePath }))).trim();
  const description = await askText('Description (optional):');
  const { attributes, data } = kind === 'base' ? await askBase() : await askDynamic(ctx, store);

  const shown = { path: newSecretPath(finalPath), description, attributes, data: 'password' in data ? { ...data, password: '********' } : data };
  ctx.io.stderr.write(`\n${JSON.stringify(shown, null, 2)}\n\n`);
  if (!(await askConfirm('Save this secret?', true))) throw cancelled('Nothing was saved.');
  return { path: finalPath, description, attributes, data };

  async function askBase() {
    const type = await askSelect('Database type:', BASE_TYPES.filter((t) => t !== 'postgres').map((t) => ({ name: t, value: t })));
    const engine = engineOfType(type)!;
    const data: Record<string, unknown> = {
      host: (await askText('Host:', { default: '127.0.0.1', validate: checkedBy(parseHost) })).trim(),
      port: parsePort((await askText('Port:', { default: String(ENGINES[engine].defaultPort), validate: checkedBy(parsePort) })).trim()),
      username: (await askText('Admin user:', { default: engine === 'postgresql' ? 'postgres' : 'root', validate: required('The admin user') })).trim(),
      password: await askPassword('Admin password:'),
    };
    // On PostgreSQL the database is where leases are made and what `*.*` means: always asked.
    const database = (
      engine === 'postgresql'
        ? await askText('Database:', { default: 'postgres', validate: checkedBy(parseDatabaseName) })
        : await askText('Database (optional):', { validate: optional(checkedBy(parseDatabaseName)) })
    ).trim();
    if (database) data.database = database;
    const attributes = { type };
    await offerConnectionTest(ctx, parseBaseConnection(attributes, data), '');
    return { attributes, data };
  }

  async function askDynamic(ctx: Context, store: Store) {
    const bases = (await store.secrets.search({ query: '', limit: 1000 })).filter((s) => kindOf(s.attributes) === 'base');
    if (bases.length === 0) throw usageError('no_base_secret', 'There is no base secret to link to: create one first.');
    const linkedSecret = await askSelect('Base secret:', bases.map((b) => ({ name: `${b.path} (${String(b.attributes.type)})`, value: b.path })));
    const base = (await store.secrets.get({ path: linkedSecret }))!;
    const engine: Engine = engineOfType(base.attributes.type)!;
    const what = (await askText('Privileges to grant (comma-separated):', { default: 'SELECT', validate: checkedBy((v) => parsePrivileges(v, engine)) })).trim();
    const inDatabase = engine === 'postgresql' && typeof base.data.database === 'string' ? ` in database ${base.data.database}` : '';
    const where = (await askText(`On (*.*, schema.*, schema.table)${inDatabase}:`, { default: '*.*', validate: checkedBy((v) => parseGrant({ what, where: v }, engine)) })).trim();
    const ttl = leaseSeconds(
      await askText('Default lease TTL (seconds, or 90s, 15m, 1h30m):', { default: '1h', validate: checkedBy((v) => leaseSeconds(v, 'The TTL')) }),
      'The TTL',
    );
    const atLeastTtl = (value: string) => {
      const maxTtl = parseMaxTtl(value);
      if (maxTtl < ttl) throw usageError('invalid_secret', `maxTtl (${maxTtl} s) must be at least the TTL (${ttl} s).`);
      return maxTtl;
    };
    const maxTtl = atLeastTtl(await askText('Longest lease, renewals included (maxTtl, at most 24h):', { default: '24h', validate: checkedBy(atLeastTtl) }));
    const pool = (await askText('Daemon pool:', { default: 'default', validate: checkedBy(parsePool) })).trim();
    const userPrefix = (await askText('User name prefix (optional):', { validate: optional(checkedBy((v) => parseUserPrefix(v, engine))) })).trim();
    await offerConnectionTest(ctx, parseBaseConnection(base.attributes, base.data), ` (${base.path})`);
    const attributes = {
      linkConfig: { linkType: 'dynamic', linkedSecret },
      grantPermissions: { what, where },
      ttl,
      maxTtl,
      pool,
      ...(userPrefix ? { userPrefix } : {}),
    };
    return { attributes, data: {} };
  }
}

/**
 * Connects as the admin before anything is saved, so a typo in the host or password shows
 * now rather than at the first lease. A failure is said in one sentence; saving anyway is
 * allowed (the server may simply not be up yet).
 */
async function offerConnectionTest(ctx: Context, connection: BaseConnection, which: string): Promise<void> {
  const { askConfirm } = prompts(ctx.io);
  const address = `${connection.host}:${connection.port}`;
  if (!(await askConfirm(`Test the connection to ${address}${which} now?`, true))) return;
  const { connectTarget } = await import('../../targets/connect.js');
  try {
    const target = await connectTarget(connection, { connectTimeoutMs: CONNECTION_TEST_TIMEOUT_MS });
    await target.close();
  } catch (error) {
    if (!(error instanceof SyError)) throw error;
    ctx.io.warn(`sy: ${error.message}`);
    if (!(await askConfirm('Save it anyway?', false))) throw cancelled('Nothing was saved.');
    return;
  }
  ctx.io.notice(`Connected to ${ENGINES[connection.engine].label} at ${address} as ${connection.username}.`);
}
