import type { Command } from 'commander';
import { completionFor } from './docs/completion.js';
import { MANUAL_DATE, manPage } from './docs/man.js';
import { describeTree } from './docs/tree.js';

/**
 * The manual page and the shell completion scripts, generated from the live command tree
 * (so a new command or flag is documented and completed without anyone remembering to).
 * The parts live in docs/: tree.ts reads the tree; man.ts, with roff.ts and the prose of
 * man-text.ts, writes the page; bash.ts, zsh.ts and fish.ts write one script each. Pure
 * functions: no I/O.
 */

/** Every generated file, by its path in the repository: what `npm run docs` writes. */
export function docFiles(program: Command, version: string): Record<string, string> {
  const tree = describeTree(program);
  return {
    'man/sy.1': manPage(tree, { version, date: MANUAL_DATE }),
    'completions/sy.bash': completionFor.bash(tree),
    'completions/_sy': completionFor.zsh(tree),
    'completions/sy.fish': completionFor.fish(tree),
  };
}
