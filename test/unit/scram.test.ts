import { createHash, createHmac } from 'node:crypto';
import { scramKeys, scramSha256Verifier, scramSha256VerifierAsync } from '../../src/targets/scram.js';

// The SCRAM-SHA-256 exchange of RFC 7677, section 3 (user "user", password "pencil").
const RFC = {
  password: 'pencil',
  salt: Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'),
  authMessage:
    'n=user,r=rOprNGfwEbeRWgbNEkqO,' +
    'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,' +
    'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  clientProof: 'dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverSignature: '6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};

describe('scramSha256Verifier', () => {
  test('its ServerKey signs the RFC 7677 exchange exactly as the RFC server did', () => {
    const { serverKey } = scramKeys(RFC.password, RFC.salt);
    const signature = createHmac('sha256', serverKey).update(RFC.authMessage).digest('base64');
    expect(signature).toBe(RFC.serverSignature);
  });

  test('its StoredKey accepts the RFC 7677 client proof and rejects a tampered one', () => {
    const { storedKey } = scramKeys(RFC.password, RFC.salt);
    const recover = (proofB64: string): string => {
      const clientSignature = createHmac('sha256', storedKey).update(RFC.authMessage).digest();
      const proof = Buffer.from(proofB64, 'base64');
      const clientKey = Buffer.from(proof.map((byte, i) => byte ^ clientSignature[i]));
      return createHash('sha256').update(clientKey).digest('base64');
    };
    expect(recover(RFC.clientProof)).toBe(storedKey.toString('base64'));
    const tampered = Buffer.from(RFC.clientProof, 'base64');
    tampered[0] ^= 1;
    expect(recover(tampered.toString('base64'))).not.toBe(storedKey.toString('base64'));
  });

  test('has the pg_authid format with the given salt and 4096 iterations', () => {
    const verifier = scramSha256Verifier(RFC.password, RFC.salt);
    const { storedKey, serverKey } = scramKeys(RFC.password, RFC.salt);
    expect(verifier).toBe(
      `SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$${storedKey.toString('base64')}:${serverKey.toString('base64')}`,
    );
  });

  test('uses a fresh 16-byte salt each time and never contains the password', () => {
    const password = 'Secret#%@:?=+pw';
    const a = scramSha256Verifier(password);
    const b = scramSha256Verifier(password);
    expect(a).not.toBe(b);
    const match = /^SCRAM-SHA-256\$4096:([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]{44}):([A-Za-z0-9+/=]{44})$/.exec(a);
    expect(match).not.toBeNull();
    expect(Buffer.from(match![1], 'base64')).toHaveLength(16);
    expect(a).not.toContain(password);
  });

  test('depends on the password', () => {
    expect(scramSha256Verifier('pencil', RFC.salt)).not.toBe(scramSha256Verifier('pencil2', RFC.salt));
  });

  test('the asynchronous form (off the event loop) gives the same verifier, and a non-ASCII password the same as the sync form', async () => {
    expect(await scramSha256VerifierAsync(RFC.password, RFC.salt)).toBe(scramSha256Verifier(RFC.password, RFC.salt));
    expect(await scramSha256VerifierAsync('pâss\u212b', RFC.salt)).toBe(scramSha256Verifier('pâss\u212b', RFC.salt));
    expect(await scramSha256VerifierAsync('pencil', RFC.salt)).not.toBe(scramSha256Verifier('pencil2', RFC.salt));
  });
});
