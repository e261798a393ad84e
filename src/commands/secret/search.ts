import type { Context, OutputFlags } from '../../cli/context.js';
import { wholeNumber } from '../../cli/flags.js';
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
  const limit = wholeNumber(options.limit, '--limit', { min: 1, max: MAX_LIMIT, code: 'invalid_limit' }) ?? 25;
  const query = positional ?? options.query;
  if (options.searchLinks && !query) throw usageError('missing_query', '--search-links needs --query <base secret path>.');
  const found = await searchSecrets(await ctx.store(), options.searchLinks ? { linkedTo: query, limit } : { query, limit });
  await ctx.print(secretListPrintable(found), options);
  return found;
}
