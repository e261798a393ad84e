/**
 * The lease API's tokens (src/clients/token.ts): what `sy auth token` signs verifies against the
 * registered key, and every kind of forged token of PRODUCT.md's list is refused as
 * unauthorized (401 / exit 4). The end-to-end attacks through the daemon are in
 * test/e2e/api.test.ts.
 */
import { generateKeyPairSync } from 'node:crypto';
import { SignJWT, importPKCS8, UnsecuredJWT } from 'jose';
import { MAX_TOKEN_SECONDS, signToken, verifyToken } from '../../src/clients/token.js';
import { SyError } from '../../src/errors.js';
import { parseListen } from '../../src/daemon/listen.js';

const AUD = 'https://sy.example.com:8443';

function keyPair() {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  return {
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

const alice = keyPair();
const mallory = keyPair();
const keys = async (name: string) => (name === 'alice' ? alice.publicPem : undefined);

async function refused(token: string, audience = AUD): Promise<SyError> {
  const error = await verifyToken(token, audience, keys).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(SyError);
  expect((error as SyError).kind).toBe('unauthorized');
  expect((error as SyError).exitCode).toBe(4);
  if (token) expect((error as SyError).message).not.toContain(token);
  return error as SyError;
}

async function custom(claims: Record<string, unknown>, options: { key?: string; iat?: number; exp?: number; alg?: string } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const key = await importPKCS8(options.key ?? alice.privatePem, 'EdDSA');
  let jwt = new SignJWT(claims).setProtectedHeader({ alg: options.alg ?? 'EdDSA' }).setIssuedAt(options.iat ?? now).setExpirationTime(options.exp ?? now + 60);
  if (!('noJti' in claims)) jwt = jwt.setJti('j1');
  return jwt.sign(key);
}

test('a token that sy auth token signs verifies, names its client and may be used again within its lifetime', async () => {
  const token = await signToken({ clientId: 'alice', privateKeyPem: alice.privatePem, audience: AUD, ttlSeconds: 300 });
  const first = await verifyToken(token, AUD, keys);
  expect(first.client).toBe('alice');
  expect(first.jti).toMatch(/^[0-9a-f-]{36}$/);
  expect((await verifyToken(token, AUD, keys)).jti).toBe(first.jti);
});

test('every forged token is refused: other audience, expired, unsigned, other key, too long-lived, unknown client, no jti, future', async () => {
  const now = Math.floor(Date.now() / 1000);
  const good = { iss: 'alice', sub: 'alice', aud: AUD };
  expect((await refused(await custom(good), 'https://other.example.com')).message).toMatch(/aud/);
  expect((await refused(await custom(good, { iat: now - 600, exp: now - 300 }))).message).toMatch(/expired/);
  expect((await refused(new UnsecuredJWT(good).setIssuedAt().setExpirationTime('1m').encode())).message).toMatch(/EdDSA/);
  expect((await refused(await custom(good, { key: mallory.privatePem }))).message).toMatch(/signature/);
  expect((await refused(await custom(good, { exp: now + MAX_TOKEN_SECONDS + 60 }))).message).toMatch(/longer than 15 minutes/);
  await refused(await custom({ ...good, iss: 'bob', sub: 'bob' }));
  await refused(await custom({ ...good, sub: 'bob' }));
  await refused(await custom({ ...good, noJti: true }));
  await refused(await custom(good, { iat: now + 3600, exp: now + 3700 }));
  await refused('not.a.token');
  await refused('');
  // A token re-signed with HMAC over the public key (the classic algorithm confusion).
  const hmac = await new SignJWT(good).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime('1m').setJti('x').sign(new TextEncoder().encode(alice.publicPem));
  expect((await refused(hmac)).message).toMatch(/EdDSA/);
});

test('a token longer than 15 minutes is never signed', async () => {
  await expect(signToken({ clientId: 'alice', privateKeyPem: alice.privatePem, audience: AUD, ttlSeconds: MAX_TOKEN_SECONDS + 1 })).rejects.toMatchObject({ kind: 'usage' });
  await expect(signToken({ clientId: 'alice', privateKeyPem: 'nope', audience: AUD, ttlSeconds: 60 })).rejects.toMatchObject({ kind: 'unauthorized' });
});

test('--listen: plain HTTP only on loopback; TLS anywhere; bad values in one sentence', () => {
  expect(parseListen('127.0.0.1:8200', undefined, undefined)).toEqual({ host: '127.0.0.1', port: 8200, tls: undefined });
  expect(parseListen('[::1]:0', undefined, undefined).host).toBe('::1');
  expect(parseListen('localhost:1', undefined, undefined).host).toBe('localhost');
  expect(parseListen('0.0.0.0:8443', 'c.pem', 'k.pem').tls).toEqual({ cert: 'c.pem', key: 'k.pem' });
  for (const [value, cert, key] of [
    ['0.0.0.0:8200', undefined, undefined],
    ['10.0.0.5:8200', undefined, undefined],
    ['[::]:8200', undefined, undefined],
    ['127.0.0.1', undefined, undefined],
    ['127.0.0.1:99999', undefined, undefined],
    ['0.0.0.0:8443', 'c.pem', undefined],
  ] as const) {
    expect(() => parseListen(value, cert, key)).toThrow(expect.objectContaining({ kind: 'usage' }));
  }
});
