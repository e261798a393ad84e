import { randomUUID } from 'node:crypto';
import { storeError, usageError } from '../../errors.js';
import { randomKey } from '../../keys/crypto.js';
import { deleteKeychainKey } from '../../keys/keychain.js';
import { type KeyEncryptionKey, type KeyEnvironment, type KeySourceName, type PassphrasePrompt, newKey } from '../../keys/sources.js';
import { type KeySlot, openSlot, parseSlot, wrapDataKey } from '../key-slot.js';
import { Census, RecordMac, recordKey } from '../records.js';
import { EMPTY_CHAIN, encodeChainHead } from './audit.js';
import { type Sql, StoreConnection } from './connection.js';
import { AUDIT_HEAD, CLIENT_CENSUS, KEYSLOT, LEASE_CENSUS, PgMeta, SECRET_CENSUS, tampered } from './meta.js';
import { CLIENTS_VERSION, type Migrated, SCHEMA_VERSION, migrate, tooNew } from './schema.js';
import { HAS_RECORDS, PostgresStore, type PostgresStoreOptions, SLOT_HINT, checkState, noStore, readState, unlockSlot } from './store.js';
import type { StoreUrl } from './url.js';

export interface PostgresInitResult {
  store: PostgresStore;
  storeId: string;
  keySource: string;
  /** True when this init made the store; false when it was there (and the key opens it). */
  created: boolean;
  migrated: Migrated;
}

/**
 * `sy init` against a PostgreSQL store: idempotent. The schema is brought up to date under
 * the migration lock (two inits at once, from anywhere, take turns), and a store is created
 * when there is none. On a store that exists, the key must open it first: a wrong key
 * changes nothing, not even the schema. A schema from a newer sy is refused untouched.
 * The key is found (and a passphrase asked for) before any transaction begins, so no lock is
 * held while someone types.
 */
export async function initPostgresStore(
  url: StoreUrl,
  env: KeyEnvironment,
  options: PostgresStoreOptions & { source?: KeySourceName },
): Promise<PostgresInitResult> {
  const db = new StoreConnection(url);
  let fresh: { kek: KeyEncryptionKey; dataKey: Buffer; storeId: string } | undefined;
  try {
    const before = await db.use(readState);
    if (before.schema > SCHEMA_VERSION) throw tooNew(url.location);
    checkState(before);
    const opened = before.slot === undefined ? undefined : await unlockSlot(before.slot, url, env, options.ask);
    if (!opened) {
      const storeId = randomUUID();
      fresh = { kek: await newKey(storeId, env, options), dataKey: randomKey(), storeId };
    }
    const outcome = await db.tx(async (sql) => {
      const migrated = await migrate(sql, url.location);
      const [row] = await sql<{ value: string }>('SELECT value FROM sy.meta WHERE key = $1', [KEYSLOT]);
      if (row === undefined) {
        // Its slot removed since it was read, or by another init's rollback: never a new store over old records.
        const [{ records }] = await sql<{ records: boolean }>(`SELECT ${HAS_RECORDS} AS records`);
        if (records) throw tampered('its key slot');
        const { kek, dataKey, storeId } = fresh ?? reopen(opened!);
        await writeNewStore(sql, wrapDataKey(kek.key, dataKey, storeId, kek.wrap), dataKey);
        return { migrated, created: true, dataKey, storeId, source: kek.source };
      }
      // There is a store: it must be the one this key opens (another init may have made it meanwhile).
      const kek = opened?.kek ?? fresh!.kek;
      const slotNow = parseSlot(row.value, SLOT_HINT);
      const dataKey = openSlot(kek.key, slotNow);
      if (!dataKey) {
        throw opened
          ? storeError('wrong_key', `The key from ${kek.source} does not open the store at ${url.location}.`, 'Check the key; nothing was changed.')
          : usageError('store_exists', `Another sy init created the store at ${url.location} first, with another key.`, 'Use that store, or run `sy init` against another database.');
      }
      // The migration that made the clients' table made it empty: its census starts now, with the key.
      if (migrated.from > 0 && migrated.from < CLIENTS_VERSION) {
        await sql('INSERT INTO sy.meta (key, value) VALUES ($1, $2)', [CLIENT_CENSUS, new PgMeta(new RecordMac(recordKey(dataKey), slotNow.storeId)).encode(CLIENT_CENSUS, new Census().encode())]);
      }
      return { migrated, created: false, dataKey, storeId: slotNow.storeId, source: kek.source };
    });
    if (!outcome.created && fresh?.kek.wrap.type === 'key' && fresh.kek.wrap.keychain) await deleteKeychainKey(fresh.storeId);
    const store = new PostgresStore(db, outcome.dataKey, outcome.storeId, options);
    return { store, storeId: outcome.storeId, keySource: outcome.source, created: outcome.created, migrated: outcome.migrated };
  } catch (error) {
    if (fresh?.kek.wrap.type === 'key' && fresh.kek.wrap.keychain) await deleteKeychainKey(fresh.storeId).catch(() => undefined);
    await db.close();
    throw error;
  }
}

/** A slot that was there before but is gone now (the store was dropped in between): make it again with the same key. */
function reopen(opened: { slot: KeySlot; dataKey: Buffer; kek: KeyEncryptionKey }) {
  return { kek: opened.kek, dataKey: opened.dataKey, storeId: opened.slot.storeId };
}

/**
 * The slot, the empty censuses and the empty log's head in one transaction: no process ever
 * sees a store with a key but without the records that the schema says it has.
 */
export async function writeNewStore(
  sql: Sql,
  slot: KeySlot,
  dataKey: Buffer,
  records?: { secrets: Census; leases: Census; clients: Census; audit: typeof EMPTY_CHAIN },
): Promise<void> {
  const meta = new PgMeta(new RecordMac(recordKey(dataKey), slot.storeId));
  const rows: [string, string][] = [
    [KEYSLOT, JSON.stringify(slot)],
    [SECRET_CENSUS, meta.encode(SECRET_CENSUS, (records?.secrets ?? new Census()).encode())],
    [LEASE_CENSUS, meta.encode(LEASE_CENSUS, (records?.leases ?? new Census()).encode())],
    [CLIENT_CENSUS, meta.encode(CLIENT_CENSUS, (records?.clients ?? new Census()).encode())],
    [AUDIT_HEAD, meta.encode(AUDIT_HEAD, encodeChainHead(records?.audit ?? EMPTY_CHAIN))],
  ];
  await sql('INSERT INTO sy.meta (key, value) SELECT * FROM unnest($1::text[], $2::text[])', [rows.map((r) => r[0]), rows.map((r) => r[1])]);
}

/**
 * `sy key change` on a PostgreSQL store: the data key is wrapped anew; no record changes.
 * The slot is replaced only if it is still the one that was opened.
 */
export async function changePostgresStoreKey(
  url: StoreUrl,
  env: KeyEnvironment,
  newEnv: KeyEnvironment,
  options: { to: KeySourceName; ask?: PassphrasePrompt },
): Promise<{ from: string; to: string }> {
  const db = new StoreConnection(url);
  try {
    const state = await db.use(readState);
    if (state.schema > SCHEMA_VERSION) throw tooNew(url.location);
    checkState(state);
    if (state.slot === undefined) throw noStore(url.location);
    const { slot, dataKey, kek } = await unlockSlot(state.slot, url, env, options.ask);
    const next = await newKey(slot.storeId, newEnv, {
      source: options.to,
      ask: options.ask,
      names: { flag: '--to', masterKey: 'SY_NEW_MASTER_KEY', masterKeyFile: 'SY_NEW_MASTER_KEY_FILE', passphrase: 'SY_NEW_PASSPHRASE' },
    });
    const nextSlot = wrapDataKey(next.key, dataKey, slot.storeId, next.wrap);
    const changed = await db.use((sql) => sql('UPDATE sy.meta SET value = $2 WHERE key = $1 AND value = $3 RETURNING key', [KEYSLOT, JSON.stringify(nextSlot), state.slot]));
    if (changed.length === 0) throw storeError('store_busy', 'The store key was changed by another process meanwhile; nothing was changed.', 'Run `sy key change` again.');
    if (slot.wrap.type === 'key' && slot.wrap.keychain && !(next.wrap.type === 'key' && next.wrap.keychain)) await deleteKeychainKey(slot.storeId);
    return { from: kek.source, to: next.source };
  } finally {
    await db.close();
  }
}
