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

/**
 * The store's roots: the records that vouch for a whole set (a census of rows, the audit
 * log's end), as opposed to a row, which vouches for itself. A root put back to an older copy
 * of itself passes its MAC, and so do the rows it was written with, so each root is stamped
 * with the generation at which it was last written, and one more record, the generation,
 * holds the store's generation (it only grows) and the stamp each root must carry. Every
 * change of a root takes the next generation and writes the root and the generation together,
 * under the same lock or in the same transaction; every read checks all of them at once. A
 * root put back alone, or with the generation but not with every root that changed since
 * (every command appends to the audit log, so its end always moves), no longer agrees.
 *
 * A new kind of record that needs a census gets a line here and reads and writes its census
 * through the store's roots (readCensus/withCensus in SQLite's AuthenticatedMeta,
 * readCensus/updateCensus in PostgreSQL's PgMeta), in the transaction that writes its rows.
 * Its migration writes the first value with `writeRoots(changes, readRoots([key]))`: the new
 * root may be missing only there. What stays out of reach is the whole store put back
 * together (every root, every row, the log): see the README.
 */
export const ROOTS: Readonly<Record<string, string>> = {
  audit_head: "the audit log's end",
  client_census: 'its clients',
  lease_census: 'its live leases',
  secret_census: 'its secrets',
};
/** The roots of a store from before the clients of the lease API: their migration adds client_census to them. */
export const ROOTS_BEFORE_CLIENTS: readonly string[] = Object.keys(ROOTS).filter((key) => key !== 'client_census');
export const GENERATION = 'generation';
const GENERATION_WHAT = 'its generation counter';
/** The meta keys read together for every check, in the order their rows are locked. */
export const ROOT_KEYS: readonly string[] = [...Object.keys(ROOTS), GENERATION].sort();

/** The roots as checked: their values without the stamp, and the store's generation. */
export interface Roots {
  generation: number;
  /** The generation each root was last written at. */
  stamps: Record<string, number>;
  values: Map<string, string>;
}

export class RootRecords {
  /**
   * Meta rows whose MAC this handle has computed or checked, by key and exact stored text:
   * every store operation reads all the roots, and most of them have not changed since the
   * last one. A row whose text differs by one byte is checked afresh.
   */
  private readonly authentic = new Map<string, string>();

  constructor(
    readonly macs: RecordMac,
    /** What to restore, named in the error (tampered). */
    private readonly restore = 'SY_HOME',
  ) {}

  /** The stored text of a meta row: `<mac hex>:<value>`, the MAC bound to the store and the key. */
  encode(key: string, value: string): string {
    const stored = `${this.macs.of('meta', [key, value]).toString('hex')}:${value}`;
    this.remember(key, stored, value);
    return stored;
  }

  /** The value of a stored meta row, or undefined when its MAC fails. */
  decode(key: string, stored: string | undefined): string | undefined {
    if (stored === undefined || stored[64] !== ':') return undefined;
    const known = this.authentic.get(`${key}\n${stored}`);
    if (known !== undefined) return known;
    const value = stored.slice(65);
    if (!this.macs.check(Buffer.from(stored.slice(0, 64), 'hex'), 'meta', [key, value])) return undefined;
    this.remember(key, stored, value);
    return value;
  }

  private remember(key: string, stored: string, value: string): void {
    // A few generations of each root are plenty; the oldest go first.
    if (this.authentic.size >= 64) this.authentic.delete(this.authentic.keys().next().value as string);
    this.authentic.set(`${key}\n${stored}`, value);
  }

  /**
   * Every root and the generation as stored, read together (one statement, or under the lock);
   * their values once all agree. `absent`: roots that the migration adding them is about to
   * write, which may be missing from both the store and the generation (only there).
   */
  check(stored: ReadonlyMap<string, string>, absent: readonly string[] = []): Roots {
    const generation = parseGeneration(this.decode(GENERATION, stored.get(GENERATION)));
    if (!generation) throw this.tampered(GENERATION_WHAT);
    const values = new Map<string, string>();
    for (const [key, what] of Object.entries(ROOTS)) {
      if (absent.includes(key) && !stored.has(key) && generation.roots[key] === undefined) continue;
      const match = /^(\d+):([\s\S]*)$/.exec(this.decode(key, stored.get(key)) ?? '');
      if (!match) throw this.tampered(what);
      const stamp = Number(match[1]);
      const expected = generation.roots[key];
      // Older than the generation says: this root was put back. Newer (or unknown to it): the generation was.
      if (expected !== undefined && stamp < expected) throw this.tampered(what);
      if (expected === undefined || stamp > expected || stamp > generation.gen) throw this.tampered(GENERATION_WHAT);
      values.set(key, match[2]);
    }
    return { generation: generation.gen, stamps: generation.roots, values };
  }

  /** The rows that change `changes` (key to value) at the next generation, the generation row last. */
  next(roots: Pick<Roots, 'generation' | 'stamps'>, changes: Readonly<Record<string, string>>): [string, string][] {
    const gen = roots.generation + 1;
    const rows: [string, string][] = Object.entries(changes).map(([key, value]) => [key, this.encode(key, `${gen}:${value}`)]);
    const next = { ...roots.stamps, ...Object.fromEntries(Object.keys(changes).map((key) => [key, gen])) };
    rows.push([GENERATION, this.encode(GENERATION, JSON.stringify({ gen, roots: next }))]);
    return rows;
  }

  /** The rows of every root at `generation` (a new store, a copy, a migration). */
  initial(values: Readonly<Record<string, string>>, generation = 1): [string, string][] {
    for (const key of Object.keys(ROOTS)) if (values[key] === undefined) throw new Error(`no initial value for ${key}`);
    return this.next({ generation: generation - 1, stamps: {} }, values);
  }

  private tampered(what: string): SyError {
    return tampered(what, this.restore);
  }
}

function parseGeneration(text: string | undefined): { gen: number; roots: Record<string, number> } | undefined {
  try {
    const { gen, roots } = JSON.parse(text ?? '') as { gen: unknown; roots: unknown };
    const count = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 1;
    if (count(gen) && typeof roots === 'object' && roots !== null && Object.values(roots).every(count)) {
      return { gen, roots: roots as Record<string, number> };
    }
  } catch {
    // fall through: not a generation
  }
  return undefined;
}
