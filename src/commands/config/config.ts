import type { Context, OutputFlags } from '../../cli/context.js';
import { SETTINGS, checkSetting, readSettings, writeSetting } from '../../config/settings.js';

/** `sy config list | get <key> | set <key> <value> | unset <key>`: non-secret preferences. */
export async function listCommand(ctx: Context, options: OutputFlags) {
  const settings = await readSettings();
  const rows = Object.entries(SETTINGS).map(([key, s]) => ({ key, value: settings[key] ?? null, values: s.values.join('|'), description: s.description }));
  await ctx.print(
    { value: { data: rows }, table: () => [['KEY', 'VALUE', 'VALUES', 'DESCRIPTION'], ...rows.map((r) => [r.key, r.value ?? '(default)', r.values, r.description])] },
    options,
  );
}

export async function getCommand(ctx: Context, key: string) {
  checkSetting(key);
  const value = (await readSettings())[key];
  ctx.io.stdout.write(`${value ?? ''}\n`);
}

export async function setCommand(ctx: Context, key: string, value: string) {
  const path = await writeSetting(key, value);
  ctx.io.notice(`Set ${key} to ${value} in ${path}.`);
}

export async function unsetCommand(ctx: Context, key: string) {
  const path = await writeSetting(key, undefined);
  ctx.io.notice(`Removed ${key} from ${path}.`);
}
