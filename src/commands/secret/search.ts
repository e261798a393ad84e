import type { Context, OutputFlags } from '../../cli/context.js';
import { usageError } from '../../errors.js';
import { searchSecrets } from '../../secrets/service.js';
import type { SecretMetadata } from '../../model/secret.js';
import { secretListPrintable } from './shared.js';

export interface SearchOptions extends OutputFlags {
  query?: string;
  searchLinks?: boolean;
  limit?: string;
}

const MAX_LIMIT = 1000;

/** `sy secret search`: paths containing Q, or with --search-links the dynamic secrets linked to Q. */
export async function searchCommand(ctx: Context, positional: string | undefined, options: SearchOptions): Promise<SecretMetadata[]> {
  if (positional !== undefined && options.query !== undefined && positional !== options.query) {
    throw usageError('conflicting_query', 'Give the query once: as an argument or with --query, not both.');
  }
  const limit = options.limit === undefined ? 25 : Number(options.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
    throw usageError('invalid_limit', `--limit must be a whole number between 1 and ${MAX_LIMIT}.`);
  }
  const found = await searchSecrets(await ctx.store(), { query: positional ?? options.query, searchLinks: Boolean(options.searchLinks), limit });
  await ctx.print(secretListPrintable(found), options);
  return found;
}
