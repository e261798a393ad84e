/**
 * A client's key: Ed25519, as the lease API's tokens (EdDSA JWTs) are signed. sy makes the
 * pair for `client create` and keeps only the public half (SPKI PEM); the private half
 * (PKCS#8 PEM) is handed to the admin once and never stored. People and listings see a
 * fingerprint, never a key.
 */
import { type KeyObject, createHash, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { usageError } from '../errors.js';

export interface ClientKeyPair {
  /** SPKI PEM: what the store keeps. */
  publicKey: string;
  /** PKCS#8 PEM: shown once. */
  privateKey: string;
}

export function newClientKeyPair(): ClientKeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  return {
    publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

/**
 * A public key given by the admin (`--public-key`), as the store keeps it: Ed25519 only,
 * re-encoded as SPKI PEM. A private key is refused rather than reduced to its public half:
 * it should not have been typed, piped or kept in a file sy was pointed at. Messages never
 * quote the input.
 */
export function parseClientPublicKey(text: string, flag = '--public-key'): string {
  if (/PRIVATE KEY/.test(text)) {
    throw usageError('private_key_given', `${flag} was given a private key; give its public half (openssl pkey -in key.pem -pubout).`);
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: text.trim(), format: 'pem' });
  } catch {
    throw usageError('invalid_public_key', `${flag} must be an Ed25519 public key in PEM (-----BEGIN PUBLIC KEY-----).`);
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw usageError('invalid_public_key', `${flag} must be an Ed25519 public key; this one is ${key.asymmetricKeyType ?? 'of another kind'}.`);
  }
  return key.export({ type: 'spki', format: 'pem' }).toString();
}

/**
 * `SHA256:` and the unpadded base64 of the SHA-256 of the key's DER (SPKI), as ssh prints
 * fingerprints: `openssl pkey -pubin -in key.pem -outform DER | openssl dgst -sha256 -binary | base64` gives the same.
 */
export function keyFingerprint(publicKeyPem: string): string {
  const der = createPublicKey(publicKeyPem).export({ type: 'spki', format: 'der' });
  return `SHA256:${createHash('sha256').update(der).digest('base64').replace(/=+$/, '')}`;
}
