import { auditMac } from '../audit/chain.js';
import { type AuditHead, FileAuditLog, decodeAuditPosition, encodeAuditPosition } from '../audit/file-log.js';
import { RecordMac, recordKey, tampered } from './records.js';
import { AuthenticatedMeta, type Database, durableMethods, readMeta, runSnapshot, runWrite, WalSync } from './sqlite-db.js';
import { SqliteClientRegistry } from './sqlite-clients.js';
import { SqliteLeaseLedger } from './sqlite-leases.js';
import { AUDIT_HEAD } from './sqlite-schema.js';
import { SqliteSecretRepository } from './sqlite-secrets.js';
import { SqlitePoolRegistry, watchHome } from './sqlite-pools.js';
import type { PoolRegistry, StoreWatch, StoreWatcher } from './pools.js';
import type { Store, StoreInfo, StoreOptions } from './store.js';

const HEAD_WHAT = "the audit log's end";

/** The store in one SQLite file in SY_HOME, its audit log in a file next to it. */
export class SqliteStore implements Store {
  readonly kind = 'sqlite';
  readonly location: string;
  readonly secrets: SqliteSecretRepository;
  readonly leases: SqliteLeaseLedger;
  readonly clients: SqliteClientRegistry;
  readonly audit: FileAuditLog;
  readonly pools: PoolRegistry;
  private readonly meta: AuthenticatedMeta;
  private readonly walSync: WalSync | undefined;

  constructor(
    readonly home: string,
    private readonly db: Database,
    dataKey: Buffer,
    storeId: string,
    options: StoreOptions,
  ) {
    this.location = home;
    const walSync = options.groupCommit ? WalSync.enable(db) : undefined;
    this.walSync = walSync;
    const durable = <T extends object>(repository: T): T => (walSync ? durableMethods(repository, walSync) : repository);
    const macs = new RecordMac(recordKey(dataKey), storeId);
    const meta = new AuthenticatedMeta(db, macs);
    this.meta = meta;
    const ledger = new SqliteLeaseLedger(db, dataKey, macs, meta, () => this.audit.checkEnd());
    this.leases = durable(ledger);
    this.clients = durable(new SqliteClientRegistry(db, macs, meta));
    this.secrets = durable(new SqliteSecretRepository(db, dataKey, macs, meta, (id) => ledger.liveLeasesOf(id)));
    /**
     * Where the audit log ends (line count, byte length, last hash), kept in the store and
     * authenticated: cutting lines off the log, or moving this record, needs the key.
     */
    const head: AuditHead = {
      read: () => {
        const roots = meta.readRoots();
        const position = decodeAuditPosition(roots.values.get(AUDIT_HEAD) ?? '');
        if (!position) throw tampered(HEAD_WHAT);
        return { ...position, generation: roots.generation };
      },
      write: (position) => meta.writeRoots({ [AUDIT_HEAD]: encodeAuditPosition(position) }),
    };
    this.audit = durable(new FileAuditLog({
      home,
      actor: options.actor,
      // The log chains its lines under the store's write lock, which every process shares.
      exclusive: (fn) => runWrite(db, fn),
      mac: auditMac(dataKey),
      head,
      warn: options.warn,
    }));
    this.pools = durable(new SqlitePoolRegistry(db));
  }

  async info(): Promise<StoreInfo> {
    const counts = runSnapshot(this.db, () => ({
      schemaVersion: Number(readMeta(this.db, 'schema_version')),
      secrets: (this.db.prepare('SELECT count(*) AS n FROM secrets').get() as { n: number }).n,
      secretVersions: (this.db.prepare('SELECT count(*) AS n FROM secret_versions').get() as { n: number }).n,
    }));
    const head = await this.audit.head();
    const { generation } = runSnapshot(this.db, () => this.meta.readRoots());
    const clients = (await this.clients.list()).length;
    return { ...counts, leases: await this.leases.countByState(), auditLines: head.lines, generation, auditHash: head.hash, clients };
  }

  watch(watcher: StoreWatcher): Promise<StoreWatch> {
    return watchHome(this.home, watcher);
  }

  async close(): Promise<void> {
    await this.walSync?.close();
    this.db.close();
  }
}
