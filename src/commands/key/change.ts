import type { Context, OutputFlags } from '../../cli/context.js';
import { usageError } from '../../errors.js';
import { keyValueTable } from '../../io/format.js';
import { withPassphraseTries } from '../../io/prompt.js';
import { keySource } from '../../cli/flags.js';

/**
 * `sy key change --to <source>`: re-wraps the store's data key under a new key. The new
 * key comes from SY_NEW_MASTER_KEY, SY_NEW_MASTER_KEY_FILE or SY_NEW_PASSPHRASE, the OS
 * keychain, or a passphrase asked twice on the terminal.
 */
export async function changeCommand(ctx: Context, options: OutputFlags & { to?: string }) {
  const to = keySource(options.to, '--to');
  if (!to) throw usageError('missing_key_source', '--to is required: master-key, master-key-file, passphrase or keychain.');
  const { changeStoreKey, sharedStoreUrl } = await import('../../store/open.js');
  const newEnv = { SY_MASTER_KEY: ctx.env.SY_NEW_MASTER_KEY, SY_MASTER_KEY_FILE: ctx.env.SY_NEW_MASTER_KEY_FILE, SY_PASSPHRASE: ctx.env.SY_NEW_PASSPHRASE };
  const result = await withPassphraseTries(ctx.io, (ask) => changeStoreKey(() => ctx.home(), ctx.env, newEnv, { to, ask, warn: (text) => ctx.io.warn(`sy: ${text}`) }));
  const url = sharedStoreUrl(ctx.env);
  const summary = { ...(url ? { store: url.location } : { home: ctx.home() }), key_source: result.to, previous_key_source: result.from };
  await ctx.print({ value: summary, table: () => keyValueTable(summary) }, options);
  return summary;
}
