import type { Context, OutputFlags } from '../../../cli/context.js';
import { dynamicSecretRef, seconds } from '../../../cli/flags.js';
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
  return printIssued(ctx, service, await service.issue(ref, { ttlSeconds }), options);
}

/** Shared with `sy secret read` of a dynamic secret: same lease, same output. */
export async function printIssued(ctx: Context, service: LeaseService, lease: IssuedLease, flags: OutputFlags): Promise<IssuedLease> {
  try {
    await ctx.print(issuedLeasePrintable(lease), flags);
  } catch (error) {
    // Nobody received the password: the user must not live on.
    await service.revoke(lease.lease_id).catch(() => undefined);
    throw error;
  }
  return lease;
}
