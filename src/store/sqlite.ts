import { createHmac, hkdfSync } from 'node:crypto';
import type { AuditHead, AuditPosition } from '../audit/log.js';
import { RecordMac, recordKey, tampered } from './records.js';
import { AuthenticatedMeta, type Database, runWrite } from './sqlite-db.js';
import { SqliteLeaseLedger } from './sqlite-leases.js';
import { SqliteSecretRepository } from './sqlite-secrets.js';
import { SqlitePoolRegistry, watchHome } from './sqlite-pools.js';
import type { PoolRegistry, StoreWatch, StoreWatcher } from './pools.js';
import type { LeaseLedger, SecretRepository, Store } from './store.js';

export const AUDIT_HEAD = 'audit_head';
const HEAD_WHAT = "the audit log's end";

export const auditKey = (dataKey: Buffer): Buffer => Buffer.from(hkdfSync('sha256', dataKey, Buffer.alloc(0), 'sy/audit/v1', 32));

export function encodeAuditPosition(position: AuditPosition): string {
  return JSON.stringify({ lines: position.lines, bytes: position.bytes, hash: position.hash, place: position.place });
}

function decodeAuditPosition(text: string): AuditPosition | undefined {
  try {
    const { lines, bytes, hash, place } = JSON.parse(text) as Partial<AuditPosition>;
    const count = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= -1;
    if (count(lines) && count(bytes) && typeof hash === 'string' && /^[0-9a-f]{64}$/.test(hash) && (place === undefined || typeof place === 'string')) {
      return { lines, bytes, hash, place };
    }
  } catch {
    // fall through
  }
  return undefined;
}

export class SqliteStore implements Store {
  readonly secrets: SecretRepository;
  readonly leases: LeaseLedger;
  readonly pools: PoolRegistry;

  private readonly auditKey: Buffer;
  private readonly meta: AuthenticatedMeta;

  constructor(
    readonly home: string,
    private readonly db: Database,
    dataKey: Buffer,
    storeId: string,
  ) {
    const macs = new RecordMac(recordKey(dataKey), storeId);
    this.meta = new AuthenticatedMeta(db, macs);
    const ledger = new SqliteLeaseLedger(db, dataKey, macs, this.meta);
    this.leases = ledger;
    this.secrets = new SqliteSecretRepository(db, dataKey, macs, this.meta, (id) => ledger.liveLeasesOf(id));
    this.auditKey = auditKey(dataKey);
    this.pools = new SqlitePoolRegistry(db);
  }

  watch(watcher: StoreWatcher): Promise<StoreWatch> {
    return watchHome(this.home, watcher);
  }

  auditMac(text: string): string {
    return createHmac('sha256', this.auditKey).update(text).digest('hex');
  }

  /**
   * Where the audit log ends (line count, byte length, last hash), kept in the store and
   * authenticated: cutting lines off the log, or moving this record, needs the key.
   */
  readonly auditHead: AuditHead = {
    read: () => {
      const value = this.meta.read(AUDIT_HEAD, HEAD_WHAT);
      const position = value === undefined ? undefined : decodeAuditPosition(value);
      if (!position) throw tampered(HEAD_WHAT);
      return position;
    },
    write: (position) => this.meta.write(AUDIT_HEAD, encodeAuditPosition(position)),
  };

  exclusive<T>(fn: () => T): T {
    return runWrite(this.db, fn);
  }

  close(): void {
    this.db.close();
  }
}
