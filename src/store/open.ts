import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { AUDIT_FILE, EMPTY_LOG, encodeAuditPosition } from '../audit/file-log.js';
import { storeError, usageError } from '../errors.js';
import { randomKey } from '../keys/crypto.js';
import { deleteKeychainKey } from '../keys/keychain.js';
import {
  type KeyEncryptionKey,
  type KeyEnvironment,
  type KeySourceName,
  type PassphrasePrompt,
  keyForOpening,
  newKey,
} from '../keys/sources.js';
import { definePgNavigator } from '../util/pg-navigator.js';
import { type KeySlot, openSlot, parseSlot, wrapDataKey } from './key-slot.js';
import { secureHome } from './permissions.js';
import { Census, RecordMac, recordKey, tampered } from './records.js';
import { AuthenticatedMeta, openDatabase, readMeta, runSnapshot, writeMeta } from './sqlite-db.js';
import { LEASE_CENSUS } from './sqlite-leases.js';
import { AUDIT_HEAD, RECORDS_SCHEMA, SCHEMA_VERSION, createSchema, migrateToClients, migrateToPools, migrateToRecordMacs } from './sqlite-schema.js';
import { CLIENT_CENSUS } from './rows.js';
import { SECRET_CENSUS } from './sqlite-secrets.js';
import { SqliteStore } from './sqlite.js';
import { type StoreUrl, isStoreUrl, parseStoreUrl } from './postgres/url.js';
import type { Store, StoreOptions } from './store.js';

export const STORE_FILE = 'sy.db';

/**
 * How a store is opened: who acts (named in the audit log), where warnings go (SY_HOME's
 * permissions tightened, the audit log not written; the CLI prints them on stderr), and how
 * to ask for a passphrase.
 */
export interface OpenStoreOptions extends StoreOptions {
  ask?: PassphrasePrompt;
}

export const storePath = (home: string): string => join(home, STORE_FILE);

/**
 * Where the store lives: SY_STORE's PostgreSQL database, or (SY_STORE unset or empty)
 * undefined, for the SQLite store in SY_HOME. Anything else in SY_STORE is a usage error.
 */
export function sharedStoreUrl(env: NodeJS.ProcessEnv): StoreUrl | undefined {
  const value = env.SY_STORE;
  if (value === undefined || value === '') return undefined;
  if (!isStoreUrl(value)) {
    throw usageError('invalid_store_url', 'SY_STORE must be a postgresql:// URL.', 'Unset it to use the SQLite store in SY_HOME.');
  }
  return parseStoreUrl(value);
}

/** The PostgreSQL store's modules, loaded only when SY_STORE names one: pg stays unloaded otherwise. */
export async function postgresModules() {
  definePgNavigator();
  const [store, init] = await Promise.all([import('./postgres/store.js'), import('./postgres/init.js')]);
  return { ...store, ...init };
}

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
  // A log without a store is what a `sy store copy` cut short leaves (or a store whose sy.db was
  // removed): a new store there would refuse that log at its first append.
  if (holdsLines(join(home, AUDIT_FILE))) {
    throw usageError('store_exists', `${home} holds an audit log but no store: a copy into it was cut short, or its sy.db was removed.`,
      'Move the directory away (or restore sy.db), then run `sy init` again.');
  }
  const storeId = randomUUID();
  const kek = await newKey(storeId, env, options);
  const dataKey = randomKey();
  const slot = wrapDataKey(kek.key, dataKey, storeId, kek.wrap);

  const db = await openDatabase(file, { create: true });
  chmodSync(file, 0o600);
  createSchema(db);
  // The slot, the empty censuses and the empty log's head in one transaction: no process
  // ever sees a store with a key but without the records that the schema says it has.
  const macs = new RecordMac(recordKey(dataKey), storeId);
  const records = {
    [SECRET_CENSUS]: AuthenticatedMeta.encode(macs, SECRET_CENSUS, new Census().encode()),
    [LEASE_CENSUS]: AuthenticatedMeta.encode(macs, LEASE_CENSUS, new Census().encode()),
    [CLIENT_CENSUS]: AuthenticatedMeta.encode(macs, CLIENT_CENSUS, new Census().encode()),
    [AUDIT_HEAD]: AuthenticatedMeta.encode(macs, AUDIT_HEAD, encodeAuditPosition(EMPTY_LOG)),
  };
  if (!writeMeta(db, { keyslot: JSON.stringify(slot), ...records }, 'keyslot')) {
    db.close();
    if (kek.wrap.type === 'key' && kek.wrap.keychain) await deleteKeychainKey(storeId);
    throw usageError('store_exists', `A store already exists in ${home}.`, 'Another sy init got there first.');
  }
  return { store: new SqliteStore(home, db, dataKey, storeId, options), storeId, keySource: kek.source, home };
}

/**
 * Opens the store SY_STORE names in `env`, or else the one in SY_HOME (`home`, a function so
 * that a PostgreSQL store never looks at SY_HOME).
 */
export async function openStore(home: string | (() => string), env: NodeJS.ProcessEnv & KeyEnvironment, options: OpenStoreOptions): Promise<Store> {
  const url = sharedStoreUrl(env);
  if (url) return (await postgresModules()).openPostgresStore(url, env, options);
  const dir = typeof home === 'string' ? home : home();
  const { db, dataKey, slot } = await unlockSqlite(dir, env, options.ask, options.warn);
  return new SqliteStore(dir, db, dataKey, slot.storeId, options);
}

/**
 * Re-wraps the data key under a new key source. Records stay as they are: this is why the
 * store has a data key at all.
 */
export async function changeStoreKey(
  home: string | (() => string),
  env: NodeJS.ProcessEnv & KeyEnvironment,
  newEnv: KeyEnvironment,
  options: { to: KeySourceName; ask?: PassphrasePrompt },
): Promise<{ from: string; to: string }> {
  const url = sharedStoreUrl(env);
  if (url) return (await postgresModules()).changePostgresStoreKey(url, env, newEnv, options);
  const { db, dataKey, slot, kek } = await unlockSqlite(typeof home === 'string' ? home : home(), env, options.ask);
  try {
    const next = await newKey(slot.storeId, newEnv, {
      source: options.to,
      ask: options.ask,
      names: { flag: '--to', masterKey: 'SY_NEW_MASTER_KEY', masterKeyFile: 'SY_NEW_MASTER_KEY_FILE', passphrase: 'SY_NEW_PASSPHRASE' },
    });
    const nextSlot = wrapDataKey(next.key, dataKey, slot.storeId, next.wrap);
    writeMeta(db, { keyslot: JSON.stringify(nextSlot) });
    if (slot.wrap.type === 'key' && slot.wrap.keychain && !(next.wrap.type === 'key' && next.wrap.keychain)) {
      await deleteKeychainKey(slot.storeId);
    }
    return { from: kek.source, to: next.source };
  } finally {
    db.close();
  }
}

/** The SQLite store in `home`, opened with the key: its database, data key and slot (`sy store copy` reads them too). */
export async function unlockSqlite(home: string, env: KeyEnvironment, ask?: PassphrasePrompt, warn?: (text: string) => void) {
  const file = storePath(home);
  secureHome(home, warn ?? (() => undefined));
  if (!existsSync(file)) {
    throw storeError('no_store', `There is no sy store in ${home}.`, 'Run `sy init` to create one, or set SY_HOME.');
  }
  const db = await openDatabase(file, { create: false });
  try {
    // One snapshot: a migration committing in between must not pair an old slot with a new schema.
    // A file without the meta table (a copy killed as it began) has no slot: parseSlot refuses it (exit 4).
    const { slotText, schema } = runSnapshot(db, () => ({ slotText: readMetaSafely(db, 'keyslot'), schema: Number(readMetaSafely(db, 'schema_version')) }));
    const slot = parseSlot(slotText);
    if (schema > SCHEMA_VERSION) {
      throw storeError('store_too_new', `The store in ${home} was written by a newer version of sy.`, 'Upgrade sy to open it.');
    }
    const kek: KeyEncryptionKey = await keyForOpening(slot.wrap, slot.storeId, env, ask);
    let dataKey = openSlot(kek.key, slot, 2);
    if (dataKey) {
      if (schema < RECORDS_SCHEMA || schema > SCHEMA_VERSION) throw tampered('its schema version');
      if (schema < 3) migrateToPools(db);
      if (schema < 4) migrateToClients(db, new RecordMac(recordKey(dataKey), slot.storeId));
    } else {
      dataKey = openSlot(kek.key, slot, 1);
      if (dataKey && schema !== 1) throw tampered('its key slot');
      if (dataKey) {
        const upgraded: KeySlot = wrapDataKey(kek.key, dataKey, slot.storeId, slot.wrap);
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

function holdsLines(file: string): boolean {
  try {
    return lstatSync(file).size > 0;
  } catch {
    return false;
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
