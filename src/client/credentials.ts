import { readFileSync } from 'node:fs';
import { serverOrigin } from '../clients/token.js';
import { usageError } from '../errors.js';
import { CLIENT_NAME } from '../model/client.js';

/** What a client of the lease API holds: the server, its own name and key, and the CA to trust. */
export interface ClientCredentials {
  /** The server's origin, as tokens name it in `aud`. */
  origin: string;
  clientId: string;
  privateKeyPem: string;
  /** PEM of the CA the server's certificate must chain to (SY_CA_CERT); none: the system's. */
  ca?: Buffer;
}

/** Read from SY_SERVER, SY_CLIENT_ID, SY_PRIVATE_KEY or SY_PRIVATE_KEY_FILE, SY_CA_CERT. */
export function clientCredentials(env: NodeJS.ProcessEnv): ClientCredentials {
  const origin = serverOrigin(env.SY_SERVER ?? '');
  const clientId = env.SY_CLIENT_ID;
  if (!clientId) throw usageError('no_client_id', 'SY_SERVER is set but SY_CLIENT_ID is not: set it to the client name `sy client create` registered.');
  if (!CLIENT_NAME.test(clientId)) throw usageError('bad_client_id', 'SY_CLIENT_ID must be 1-64 of letters, digits and ._@-.');
  let privateKeyPem = env.SY_PRIVATE_KEY;
  if (!privateKeyPem && env.SY_PRIVATE_KEY_FILE) privateKeyPem = readFileOrSay(env.SY_PRIVATE_KEY_FILE, 'SY_PRIVATE_KEY_FILE').toString('utf8');
  if (!privateKeyPem) throw usageError('no_private_key', 'SY_SERVER is set but neither SY_PRIVATE_KEY nor SY_PRIVATE_KEY_FILE is: give the client\'s private key (PEM).');
  const ca = env.SY_CA_CERT ? readFileOrSay(env.SY_CA_CERT, 'SY_CA_CERT') : undefined;
  return { origin, clientId, privateKeyPem, ca };
}

function readFileOrSay(file: string, variable: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw usageError('unreadable_file', `${variable} names ${file}, which cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'}).`);
  }
}
