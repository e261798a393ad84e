import type { Command } from 'commander';
import { bashCompletion } from './bash.js';
import { fishCompletion } from './fish.js';
import { describeTree, type CommandSpec } from './tree.js';
import { zshCompletion } from './zsh.js';

export type Shell = 'bash' | 'zsh' | 'fish';

/** Each shell's completion script for a tree. */
export const completionFor: Record<Shell, (tree: CommandSpec) => string> = {
  bash: bashCompletion,
  zsh: zshCompletion,
  fish: fishCompletion,
};

/** The completion script `sy completion <shell>` prints, for the live command tree. */
export function completionScript(shell: Shell, program: Command): string {
  return completionFor[shell](describeTree(program));
}
