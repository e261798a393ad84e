import type { Context, OutputFlags } from '../cli/context.js';
import { keySource } from '../cli/flags.js';
import { keyValueTable } from '../io/format.js';
import { passphrasePrompt } from '../io/prompt.js';

/** What a new store needs first, on stderr after `sy init` (a notice: --quiet drops it). */
export const NEXT_STEP =
  'Next: store a database admin as a base secret: `sy secret create db:postgresql:root` asks for it field by field at a terminal (or give --attributes and --data; see `sy secret create --help`).';

export interface InitOptions extends OutputFlags {
  keySource?: string;
}

/**
 * `sy init`: creates the store in SY_HOME and says where its key lives. With SY_STORE, it
 * creates or upgrades the schema in that database, and says so when the store was there.
 */
export async function initCommand(ctx: Context, options: InitOptions) {
  const { initStore, postgresModules, sharedStoreUrl } = await import('../store/open.js');
  const { defaultActor } = await import('../audit/actor.js');
  const how = {
    source: keySource(options.keySource, '--key-source'),
    ask: passphrasePrompt(ctx.io),
    actor: defaultActor(ctx.env),
    warn: (text: string) => ctx.io.warn(`sy: ${text}`),
  };
  const url = sharedStoreUrl(ctx.env);
  if (url) {
    const shared = await (await postgresModules()).initPostgresStore(url, ctx.env, how);
    await shared.store.close();
    const { from, to } = shared.migrated;
    if (!shared.created) {
      ctx.io.notice(`The store at ${url.location} was already there${from < to ? `; its schema was upgraded from ${from} to ${to}` : ''}; nothing else was changed.`);
    }
    const summary = { store: url.location, kind: 'postgresql', store_id: shared.storeId, key_source: shared.keySource, schema_version: to, created: shared.created };
    await ctx.print({ value: summary, table: () => keyValueTable(summary) }, options);
    if (shared.created) ctx.io.notice(NEXT_STEP);
    return summary;
  }
  const result = await initStore(ctx.home(), ctx.env, how);
  await result.store.close();
  const summary = { home: result.home, store_id: result.storeId, key_source: result.keySource };
  await ctx.print({ value: summary, table: () => keyValueTable(summary) }, options);
  ctx.io.notice(NEXT_STEP);
  return summary;
}
