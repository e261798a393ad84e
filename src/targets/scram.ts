/**
 * PostgreSQL's SCRAM-SHA-256 password verifier (RFC 5802 / RFC 7677), computed on the client
 * so that `CREATE ROLE ... PASSWORD '<verifier>'` never sends the plaintext: the server stores
 * the verifier as is, and neither its statement log nor pg_stat_statements ever sees a password.
 */
import { createHash, createHmac, pbkdf2, pbkdf2Sync, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

export const SCRAM_ITERATIONS = 4096;
const SALT_BYTES = 16;

/**
 * PostgreSQL runs SASLprep on the password and, if that fails, uses the raw bytes. For ASCII
 * (everything newPassword produces) SASLprep is the identity; for other text NFKC is the part
 * of SASLprep that matters in practice.
 */
function normalizePassword(password: string): string {
  return /^[\x00-\x7f]*$/.test(password) ? password : password.normalize('NFKC');
}

export interface ScramKeys {
  saltedPassword: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

export function scramKeys(password: string, salt: Buffer, iterations: number = SCRAM_ITERATIONS): ScramKeys {
  return keysFrom(pbkdf2Sync(normalizePassword(password), salt, iterations, 32, 'sha256'));
}

function keysFrom(saltedPassword: Buffer): ScramKeys {
  const clientKey = createHmac('sha256', saltedPassword).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', saltedPassword).update('Server Key').digest();
  return { saltedPassword, storedKey, serverKey };
}

/** `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, the format of pg_authid.rolpassword. */
export function scramSha256Verifier(
  password: string,
  salt: Buffer = randomBytes(SALT_BYTES),
  iterations: number = SCRAM_ITERATIONS,
): string {
  return verifierText(salt, iterations, scramKeys(password, salt, iterations));
}

const pbkdf2Async = promisify(pbkdf2);

/**
 * The same verifier, with the 4,096 PBKDF2 rounds (about 2 ms) on libuv's thread pool: a
 * daemon serving many creates at once keeps its event loop for requests and round trips.
 */
export async function scramSha256VerifierAsync(password: string, salt: Buffer = randomBytes(SALT_BYTES), iterations: number = SCRAM_ITERATIONS): Promise<string> {
  return verifierText(salt, iterations, keysFrom(await pbkdf2Async(normalizePassword(password), salt, iterations, 32, 'sha256')));
}

function verifierText(salt: Buffer, iterations: number, { storedKey, serverKey }: ScramKeys): string {
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}
