/**
 * The store in a PostgreSQL database (SY_STORE=postgresql://...): secrets with their
 * versions, the lease ledger and the audit log, shared by every machine that has the URL and
 * the master key. The database sees sealed payloads and authenticated index columns, never a
 * secret or a key: its operator can read paths, states and times, and any change made
 * without the key is refused (exit 4) before sy acts on it.
 */
import { auditMac } from '../../audit/chain.js';
import { storeError } from '../../errors.js';
import { type KeyEnvironment, type PassphrasePrompt, keyForOpening } from '../../keys/sources.js';
import { type KeySlot, openSlot, parseSlot } from '../key-slot.js';
import { RecordMac, recordKey } from '../records.js';
import type { Store, StoreInfo, StoreOptions } from '../store.js';
import { PostgresAuditTrail } from './audit.js';
import { type Sql, StoreConnection } from './connection.js';
import { PostgresClientRegistry } from './clients.js';
import { PostgresLeaseLedger } from './leases.js';
import { KEYSLOT, PgMeta, tampered } from './meta.js';
import { SCHEMA_VERSION, tooNew, tooOld } from './schema.js';
import { PostgresSecretRepository } from './secrets.js';
import { PostgresPoolRegistry, listenForChanges } from './pools.js';
import type { StoreWatch, StoreWatcher } from '../pools.js';
import type { StoreUrl } from './url.js';

export interface PostgresStoreOptions extends StoreOptions {
  ask?: PassphrasePrompt;
}

export const SLOT_HINT = 'Restore the store database from a backup, or run `sy init` against an empty database.';

export class PostgresStore implements Store {
  readonly kind = 'postgresql';
  readonly location: string;
  readonly secrets: PostgresSecretRepository;
  readonly leases: PostgresLeaseLedger;
  readonly clients: PostgresClientRegistry;
  readonly audit: PostgresAuditTrail;
  readonly pools: PostgresPoolRegistry;
  /** For `sy store copy` and the tests: the pieces the repositories share. */
  readonly macs: RecordMac;
  readonly meta: PgMeta;

  constructor(
    readonly db: StoreConnection,
    readonly dataKey: Buffer,
    readonly storeId: string,
    options: StoreOptions,
  ) {
    this.location = db.url.location;
    this.macs = new RecordMac(recordKey(dataKey), storeId);
    this.meta = new PgMeta(this.macs);
    const ledger = new PostgresLeaseLedger(db, dataKey, this.macs, this.meta);
    this.leases = ledger;
    this.clients = new PostgresClientRegistry(db, this.macs, this.meta);
    this.secrets = new PostgresSecretRepository(db, dataKey, this.macs, this.meta, (sql, id) => ledger.liveLeasesOf(sql, id));
    this.audit = new PostgresAuditTrail(db, this.meta, auditMac(dataKey), options, `${this.location} (table sy.audit_lines)`);
    this.pools = new PostgresPoolRegistry(db);
  }

  /** LISTEN/NOTIFY: the ledger notifies when a lease is recorded, activated or renewed. */
  watch(watcher: StoreWatcher): Promise<StoreWatch> {
    return listenForChanges(() => this.db.dedicated(), watcher);
  }

  async info(): Promise<StoreInfo> {
    const [counts] = await this.db.use((sql) =>
      sql<{ schema: number; secrets: number; versions: number }>(
        `SELECT (SELECT max(version) FROM sy.schema_migrations) AS schema, (SELECT count(*)::integer FROM sy.secrets) AS secrets,
                (SELECT count(*)::integer FROM sy.secret_versions) AS versions`,
      ));
    return {
      schemaVersion: counts.schema,
      secrets: counts.secrets,
      secretVersions: counts.versions,
      leases: await this.leases.countByState(),
      auditLines: (await this.audit.head()).lines,
      clients: (await this.clients.list()).length,
    };
  }

  close(): Promise<void> {
    return this.db.close();
  }
}

/** What the database holds before the key is used: its schema version (0: none) and key slot. */
export interface StoreState {
  schema: number;
  slot?: string;
  /** Whether any row of a store is there (meta, secrets, leases, audit lines). */
  records: boolean;
}

/** Whether schema sy holds any row of a store: then a store is there, with its key slot or without. */
export const HAS_RECORDS = 'EXISTS (SELECT FROM sy.meta) OR EXISTS (SELECT FROM sy.secrets) OR EXISTS (SELECT FROM sy.leases) OR EXISTS (SELECT FROM sy.audit_lines)';

export async function readState(sql: Sql): Promise<StoreState> {
  try {
    const [row] = await sql<{ schema: number | null; slot: string | null; records: boolean }>(
      `SELECT (SELECT max(version) FROM sy.schema_migrations) AS schema, (SELECT value FROM sy.meta WHERE key = '${KEYSLOT}') AS slot,
              ${HAS_RECORDS} AS records`,
    );
    return { schema: row.schema ?? 0, slot: row.slot ?? undefined, records: row.records };
  } catch (error) {
    // No schema sy, or not all of it: there is no store here (yet).
    if ((error as { code?: string }).code === 'store_damaged') return { schema: 0, records: false };
    throw error;
  }
}

/**
 * A state that no sy writes (init makes the slot, the records and the migrations' rows in one
 * transaction): a key slot removed from under a store's records, or the migrations' rows
 * removed or set below 1 under a key slot. Refused (exit 4) rather than taken for "no store
 * here", which would lead `sy init` to make a new store over the old one.
 */
export function checkState(state: StoreState): void {
  if (state.slot === undefined && state.records) throw tampered('its key slot');
  if (state.slot !== undefined && state.schema <= 0) throw tampered('its schema version');
}

export const noStore = (location: string) =>
  storeError('no_store', `There is no sy store at ${location}.`, 'Run `sy init` with this SY_STORE to create one.');

/** Opens the store with the key: the schema must be this sy's, and the key must open its slot. */
export async function openPostgresStore(url: StoreUrl, env: KeyEnvironment, options: PostgresStoreOptions): Promise<PostgresStore> {
  const db = new StoreConnection(url);
  try {
    const state = await db.use(readState);
    if (state.schema > SCHEMA_VERSION) throw tooNew(url.location);
    checkState(state);
    if (state.slot === undefined) throw noStore(url.location);
    if (state.schema < SCHEMA_VERSION) throw tooOld(url.location, state.schema);
    const { slot, dataKey } = await unlockSlot(state.slot, url, env, options.ask);
    return new PostgresStore(db, dataKey, slot.storeId, options);
  } catch (error) {
    await db.close();
    throw error;
  }
}

export async function unlockSlot(text: string, url: StoreUrl, env: KeyEnvironment, ask?: PassphrasePrompt) {
  const slot: KeySlot = parseSlot(text, SLOT_HINT);
  const kek = await keyForOpening(slot.wrap, slot.storeId, env, ask);
  const dataKey = openSlot(kek.key, slot);
  if (!dataKey) throw storeError('wrong_key', `The key from ${kek.source} does not open the store at ${url.location}.`, 'Check the key; nothing was changed.');
  return { slot, dataKey, kek };
}
