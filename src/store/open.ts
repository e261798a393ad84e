import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
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
import { SCHEMA_VERSION, SqliteStore, createSchema, openDatabase, readMeta, writeMeta } from './sqlite.js';
import type { Store } from './store.js';

export const STORE_FILE = 'sy.db';

/** The key slot: how the random data key is wrapped. Non-secret; kept in the store's meta table. */
interface KeySlot {
  storeId: string;
  wrap: KeyWrap;
  wrappedKey: string;
}

const dataKeyAad = (storeId: string): string => `sy/data-key/v1/${storeId}`;

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
  options: { source?: KeySourceName; ask?: PassphrasePrompt },
): Promise<InitResult> {
  prepareHome(home);
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
  if (!writeMeta(db, { keyslot: JSON.stringify(slot) }, 'keyslot')) {
    db.close();
    if (kek.wrap.type === 'key' && kek.wrap.keychain) await deleteKeychainKey(storeId);
    throw usageError('store_exists', `A store already exists in ${home}.`, 'Another sy init got there first.');
  }
  return { store: new SqliteStore(home, db, dataKey), storeId, keySource: kek.source, home };
}

export async function openStore(home: string, env: KeyEnvironment, ask?: PassphrasePrompt): Promise<Store> {
  const { db, dataKey } = await unlock(home, env, ask);
  return new SqliteStore(home, db, dataKey);
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

async function unlock(home: string, env: KeyEnvironment, ask?: PassphrasePrompt) {
  const file = storePath(home);
  if (!existsSync(file)) {
    throw storeError('no_store', `There is no sy store in ${home}.`, 'Run `sy init` to create one, or set SY_HOME.');
  }
  tightenStoreFile(file);
  const db = await openDatabase(file, { create: false });
  try {
    const slot = parseSlot(readMetaSafely(db, 'keyslot'));
    const schema = Number(readMeta(db, 'schema_version'));
    if (schema > SCHEMA_VERSION) {
      throw storeError('store_too_new', `The store in ${home} was written by a newer version of sy.`, 'Upgrade sy to open it.');
    }
    const kek: KeyEncryptionKey = await keyForOpening(slot.wrap, slot.storeId, env, ask);
    const dataKey = tryOpen(kek.key, Buffer.from(slot.wrappedKey, 'base64'), dataKeyAad(slot.storeId));
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

/**
 * A store copied from a Secret mount arrives 0444 or 0644: make a file we own 0600, so it
 * is writable for the lease it records and readable by nobody else.
 */
function tightenStoreFile(file: string): void {
  try {
    const stats = statSync(file);
    if ((stats.mode & 0o777) !== 0o600 && (process.getuid === undefined || stats.uid === process.getuid())) chmodSync(file, 0o600);
  } catch {
    // Opening reports what is wrong with the file.
  }
}

/** SY_HOME is created 0700; an existing one is tightened to 0700 if it is ours. */
function prepareHome(home: string): void {
  mkdirSync(home, { recursive: true, mode: 0o700 });
  const stats = statSync(home);
  if ((stats.mode & 0o077) !== 0 && (process.getuid === undefined || stats.uid === process.getuid())) {
    chmodSync(home, 0o700);
  }
}
