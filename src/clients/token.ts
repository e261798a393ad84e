import { type KeyObject, createPrivateKey, randomUUID, sign } from 'node:crypto';
import { unauthorized, usageError } from '../errors.js';

/**
 * The lease API's tokens (PRODUCT.md, "Clients and the lease API"): EdDSA JWTs that a client
 * signs with its own Ed25519 key. `iss` and `sub` are the client's name, `aud` the server's
 * origin as in SY_SERVER, `exp` at most 15 minutes after `iat`, and a `jti`.
 *
 * A token may be used more than once within its lifetime: the seed's three curl lines share
 * one `$SM_TOKEN`. What limits a stolen token is its lifetime (15 minutes at most, 5 by
 * default), TLS, and the client's patterns and caps; its `jti` names it in the daemon's log.
 * jose is imported here only, lazily, to verify: only `sy daemon --listen` loads it.
 */
export const MAX_TOKEN_SECONDS = 15 * 60;
/** Clocks of client and daemon may differ this much. */
export const CLOCK_TOLERANCE_SECONDS = 30;

/** `https://host:port` as a URL origin: how SY_SERVER and the daemon compare audiences. */
export function serverOrigin(server: string, variable = 'SY_SERVER'): string {
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw usageError('invalid_server', `${variable} must be a URL such as https://sy.example.com:8443.`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw usageError('invalid_server', `${variable} must start with https:// (or http:// on loopback).`);
  return url.origin;
}

export interface TokenRequest {
  clientId: string;
  /** PKCS#8 PEM of the client's Ed25519 key. */
  privateKeyPem: string;
  audience: string;
  ttlSeconds: number;
  now?: number;
}

/**
 * Signs a token with node:crypto: an EdDSA JWT is a base64url header and payload and an
 * Ed25519 signature over them, and importing jose (about 40 ms) would be most of what a
 * client-mode command costs beyond the request itself. Verification, with every check a
 * token must pass, is jose's (verifyToken below); the unit tests verify what this signs.
 */
export async function signToken(request: TokenRequest): Promise<string> {
  if (request.ttlSeconds < 1 || request.ttlSeconds > MAX_TOKEN_SECONDS) {
    throw usageError('token_ttl', `A token lives between 1 second and ${MAX_TOKEN_SECONDS / 60} minutes; ${request.ttlSeconds} seconds was asked for.`);
  }
  let key: KeyObject | undefined;
  try {
    key = createPrivateKey({ key: request.privateKeyPem, format: 'pem' });
  } catch {
    key = undefined;
  }
  if (key?.asymmetricKeyType !== 'ed25519') {
    throw unauthorized('bad_private_key', 'The client private key is not an Ed25519 private key in PKCS#8 PEM.', 'Use the private_key that `sy client create` printed.');
  }
  const iat = Math.floor((request.now ?? Date.now()) / 1000);
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const claims = { iss: request.clientId, sub: request.clientId, aud: request.audience, iat, exp: iat + request.ttlSeconds, jti: randomUUID() };
  const input = `${part({ alg: 'EdDSA', typ: 'JWT' })}.${part(claims)}`;
  return `${input}.${sign(null, Buffer.from(input), key).toString('base64url')}`;
}

export interface VerifiedToken {
  client: string;
  jti: string;
  expiresAt: number;
}

/**
 * Checks a token against the client's registered public key (looked up by its `iss` on every
 * call, so a deleted or re-keyed client is refused from the next request on). Every refusal
 * is the same kind (401), with a reason for the daemon's log; none echoes the token.
 */
export async function verifyToken(
  token: string,
  audience: string,
  publicKeyOf: (client: string) => Promise<string | undefined>,
  now = Date.now(),
): Promise<VerifiedToken> {
  const { decodeJwt, decodeProtectedHeader, importSPKI, jwtVerify } = await loadJose();
  const refuse = (reason: string) => unauthorized('bad_token', `The token was refused: ${reason}.`);
  let issuer: unknown;
  try {
    const header = decodeProtectedHeader(token);
    if (header.alg !== 'EdDSA') throw refuse(`it is not signed with EdDSA (alg ${String(header.alg)})`);
    issuer = decodeJwt(token).iss;
  } catch (error) {
    if (error instanceof Error && error.name === 'SyError') throw error;
    throw refuse('it is not a JWT');
  }
  if (typeof issuer !== 'string' || issuer === '') throw refuse('it names no client (iss)');
  const pem = await publicKeyOf(issuer);
  if (pem === undefined) throw refuse(`no client is named ${JSON.stringify(issuer.slice(0, 64))}`);
  let payload;
  try {
    const key = await publicKey(pem, importSPKI);
    ({ payload } = await jwtVerify(token, key, {
      algorithms: ['EdDSA'],
      audience,
      issuer,
      subject: issuer,
      requiredClaims: ['iat', 'exp', 'jti', 'sub', 'aud'],
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
      currentDate: new Date(now),
    }));
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'ERR_JWT_EXPIRED') throw refuse('it has expired');
    if (code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED') throw refuse("its signature is not the client's key");
    if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED') throw refuse(`its ${(error as { claim?: string }).claim ?? 'claims'} claim does not match`);
    throw refuse('it could not be verified');
  }
  const { iat, exp, jti } = payload as { iat: number; exp: number; jti: unknown };
  if (exp - iat > MAX_TOKEN_SECONDS) throw refuse(`it lives longer than ${MAX_TOKEN_SECONDS / 60} minutes`);
  if (iat * 1000 > now + CLOCK_TOLERANCE_SECONDS * 1000) throw refuse('it was issued in the future');
  if (typeof jti !== 'string' || jti === '') throw refuse('it has no jti');
  return { client: issuer, jti, expiresAt: exp * 1000 };
}

type Jose = typeof import('jose');

/**
 * Imported public keys by their PEM text. The PEM is still read from the store on every
 * request (a deleted or re-keyed client is refused at once); only parsing it again is saved.
 */
const imported = new Map<string, Promise<Awaited<ReturnType<Jose['importSPKI']>>>>();
const MAX_IMPORTED = 1_000;

function publicKey(pem: string, importSPKI: Jose['importSPKI']): ReturnType<Jose['importSPKI']> {
  let key = imported.get(pem);
  if (key === undefined) {
    if (imported.size >= MAX_IMPORTED) imported.clear();
    key = importSPKI(pem, 'EdDSA');
    // A PEM that does not import is refused every time, not remembered.
    key.catch(() => imported.delete(pem));
    imported.set(pem, key);
  }
  return key;
}

/**
 * jose, lazily. The bundle carries a CommonJS copy of it (dist/vendor/jose.cjs, see
 * scripts/bundle.mjs: resolving jose's ESM files cost a client-mode command ~70 ms), which
 * import() hands over as `default`; from tsc's output it is the package's ESM namespace.
 */
async function loadJose(): Promise<Jose> {
  const loaded = (await import('jose')) as Jose & { default?: Jose };
  return loaded.default ?? loaded;
}
