import type { Context, OutputFlags } from '../../../cli/context.js';
import { dynamicSecretRef, seconds } from '../../../cli/flags.js';
import { interruptible } from '../../../cli/interrupt.js';
import { interrupted } from '../../../errors.js';
import { checkOutputPath } from '../../../io/output.js';
import { type IssuedLease, issuedLease } from '../../../io/lease-view.js';
import { type IssueRequest, issueLease } from '../../../leases/issue.js';
import { revokeLease } from '../../../leases/revoke.js';
import type { SecretRef } from '../../../model/secret.js';
import { issuedLeasePrintable } from '../shared.js';

export interface LeaseCreateOptions extends OutputFlags {
  recordUid?: string;
  path?: string;
  ttl?: string;
}

/** `sy dynamic lease create (--record-uid ID | --path P) [--ttl T]`. */
export async function createLeaseCommand(ctx: Context, options: LeaseCreateOptions): Promise<IssuedLease> {
  const ref = dynamicSecretRef(options);
  return issueLeaseCommand(ctx, ref, { ttlSeconds: seconds(options.ttl, '--ttl') }, options);
}

/** Shared with `sy secret read` of a dynamic secret: same lease, same output. */
export async function issueLeaseCommand(ctx: Context, ref: SecretRef, request: IssueRequest, flags: OutputFlags): Promise<IssuedLease> {
  if (flags.output !== undefined) checkOutputPath(flags.output);
  // Ctrl-C: no half-made lease is left behind, and the command ends with `sy: Interrupted.` (130).
  return interruptible(ctx.io, async (signal) => {
    try {
      const deps = await ctx.leaseDeps();
      const lease = issuedLease(await issueLease(deps, ref, { ...request, signal }));
      try {
        if (signal.aborted) throw interrupted();
        await ctx.print(issuedLeasePrintable(lease), flags);
      } catch (error) {
        // Nobody received the password: the user must not live on.
        await revokeLease(deps, lease.lease_id).catch(() => undefined);
        throw error;
      }
      return lease;
    } catch (error) {
      ctx.stopSpinner();
      throw error;
    }
  });
}
