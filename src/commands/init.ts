import type { Context, OutputFlags } from '../cli/context.js';
import { keySource } from '../cli/flags.js';
import { keyValueTable } from '../io/format.js';
import { passphrasePrompt } from '../io/prompt.js';

export interface InitOptions extends OutputFlags {
  keySource?: string;
}

/** `sy init`: creates the store in SY_HOME and says where its key lives. */
export async function initCommand(ctx: Context, options: InitOptions) {
  const { initStore } = await import('../store/open.js');
  const { defaultActor } = await import('../audit/actor.js');
  const result = await initStore(ctx.home(), ctx.env, {
    source: keySource(options.keySource, '--key-source'),
    ask: passphrasePrompt(ctx.io),
    actor: defaultActor(ctx.env),
    warn: (text) => ctx.io.warn(`sy: ${text}`),
  });
  await result.store.close();
  const summary = { home: result.home, store_id: result.storeId, key_source: result.keySource };
  await ctx.print({ value: summary, table: () => keyValueTable(summary) }, options);
  return summary;
}
