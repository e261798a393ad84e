import { Argument, type Command } from 'commander';
import type { Context } from './context.js';
// Types only: the generators are loaded when a script is printed, never at start-up.
import type { Shell } from './docs/completion.js';

const SHELLS: readonly Shell[] = ['bash', 'zsh', 'fish'];

/** How long `sy __complete` may take before it gives up and offers nothing. */
const COMPLETE_BUDGET_MS = 3000;
const COMPLETE_LIMIT = 1000;

/**
 * `sy completion <shell>`, which prints a script generated from the live command tree, and
 * the hidden `sy __complete <kind>` those scripts call for secret paths and lease ids.
 */
export function registerCompletionCommands(program: Command, ctx: Context): void {
  program
    .command('completion')
    .description('print the shell completion script for bash, zsh or fish')
    .addArgument(new Argument('<shell>', 'the shell to complete in').choices(SHELLS))
    // Subcommands copy the parent's exit handling when created, before the entry point sets
    // it on the root: without this an unknown shell would exit 1 instead of throwing (exit 2).
    .exitOverride()
    .addHelpText(
      'after',
      '\nbash: source <(sy completion bash)\nzsh:  source <(sy completion zsh)   (after compinit)\nfish: sy completion fish | source',
    )
    .action(async (shell: Shell) => {
      const { completionScript } = await import('./docs/completion.js');
      ctx.io.stdout.write(completionScript(shell, program));
    });

  program
    .command('__complete', { hidden: true })
    .description('print completion values, one a line: paths (secret paths) or leases (active lease ids)')
    .argument('<kind>', 'paths or leases')
    .action(async (kind: string) => {
      // Completing must never revoke anything, print an error, or fail the shell.
      ctx.autoSweep = false;
      try {
        const values = await withinBudget(completionValues(ctx, kind), COMPLETE_BUDGET_MS);
        if (values.length > 0) ctx.io.stdout.write(`${values.join('\n')}\n`);
      } catch {
        // No store, no key, a locked store: nothing to offer.
      }
    });
}

async function completionValues(ctx: Context, kind: string): Promise<string[]> {
  if (kind !== 'paths' && kind !== 'leases') return [];
  const store = await ctx.store();
  if (kind === 'paths') return (await store.secrets.search({ query: '', limit: COMPLETE_LIMIT })).map((secret) => secret.path);
  return (await store.leases.list({ limit: COMPLETE_LIMIT, all: false })).map((lease) => lease.id);
}

function withinBudget<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('completion took too long')), ms);
    timer.unref();
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
