/**
 * The secrets of the DSV PostgreSQL documentation, read from test/fixtures/seeds as written
 * there (trailing comma included). The fixtures are byte-identical copies of the seed
 * documents, kept in the repository so a fresh clone runs the tests: the seeds are the
 * contract, so tests take the document itself rather than a retyped excerpt.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './cli.js';

const SEEDS = join(ROOT, 'test', 'fixtures', 'seeds');

function seedBlocks(): string[] {
  for (const name of readdirSync(SEEDS).filter((file) => file.endsWith('.txt'))) {
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
