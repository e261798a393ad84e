import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { type SyError, storeError } from '../errors.js';

/**
 * Authentication of the store's plain columns. Sealed payloads are AES-GCM, but the index
 * columns (a lease's user name, state and expiry, a secret's path and current version) are
 * plain so that SQLite can search them; anyone who can write sy.db could change them. Each
 * row therefore carries an HMAC-SHA256 of all its values, under a key derived from the data
 * key (never stored), bound to the row's kind, the store's id and the row's own id: a row
 * edited, or copied from another row or another store, fails when it is read.
 *
 * A MAC cannot show that a row is missing, or that a valid row was replaced by an older
 * valid copy of itself. For that the store keeps a census of each set that matters (the live
 * leases, the secrets): how many rows it holds and the sum of their MACs modulo 2^256,
 * updated in the same transaction as every write. Finding a row's MAC missing from the sum,
 * or an extra or older one in it, needs a scan of the set; the sum itself costs O(1) per write.
 */
export const RECORDS_KEY_INFO = 'sy/records/v1';

export function recordKey(dataKey: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', dataKey, Buffer.alloc(0), RECORDS_KEY_INFO, 32));
}

export class RecordMac {
  constructor(
    private readonly key: Buffer,
    private readonly storeId: string,
  ) {}

  /**
   * The MAC of one record. The values are a JSON array (self-delimiting, so no two
   * records encode alike) led by the kind and the store id; sealed bytes follow it.
   */
  of(kind: string, values: readonly unknown[], sealed?: Buffer): Buffer {
    const hmac = createHmac('sha256', this.key).update(JSON.stringify([kind, this.storeId, ...values]));
    if (sealed) hmac.update(sealed);
    return hmac.digest();
  }

  /** Checks `mac` (as read from the row, possibly absent) against the values. */
  check(mac: Buffer | null | undefined, kind: string, values: readonly unknown[], sealed?: Buffer): Buffer | undefined {
    const expected = this.of(kind, values, sealed);
    return mac && mac.length === expected.length && timingSafeEqual(mac, expected) ? expected : undefined;
  }
}

const MOD = 1n << 256n;

/** A multiset of row MACs as a count and a sum modulo 2^256 (an incremental set hash). */
export class Census {
  constructor(
    public count = 0,
    public sum = 0n,
  ) {}

  add(mac: Buffer): void {
    this.count++;
    this.sum = (this.sum + BigInt(`0x${mac.toString('hex')}`)) % MOD;
  }

  remove(mac: Buffer): void {
    this.count--;
    this.sum = (this.sum - BigInt(`0x${mac.toString('hex')}`) + MOD) % MOD;
  }

  equals(other: Census): boolean {
    return this.count === other.count && this.sum === other.sum;
  }

  encode(): string {
    return JSON.stringify({ count: this.count, sum: this.sum.toString(16) });
  }

  static decode(text: string): Census | undefined {
    try {
      const { count, sum } = JSON.parse(text) as { count: unknown; sum: unknown };
      if (typeof count === 'number' && Number.isSafeInteger(count) && count >= 0 && typeof sum === 'string' && /^[0-9a-f]{1,64}$/.test(sum)) {
        return new Census(count, BigInt(`0x${sum}`));
      }
    } catch {
      // fall through: not a census
    }
    return undefined;
  }
}

/** A value from the file, shown in an error: the attacker wrote it, so it is quoted when odd. */
export function shown(value: unknown): string {
  const text = String(value);
  return /^[\w:./@-]{1,200}$/.test(text) ? text : JSON.stringify(text.slice(0, 80));
}

/**
 * `record` names what was changed: `lease <id>`, `secret <path>`, `its live leases`;
 * `restore` what to restore (a PostgreSQL store's is its database).
 */
export function tampered(record: string, restore = 'SY_HOME'): SyError {
  return storeError('store_tampered', `The store's record of ${record} was changed by someone without the key.`,
    `sy acted on none of it; restore ${restore} from a backup.`);
}
