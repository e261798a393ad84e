import type { Context, OutputFlags } from '../../../cli/context.js';
import { dynamicSecretRef, seconds } from '../../../cli/flags.js';
import { interruptible } from '../../../cli/interrupt.js';
import { interrupted } from '../../../errors.js';
import { checkOutputPath } from '../../../io/output.js';
import type { IssuedLease } from '../../../io/lease-view.js';
import type { LeaseService } from '../../../client/lease-service.js';
import { issuedLeasePrintable } from '../shared.js';

export interface LeaseCreateOptions extends OutputFlags {
  recordUid?: string;
  path?: string;
  ttl?: string;
}

/** `sy dynamic lease create (--record-uid ID | --path P) [--ttl T]`, on the store or through SY_SERVER. */
export async function createLeaseCommand(ctx: Context, options: LeaseCreateOptions): Promise<IssuedLease> {
  const ref = dynamicSecretRef(options);
  const ttlSeconds = seconds(options.ttl, '--ttl');
  if (options.output !== undefined) checkOutputPath(options.output);
  const service = await ctx.leases();
  const lease = await printIssued(ctx, service, (signal) => service.issue(ref, { ttlSeconds, signal }), options);
  return lease!;
}

/**
 * Shared with `sy secret read`: issues (or reads) under Ctrl-C's watch and prints a lease it
 * got. Ctrl-C leaves no half-made lease and ends with `sy: Interrupted.` (130); a lease
 * nobody received (the print failed, or Ctrl-C came after it was made) is revoked.
 */
export async function printIssued(
  ctx: Context,
  service: LeaseService,
  issue: (signal: AbortSignal) => Promise<IssuedLease | undefined>,
  flags: OutputFlags,
): Promise<IssuedLease | undefined> {
  return interruptible(ctx.io, async (signal) => {
    try {
      const lease = await issue(signal);
      if (lease === undefined) return undefined;
      try {
        if (signal.aborted) throw interrupted();
        await ctx.print(issuedLeasePrintable(lease), flags);
      } catch (error) {
        // Nobody received the password: the user must not live on.
        await service.revoke(lease.lease_id).catch(() => undefined);
        throw error;
      }
      return lease;
    } catch (error) {
      ctx.stopSpinner();
      throw error;
    }
  });
}
