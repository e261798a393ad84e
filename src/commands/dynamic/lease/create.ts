import type { Context, OutputFlags } from '../../../cli/context.js';
import { usageError } from '../../../errors.js';
import { checkOutputPath } from '../../../io/output.js';
import { issueLease } from '../../../leases/issue.js';
import { revokeLease } from '../../../leases/revoke.js';
import type { IssuedLease } from '../../../leases/view.js';
import { canonicalPath, isUuid } from '../../../secrets/path.js';
import { getSecret } from '../../../secrets/service.js';
import type { Secret } from '../../../model/secret.js';
import { issuedLeasePrintable } from '../shared.js';

export interface LeaseCreateOptions extends OutputFlags {
  recordUid?: string;
  path?: string;
  ttl?: string;
}

/** `sy dynamic lease create (--record-uid ID | --path P) [--ttl T]`. */
export async function createLeaseCommand(ctx: Context, options: LeaseCreateOptions): Promise<IssuedLease> {
  if ((options.recordUid === undefined) === (options.path === undefined)) {
    throw usageError('missing_secret', 'Name the dynamic secret with exactly one of --record-uid or --path.');
  }
  if (options.recordUid !== undefined && !isUuid(options.recordUid)) {
    throw usageError('invalid_record_uid', '--record-uid must be the id (a UUID) of a dynamic secret.');
  }
  const store = await ctx.store();
  const ref = options.recordUid !== undefined ? { id: options.recordUid.toLowerCase() } : { path: canonicalPath(options.path!) };
  return issueLeaseCommand(ctx, await getSecret(store, ref), options);
}

/** Shared with `sy secret read` of a dynamic secret: same lease, same output. */
export async function issueLeaseCommand(ctx: Context, secret: Secret, options: OutputFlags & { ttl?: string }): Promise<IssuedLease> {
  if (options.output !== undefined) checkOutputPath(options.output);
  const deps = await ctx.leaseDeps();
  const lease = await issueLease(deps, secret, options.ttl);
  try {
    await ctx.print(issuedLeasePrintable(lease), options);
  } catch (error) {
    // Nobody received the password: the user must not live on.
    await revokeLease(deps, lease.lease_id).catch(() => undefined);
    throw error;
  }
  return lease;
}
