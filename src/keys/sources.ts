import { readFileSync } from 'node:fs';
import { storeError, usageError } from '../errors.js';
import { KEY_BYTES, type ScryptParams, deriveKeyFromPassphrase, newScryptParams, randomKey } from './crypto.js';
import { readKeychainKey, writeKeychainKey } from './keychain.js';

/**
 * How the store's random data key is wrapped: by a raw 32-byte key (from SY_MASTER_KEY,
 * SY_MASTER_KEY_FILE or the OS keychain) or by a key derived from a passphrase. Changing the
 * key only re-wraps the data key; no record is re-encrypted.
 */
export type KeyWrap = { type: 'key'; keychain: boolean } | { type: 'passphrase'; scrypt: ScryptParams };

export type KeySourceName = 'master-key' | 'master-key-file' | 'passphrase' | 'keychain';
export const KEY_SOURCES: KeySourceName[] = ['master-key', 'master-key-file', 'passphrase', 'keychain'];

export interface KeyEnvironment {
  SY_MASTER_KEY?: string;
  SY_MASTER_KEY_FILE?: string;
  SY_PASSPHRASE?: string;
}

/** Asks for a passphrase on the terminal; absent when nothing may prompt. */
export type PassphrasePrompt = (purpose: 'unlock' | 'new') => Promise<string>;

export interface KeyEncryptionKey {
  key: Buffer;
  wrap: KeyWrap;
  /** Where the key came from, for messages: never the key itself. */
  source: string;
}

const NO_KEY_HINT = 'Set SY_MASTER_KEY (`sy key generate` prints one), SY_MASTER_KEY_FILE or SY_PASSPHRASE.';

export function decodeMasterKey(text: string, origin: string): Buffer {
  const trimmed = text.trim();
  const key = /^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed) ? Buffer.from(trimmed.replace(/-/g, '+').replace(/_/g, '/'), 'base64') : undefined;
  if (!key || key.length !== KEY_BYTES) {
    throw storeError('invalid_master_key', `${origin} is not a master key: it must be the base64 of 32 random bytes.`, 'Generate one with `sy key generate`.');
  }
  return key;
}

function readKeyFile(file: string): Buffer {
  let raw: Buffer;
  try {
    raw = readFileSync(file);
  } catch {
    throw storeError('no_key', `SY_MASTER_KEY_FILE names a file that cannot be read (${file}).`);
  }
  return raw.length === KEY_BYTES ? raw : decodeMasterKey(raw.toString('utf8'), 'The file named by SY_MASTER_KEY_FILE');
}

function wrongKind(variable: string, wrap: KeyWrap): never {
  const needs = wrap.type === 'passphrase' ? 'a passphrase (SY_PASSPHRASE)' : 'a master key (SY_MASTER_KEY, SY_MASTER_KEY_FILE or the OS keychain)';
  throw storeError('wrong_key', `${variable} cannot open this store: it is locked with ${needs}.`, 'Unset the variable or use `sy key change` to switch.');
}

/** Finds the key that opens an existing store, trying the sources in their fixed order. */
export async function keyForOpening(wrap: KeyWrap, storeId: string, env: KeyEnvironment, ask?: PassphrasePrompt): Promise<KeyEncryptionKey> {
  if (env.SY_MASTER_KEY) {
    if (wrap.type !== 'key') wrongKind('SY_MASTER_KEY', wrap);
    return { key: decodeMasterKey(env.SY_MASTER_KEY, 'SY_MASTER_KEY'), wrap, source: 'SY_MASTER_KEY' };
  }
  if (env.SY_MASTER_KEY_FILE) {
    if (wrap.type !== 'key') wrongKind('SY_MASTER_KEY_FILE', wrap);
    return { key: readKeyFile(env.SY_MASTER_KEY_FILE), wrap, source: 'SY_MASTER_KEY_FILE' };
  }
  if (env.SY_PASSPHRASE) {
    if (wrap.type !== 'passphrase') wrongKind('SY_PASSPHRASE', wrap);
    return { key: await deriveKeyFromPassphrase(env.SY_PASSPHRASE, wrap.scrypt), wrap, source: 'SY_PASSPHRASE' };
  }
  if (wrap.type === 'key') {
    const stored = wrap.keychain ? await readKeychainKey(storeId) : undefined;
    if (stored) return { key: decodeMasterKey(stored, 'The key in the OS keychain'), wrap, source: 'the OS keychain' };
    throw storeError(
      'no_key',
      wrap.keychain ? 'The store key is not available: the OS keychain is locked, unreachable or has no entry for this store.' : 'No master key was given to open the store.',
      'Set SY_MASTER_KEY or SY_MASTER_KEY_FILE.',
    );
  }
  if (ask) {
    const passphrase = await ask('unlock');
    return { key: await deriveKeyFromPassphrase(passphrase, wrap.scrypt), wrap, source: 'the passphrase' };
  }
  throw storeError('no_key', 'The store is locked with a passphrase and there is no terminal to ask for it.', 'Set SY_PASSPHRASE.');
}

/**
 * Picks the key for a new store or a key change. Without an explicit source the order is
 * SY_MASTER_KEY, SY_MASTER_KEY_FILE, SY_PASSPHRASE, the OS keychain, then a passphrase prompt.
 * `saveToKeychain` runs once the store id is known.
 */
export interface KeyNames {
  /** The flag that picks the source (`--key-source`, `--to`). */
  flag: string;
  masterKey: string;
  masterKeyFile: string;
  passphrase: string;
}

const INIT_NAMES: KeyNames = { flag: '--key-source', masterKey: 'SY_MASTER_KEY', masterKeyFile: 'SY_MASTER_KEY_FILE', passphrase: 'SY_PASSPHRASE' };

export async function newKey(
  storeId: string,
  env: KeyEnvironment,
  options: { source?: KeySourceName; ask?: PassphrasePrompt; names?: KeyNames },
): Promise<KeyEncryptionKey> {
  const names = options.names ?? INIT_NAMES;
  const wanted = options.source;
  const allows = (source: KeySourceName): boolean => wanted === undefined || wanted === source;

  if (allows('master-key') && env.SY_MASTER_KEY) {
    return { key: decodeMasterKey(env.SY_MASTER_KEY, names.masterKey), wrap: { type: 'key', keychain: false }, source: names.masterKey };
  }
  if (allows('master-key-file') && env.SY_MASTER_KEY_FILE) {
    return { key: readKeyFile(env.SY_MASTER_KEY_FILE), wrap: { type: 'key', keychain: false }, source: names.masterKeyFile };
  }
  if (allows('passphrase') && env.SY_PASSPHRASE) {
    const scrypt = newScryptParams();
    return { key: await deriveKeyFromPassphrase(env.SY_PASSPHRASE, scrypt), wrap: { type: 'passphrase', scrypt }, source: names.passphrase };
  }
  if (allows('keychain')) {
    const key = randomKey();
    if (await writeKeychainKey(storeId, key.toString('base64'))) {
      return { key, wrap: { type: 'key', keychain: true }, source: 'the OS keychain' };
    }
    if (wanted === 'keychain') {
      throw storeError('no_keychain', 'The OS keychain is not available (no Secret Service, or it is locked).', NO_KEY_HINT);
    }
  }
  if (allows('passphrase') && options.ask) {
    const passphrase = await options.ask('new');
    const scrypt = newScryptParams();
    return { key: await deriveKeyFromPassphrase(passphrase, scrypt), wrap: { type: 'passphrase', scrypt }, source: 'the passphrase' };
  }
  if (wanted === 'master-key' || wanted === 'master-key-file') {
    throw usageError('no_key', `${names.flag} ${wanted} needs ${wanted === 'master-key' ? names.masterKey : names.masterKeyFile} to be set.`);
  }
  if (wanted === 'passphrase') {
    throw usageError('no_key', `${names.flag} passphrase needs ${names.passphrase}, or a terminal to ask for one.`);
  }
  throw storeError('no_key', 'No key source is available: no key variable is set, there is no OS keychain and no terminal to ask for a passphrase.', NO_KEY_HINT);
}
