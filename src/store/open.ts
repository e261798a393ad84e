import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { EMPTY_LOG, encodeAuditPosition } from '../audit/file-log.js';
import { storeError, usageError } from '../errors.js';
import { randomKey, seal, tryOpen } from '../keys/crypto.js';
import { deleteKeychainKey } from '../keys/keychain.js';
import {
  type KeyEncryptionKey,
  type KeyEnvironment,
  type KeySourceName,
  type KeyWrap,
  type PassphrasePrompt,
  keyForOpening,
  newKey,
} from '../keys/sources.js';
import { secureHome } from './permissions.js';
import { Census, RecordMac, recordKey, tampered } from './records.js';
import { AuthenticatedMeta, openDatabase, readMeta, runSnapshot, writeMeta } from './sqlite-db.js';
import { LEASE_CENSUS } from './sqlite-leases.js';
import { AUDIT_HEAD, SCHEMA_VERSION, createSchema, migrateToRecordMacs } from './sqlite-schema.js';
import { SECRET_CENSUS } from './sqlite-secrets.js';
import { SqliteStore } from './sqlite.js';
import type { Store, StoreOptions } from './store.js';

export const STORE_FILE = 'sy.db';

/** The key slot: how the random data key is wrapped. Non-secret; kept in the store's meta table. */
interface KeySlot {
  storeId: string;
  wrap: KeyWrap;
  wrappedKey: string;
}

/**
 * The key slot's associated data names the schema the store's records follow: from schema 2
 * on, rows carry MACs. A schema-2 store whose schema_version is set back to 1 still has a
 * schema-2 slot, so it is refused instead of having its rows MACed afresh by a migration.
 */
const dataKeyAad = (storeId: string, records: 1 | 2 = 2): string => `sy/data-key/v${records}/${storeId}`;

/**
 * How a store is opened: who acts (named in the audit log), where warnings go (SY_HOME's
 * permissions tightened, the audit log not written; the CLI prints them on stderr), and how
 * to ask for a passphrase.
 */
export interface OpenStoreOptions extends StoreOptions {
  ask?: PassphrasePrompt;
}

export const storePath = (home: string): string => join(home, STORE_FILE);

export interface InitResult {
  store: Store;
  storeId: string;
  keySource: string;
  home: string;
}

export async function initStore(
  home: string,
  env: KeyEnvironment,
  options: OpenStoreOptions & { source?: KeySourceName },
): Promise<InitResult> {
  mkdirSync(home, { recursive: true, mode: 0o700 });
  secureHome(home, options.warn);
  const file = storePath(home);
  if (existsSync(file)) {
    const db = await openDatabase(file, { create: false });
    const initialised = readMetaSafely(db, 'keyslot') !== undefined;
    db.close();
    if (initialised) throw usageError('store_exists', `A store already exists in ${home}.`, 'Use `sy key change` to change its key.');
  }
  const storeId = randomUUID();
  const kek = await newKey(storeId, env, options);
  const dataKey = randomKey();
  const slot: KeySlot = { storeId, wrap: kek.wrap, wrappedKey: seal(kek.key, dataKey, dataKeyAad(storeId)).toString('base64') };

  const db = await openDatabase(file, { create: true });
  chmodSync(file, 0o600);
  createSchema(db);
  // The slot, the empty censuses and the empty log's head in one transaction: no process
  // ever sees a store with a key but without the records that the schema says it has.
  const macs = new RecordMac(recordKey(dataKey), storeId);
  const records = {
    [SECRET_CENSUS]: AuthenticatedMeta.encode(macs, SECRET_CENSUS, new Census().encode()),
    [LEASE_CENSUS]: AuthenticatedMeta.encode(macs, LEASE_CENSUS, new Census().encode()),
    [AUDIT_HEAD]: AuthenticatedMeta.encode(macs, AUDIT_HEAD, encodeAuditPosition(EMPTY_LOG)),
  };
  if (!writeMeta(db, { keyslot: JSON.stringify(slot), ...records }, 'keyslot')) {
    db.close();
    if (kek.wrap.type === 'key' && kek.wrap.keychain) await deleteKeychainKey(storeId);
    throw usageError('store_exists', `A store already exists in ${home}.`, 'Another sy init got there first.');
  }
  return { store: new SqliteStore(home, db, dataKey, storeId, options), storeId, keySource: kek.source, home };
}

export async function openStore(home: string, env: KeyEnvironment, options: OpenStoreOptions): Promise<Store> {
  const { db, dataKey, slot } = await unlock(home, env, options.ask, options.warn);
  return new SqliteStore(home, db, dataKey, slot.storeId, options);
}

/**
 * Re-wraps the data key under a new key source. Records stay as they are: this is why the
 * store has a data key at all.
 */
export async function changeStoreKey(
  home: string,
  env: KeyEnvironment,
  newEnv: KeyEnvironment,
  options: { to: KeySourceName; ask?: PassphrasePrompt },
): Promise<{ from: string; to: string }> {
  const { db, dataKey, slot, kek } = await unlock(home, env, options.ask);
  try {
    const next = await newKey(slot.storeId, newEnv, {
      source: options.to,
      ask: options.ask,
      names: { flag: '--to', masterKey: 'SY_NEW_MASTER_KEY', masterKeyFile: 'SY_NEW_MASTER_KEY_FILE', passphrase: 'SY_NEW_PASSPHRASE' },
    });
    const nextSlot: KeySlot = { storeId: slot.storeId, wrap: next.wrap, wrappedKey: seal(next.key, dataKey, dataKeyAad(slot.storeId)).toString('base64') };
    writeMeta(db, { keyslot: JSON.stringify(nextSlot) });
    if (slot.wrap.type === 'key' && slot.wrap.keychain && !(next.wrap.type === 'key' && next.wrap.keychain)) {
      await deleteKeychainKey(slot.storeId);
    }
    return { from: kek.source, to: next.source };
  } finally {
    db.close();
  }
}

async function unlock(home: string, env: KeyEnvironment, ask?: PassphrasePrompt, warn?: (text: string) => void) {
  const file = storePath(home);
  secureHome(home, warn ?? (() => undefined));
  if (!existsSync(file)) {
    throw storeError('no_store', `There is no sy store in ${home}.`, 'Run `sy init` to create one, or set SY_HOME.');
  }
  const db = await openDatabase(file, { create: false });
  try {
    // One snapshot: a migration committing in between must not pair an old slot with a new schema.
    const { slotText, schema } = runSnapshot(db, () => ({ slotText: readMetaSafely(db, 'keyslot'), schema: Number(readMeta(db, 'schema_version')) }));
    const slot = parseSlot(slotText);
    if (schema > SCHEMA_VERSION) {
      throw storeError('store_too_new', `The store in ${home} was written by a newer version of sy.`, 'Upgrade sy to open it.');
    }
    const kek: KeyEncryptionKey = await keyForOpening(slot.wrap, slot.storeId, env, ask);
    const wrapped = Buffer.from(slot.wrappedKey, 'base64');
    let dataKey = tryOpen(kek.key, wrapped, dataKeyAad(slot.storeId, 2));
    if (dataKey) {
      if (schema !== SCHEMA_VERSION) throw tampered('its schema version');
    } else {
      dataKey = tryOpen(kek.key, wrapped, dataKeyAad(slot.storeId, 1));
      if (dataKey && schema !== 1) throw tampered('its key slot');
      if (dataKey) {
        const upgraded: KeySlot = { ...slot, wrappedKey: seal(kek.key, dataKey, dataKeyAad(slot.storeId, 2)).toString('base64') };
        migrateToRecordMacs(db, { dataKey, storeId: slot.storeId, home, slot: JSON.stringify(upgraded) });
      }
    }
    if (!dataKey) {
      throw storeError('wrong_key', `The key from ${kek.source} does not open the store in ${home}.`, 'Check the key; nothing was changed.');
    }
    return { db, dataKey, slot, kek };
  } catch (error) {
    db.close();
    throw error;
  }
}

function readMetaSafely(db: Parameters<typeof readMeta>[0], key: string): string | undefined {
  try {
    return readMeta(db, key);
  } catch (error) {
    // A file that has no meta table is not a sy store.
    if ((error as { code?: string }).code === 'SQLITE_ERROR') return undefined;
    throw error;
  }
}

function parseSlot(text: string | undefined): KeySlot {
  try {
    const slot = JSON.parse(text ?? '') as KeySlot;
    if (typeof slot.storeId === 'string' && typeof slot.wrappedKey === 'string' && (slot.wrap?.type === 'key' || slot.wrap?.type === 'passphrase')) {
      return slot;
    }
  } catch {
    // fall through
  }
  throw storeError('store_tampered', 'The store has no valid key slot: it is damaged, was tampered with, or was never initialised.',
    'Restore it from a backup, or run `sy init` in an empty SY_HOME.');
}
