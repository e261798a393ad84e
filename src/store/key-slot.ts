import { storeError } from '../errors.js';
import { seal, tryOpen } from '../keys/crypto.js';
import type { KeyWrap } from '../keys/sources.js';

/**
 * The key slot: how the store's random data key is wrapped by the key-encryption key (a
 * master key, a passphrase's key, the keychain's). Non-secret; kept in the store's meta
 * table, the same in every kind of store, so a store copied elsewhere opens with the same key.
 */
export interface KeySlot {
  storeId: string;
  wrap: KeyWrap;
  wrappedKey: string;
}

/**
 * The key slot's associated data names the schema the store's records follow: from schema 2
 * on, rows carry MACs. A schema-2 store whose schema_version is set back to 1 still has a
 * schema-2 slot, so it is refused instead of having its rows MACed afresh by a migration.
 * (A PostgreSQL store's records have carried MACs from its first schema: v2 at least.)
 * From v3 on, the censuses and the audit head carry generations (records.ts): a store whose
 * schema is set back to before them is refused, not stamped afresh over an older census.
 */
export type RecordsVersion = 1 | 2 | 3;
export const RECORDS_VERSION: RecordsVersion = 3;

export const dataKeyAad = (storeId: string, records: RecordsVersion = RECORDS_VERSION): string => `sy/data-key/v${records}/${storeId}`;

export function wrapDataKey(kek: Buffer, dataKey: Buffer, storeId: string, wrap: KeyWrap, records: RecordsVersion = RECORDS_VERSION): KeySlot {
  return { storeId, wrap, wrappedKey: seal(kek, dataKey, dataKeyAad(storeId, records)).toString('base64') };
}

/** The data key, or undefined when `kek` does not open the slot. */
export function openSlot(kek: Buffer, slot: KeySlot, records: RecordsVersion = RECORDS_VERSION): Buffer | undefined {
  return tryOpen(kek, Buffer.from(slot.wrappedKey, 'base64'), dataKeyAad(slot.storeId, records));
}

/** `hint` says what to do with a store whose slot is not one (restore it, or start afresh). */
export function parseSlot(text: string | undefined, hint = 'Restore it from a backup, or run `sy init` in an empty SY_HOME.'): KeySlot {
  try {
    const slot = JSON.parse(text ?? '') as KeySlot;
    if (typeof slot.storeId === 'string' && typeof slot.wrappedKey === 'string' && (slot.wrap?.type === 'key' || slot.wrap?.type === 'passphrase')) {
      return slot;
    }
  } catch {
    // fall through
  }
  throw storeError('store_tampered', 'The store has no valid key slot: it is damaged, was tampered with, or was never initialised.', hint);
}
