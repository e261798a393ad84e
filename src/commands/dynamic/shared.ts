import type { Printable, Table } from '../../io/format.js';
import { keyValueTable } from '../../io/format.js';
import { clientEnv } from '../../io/client-env.js';
import type { IssuedLease, LeaseDetails, LeaseSummary } from '../../io/lease-view.js';
import { humanDuration } from '../../util/duration.js';
import { localTime } from '../../util/time.js';

export function issuedLeasePrintable(lease: IssuedLease): Printable {
  return {
    value: lease,
    table: () =>
      keyValueTable({
        ...lease,
        created_at: localTime(lease.created_at),
        expires_at: localTime(lease.expires_at),
        lease_duration: humanDuration(lease.lease_duration),
      }),
    env: () => clientEnv(lease),
  };
}

export function leaseListPrintable(leases: LeaseSummary[], now: number): Printable {
  return {
    value: { data: leases },
    table: (): Table => [
      ['LEASE ID', 'PATH', 'USERNAME', 'STATE', 'EXPIRES', 'TTL'],
      ...leases.map((l) => [
        l.lease_id,
        l.path,
        l.username,
        l.state,
        localTime(l.expires_at),
        l.state === 'active' ? humanDuration((Date.parse(l.expires_at) - now) / 1000) : '-',
      ]),
    ],
  };
}

export function leaseDetailsPrintable(lease: LeaseDetails): Printable {
  return {
    value: lease,
    table: () =>
      keyValueTable({
        ...lease,
        created_at: localTime(lease.created_at),
        expires_at: localTime(lease.expires_at),
        max_expires_at: localTime(lease.max_expires_at),
        ended_at: localTime(lease.ended_at),
        ttl: humanDuration(lease.ttl),
      }),
  };
}
