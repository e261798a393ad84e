import type { Context } from '../../cli/context.js';
import { interrupted, usageError } from '../../errors.js';
import { askConfirm, askPassword, askSelect, askText } from '../../io/prompt.js';
import { canonicalPath } from '../../secrets/path.js';
import { kindOf } from '../../secrets/validate.js';
import { BASE_TYPES, ENGINES, engineOfType } from '../../targets/engines.js';

export interface WizardResult {
  path: string;
  description: string;
  attributes: Record<string, unknown>;
  data: Record<string, unknown>;
}

const required = (label: string) => (value: string) => (value.trim() !== '' ? true : `${label} is required.`);
const wholeNumber = (label: string) => (value: string) => (/^\d+$/.test(value.trim()) ? true : `${label} must be a whole number.`);
const validPath = (value: string) => {
  try {
    canonicalPath(value);
    return true;
  } catch (error) {
    return (error as Error).message;
  }
};

/**
 * `sy secret create` on a terminal without --data, --attributes or --body: asks for a base
 * or dynamic secret field by field, shows the JSON it will store, and saves only on yes.
 */
export async function secretWizard(ctx: Context, path: string | undefined): Promise<WizardResult> {
  const kind = await askSelect('What kind of secret?', [
    { name: 'base — admin credentials of a PostgreSQL or MySQL/MariaDB server', value: 'base' },
    { name: 'dynamic — a recipe that issues short-lived users from a base secret', value: 'dynamic' },
  ]);
  const finalPath = path ?? (await askText('Path (e.g. db:postgresql:root):', { validate: validPath }));
  const description = await askText('Description (optional):');
  let attributes: Record<string, unknown>;
  let data: Record<string, unknown> = {};

  if (kind === 'base') {
    const type = await askSelect('Database type:', BASE_TYPES.filter((t) => t !== 'postgres').map((t) => ({ name: t, value: t })));
    const engine = engineOfType(type)!;
    attributes = { type };
    data = {
      host: (await askText('Host:', { default: '127.0.0.1', validate: required('Host') })).trim(),
      port: Number(await askText('Port:', { default: String(ENGINES[engine].defaultPort), validate: wholeNumber('Port') })),
      username: (await askText('Admin user:', { default: engine === 'postgresql' ? 'postgres' : 'root', validate: required('User') })).trim(),
      password: await askPassword('Admin password:'),
    };
    const database = (await askText('Database (optional):')).trim();
    if (database) data.database = database;
  } else {
    const store = await ctx.store();
    const bases = (await store.secrets.search({ query: '', limit: 1000 })).filter((s) => kindOf(s.attributes) === 'base');
    if (bases.length === 0) throw usageError('no_base_secret', 'There is no base secret to link to: create one first.');
    const linkedSecret = await askSelect('Base secret:', bases.map((b) => ({ name: `${b.path} (${String(b.attributes.type)})`, value: b.path })));
    const what = await askText('Privileges to grant (comma-separated):', { default: 'SELECT', validate: required('Privileges') });
    const where = await askText('On (*.*, schema.*, schema.table):', { default: '*.*', validate: required('Where') });
    const ttl = Number(await askText('Default lease TTL in seconds:', { default: '3600', validate: wholeNumber('TTL') }));
    const pool = await askText('Daemon pool:', { default: 'default' });
    const userPrefix = (await askText('User name prefix (optional):')).trim();
    attributes = {
      linkConfig: { linkType: 'dynamic', linkedSecret },
      grantPermissions: { what, where },
      ttl,
      pool,
      ...(userPrefix ? { userPrefix } : {}),
    };
  }

  const shown = { path: canonicalPath(finalPath), description, attributes, data: 'password' in data ? { ...data, password: '********' } : data };
  ctx.io.stderr.write(`\n${JSON.stringify(shown, null, 2)}\n\n`);
  if (!(await askConfirm('Save this secret?', true))) throw interrupted();
  return { path: finalPath, description, attributes, data };
}
