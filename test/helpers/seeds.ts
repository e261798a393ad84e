/**
 * The secrets of the DSV PostgreSQL documentation, read from ../shared/seeds as written
 * there (trailing comma included): the seeds are the contract, so tests take them from the
 * source rather than from a copy that could drift.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './cli.js';

const SEEDS = join(ROOT, '..', 'shared', 'seeds');

function seedBlocks(): string[] {
  let files: string[];
  try {
    files = readdirSync(SEEDS);
  } catch {
    throw new Error(`The seed documents are missing: expected ${SEEDS} (../shared beside the checkout).`);
  }
  for (const name of files) {
    const text = readFileSync(join(SEEDS, name), 'utf8');
    if (!text.includes('# PostgreSQL Dynamic Secrets')) continue;
    const blocks = [...text.matchAll(/```\n([\s\S]*?)```/g)].map((m) => m[1]);
    if (blocks.length >= 2) return blocks;
  }
  throw new Error(`No PostgreSQL dynamic secrets seed with two JSON blocks in ${SEEDS}.`);
}

const [base, dynamic] = seedBlocks();
/** `db:postgresql:root`, as the seed shows it. */
export const SEED_BASE = base;
/** `db:postgresql:dyn1`, as the seed shows it (with its trailing comma). */
export const SEED_DYNAMIC = dynamic;
