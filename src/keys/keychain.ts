/**
 * The OS keychain through keytar (Secret Service on Linux, Keychain on macOS, Credential
 * Manager on Windows). keytar is an optional dependency loaded only when no environment
 * variable supplies the key, so a machine without libsecret installs sy and falls back.
 */
const SERVICE = 'sy';

interface Keytar {
  getPassword(service: string, account: string): Promise<string | null>;
  setPassword(service: string, account: string, password: string): Promise<void>;
  deletePassword(service: string, account: string): Promise<boolean>;
}

let loaded: Promise<Keytar | undefined> | undefined;

function loadKeytar(): Promise<Keytar | undefined> {
  loaded ??= import('keytar')
    .then((module) => ((module as { default?: Keytar }).default ?? (module as unknown as Keytar)))
    .catch(() => undefined);
  return loaded;
}

export const keychainAccount = (storeId: string): string => `store:${storeId}`;

/** The stored key, or undefined when there is no keychain, it is locked, or it has no entry. */
export async function readKeychainKey(storeId: string): Promise<string | undefined> {
  const keytar = await loadKeytar();
  if (!keytar) return undefined;
  try {
    return (await keytar.getPassword(SERVICE, keychainAccount(storeId))) ?? undefined;
  } catch {
    return undefined;
  }
}

/** Saves the key; returns false when no keychain can take it. */
export async function writeKeychainKey(storeId: string, key: string): Promise<boolean> {
  const keytar = await loadKeytar();
  if (!keytar) return false;
  try {
    await keytar.setPassword(SERVICE, keychainAccount(storeId), key);
    return (await keytar.getPassword(SERVICE, keychainAccount(storeId))) === key;
  } catch {
    return false;
  }
}

export async function deleteKeychainKey(storeId: string): Promise<void> {
  const keytar = await loadKeytar();
  try {
    await keytar?.deletePassword(SERVICE, keychainAccount(storeId));
  } catch {
    // Nothing to clean up when the keychain is unavailable.
  }
}
