import { resolve } from 'node:path';
import type { Context, OutputFlags } from '../../cli/context.js';
import { usageError } from '../../errors.js';
import { pick } from '../../io/format.js';
import { checkOutputPath, writeFileAtomic } from '../../io/output.js';
import type { ClientView } from '../../clients/service.js';
import { type ClientFlags, clientPrintable, clientSettings } from './shared.js';

export interface CreateClientOptions extends ClientFlags, OutputFlags {}

/**
 * `sy client create NAME --allow PATTERN...`: registers a client of the lease API. Without
 * `--public-key`, sy makes an Ed25519 pair, keeps the public half and hands out the private
 * one once: in `private_key`, or in the `--output` file (0600, atomic), and then nowhere else.
 */
export async function createClientCommand(ctx: Context, name: string, options: CreateClientOptions): Promise<ClientView> {
  const { output, ...printFlags } = options;
  if (output !== undefined) {
    if (options.publicKey !== undefined) {
      throw usageError('output_without_key', '--output receives the private key that sy makes, and with --public-key it makes none; leave one of them out.');
    }
    // Checked before the client exists: a bad path must not leave a client whose key nobody received.
    checkOutputPath(output);
  }
  const printsKey = options.publicKey === undefined && output === undefined;
  if (printsKey) checkPrintable(printFlags);
  const [settings, { createClient, withdrawClient }] = await Promise.all([clientSettings(ctx, options), import('../../clients/service.js')]);
  const store = await ctx.store();
  const { client, privateKey } = await createClient(store, name, settings, Date.now());
  let shown: ClientView & { private_key?: string; private_key_file?: string } = client;
  if (privateKey !== undefined && output !== undefined) {
    writeFileAtomic(output, privateKey);
    ctx.io.notice(`Wrote the private key of ${name} to ${output}; sy keeps no copy of it.`);
    shown = { ...client, private_key_file: resolve(output) };
  } else if (privateKey !== undefined) {
    shown = { ...client, private_key: privateKey };
    ctx.io.notice(`This is the only time the private key of ${name} is shown; sy keeps no copy of it.`);
  }
  try {
    await ctx.print(clientPrintable(shown), printFlags);
  } catch (error) {
    if (privateKey !== undefined && output === undefined) {
      await withdrawClient(store, name, 'its private key could not be printed');
      ctx.io.warn(`sy: client ${name} was deleted again: its private key could not be printed.`);
    }
    throw error;
  }
  return client;
}

/** What would fail only once the client exists, and lose its private key: refused first. */
function checkPrintable(flags: OutputFlags): void {
  if (flags.format?.toLowerCase() === 'dotenv') {
    throw usageError('dotenv_line_break', 'A private key spans lines, which --format dotenv cannot hold; use --format env or json, or --output FILE.');
  }
  if (flags.filter !== undefined) {
    const sample: Record<string, unknown> = { name: '', allow: [''], max_ttl: null, max_leases: 0, active_leases: 0, key_fingerprint: '', created_at: '', updated_at: '', private_key: '' };
    pick(sample, flags.filter);
  }
}
