import { createCipheriv, createDecipheriv, randomBytes, scrypt as scryptCb } from 'node:crypto';
import { storeError } from '../errors.js';

/** AES-256-GCM envelope: version byte, 12-byte random nonce, ciphertext, 16-byte tag. */
const ENVELOPE_VERSION = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
export const KEY_BYTES = 32;

export function seal(key: Buffer, plaintext: Buffer, associatedData: string): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(Buffer.from(associatedData, 'utf8'));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([Buffer.from([ENVELOPE_VERSION]), nonce, body, cipher.getAuthTag()]);
}

/** Returns undefined when the envelope does not open under this key and associated data. */
export function tryOpen(key: Buffer, envelope: Buffer, associatedData: string): Buffer | undefined {
  if (envelope.length < 1 + NONCE_BYTES + TAG_BYTES || envelope[0] !== ENVELOPE_VERSION) return undefined;
  const nonce = envelope.subarray(1, 1 + NONCE_BYTES);
  const tag = envelope.subarray(envelope.length - TAG_BYTES);
  const body = envelope.subarray(1 + NONCE_BYTES, envelope.length - TAG_BYTES);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, nonce);
    decipher.setAAD(Buffer.from(associatedData, 'utf8'));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(body), decipher.final()]);
  } catch {
    return undefined;
  }
}

export function open(key: Buffer, envelope: Buffer, associatedData: string): Buffer {
  const plaintext = tryOpen(key, envelope, associatedData);
  if (!plaintext) {
    throw storeError('store_tampered', 'The store is damaged or has been tampered with: a record failed its integrity check.',
      'Restore the store from a backup; nothing was changed.');
  }
  return plaintext;
}

/**
 * scrypt parameters for passphrases. N=2^17, r=8, p=1 is OWASP's recommendation for scrypt:
 * 128 MiB and about a third of a second per derivation on a 2-core machine, paid once per
 * command. It makes an offline guess cost the same, which is the point. The parameters are
 * stored in the store, so they can be raised later without breaking existing stores.
 */
export interface ScryptParams {
  salt: string; // base64
  N: number;
  r: number;
  p: number;
}

export const DEFAULT_SCRYPT = { N: 2 ** 17, r: 8, p: 1 } as const;

export function newScryptParams(): ScryptParams {
  return { salt: randomBytes(16).toString('base64'), ...DEFAULT_SCRYPT };
}

export function deriveKeyFromPassphrase(passphrase: string, params: ScryptParams): Promise<Buffer> {
  const salt = Buffer.from(params.salt, 'base64');
  const maxmem = 256 * params.N * params.r + 32 * 1024 * 1024;
  return new Promise((resolve, reject) => {
    scryptCb(passphrase.normalize('NFKC'), salt, KEY_BYTES, { N: params.N, r: params.r, p: params.p, maxmem }, (err, key) =>
      err ? reject(err) : resolve(key),
    );
  });
}

export function randomKey(): Buffer {
  return randomBytes(KEY_BYTES);
}
