/**
 * Where the admin's password may go on MySQL/MariaDB. mysql2 on its own gives the password
 * to whoever answers at the target's address: `caching_sha2_password` full authentication
 * and `sha256_password` encrypt it with any RSA key the server sends, and send it in clear
 * over TLS that verified nothing; and with an IP address as host it checks the certificate
 * only against "localhost". sy replaces both plugins and checks the address itself before
 * the login packet leaves:
 * - the password itself goes only over TLS that verified the server (chain and name or
 *   address), or encrypted to the key the base secret pins (`serverPublicKey`); sy never
 *   asks the server for its key;
 * - with our plugins registered, mysql2 opens with a mysql_native_password token and lets
 *   the server switch (one more round trip on MySQL 8), as it does for any custom plugin.
 * mysql_clear_password (PAM, LDAP) gets the password over verified TLS only; mysql2 alone
 * refuses it always.
 */
import { constants, createHash, publicEncrypt } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import type mysql from 'mysql2';

/** The server asked for the password itself, and sy had no verified way to send it. */
export class PasswordRefused extends Error {
  constructor() {
    super('the server asked for the password without verified TLS or a pinned key');
  }
}

const FAST_AUTH_SUCCESS = 0x03;
const PERFORM_FULL_AUTHENTICATION = 0x04;

const sha256 = (...parts: Buffer[]): Buffer => {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest();
};

/** caching_sha2_password's scrambled token: SHA256(p) xor SHA256(SHA256(SHA256(p)), nonce). */
function scrambledToken(password: string, scramble: Buffer): Buffer {
  if (password === '') return Buffer.alloc(0);
  const stage1 = sha256(Buffer.from(password, 'utf8'));
  const stage3 = sha256(sha256(stage1), scramble);
  return Buffer.from(stage1.map((byte, i) => byte ^ stage3[i]));
}

/** The password, NUL-terminated, xored with the nonce, under RSA-OAEP (SHA-1), as the server expects. */
function encryptedPassword(password: string, scramble: Buffer, publicKey: string): Buffer {
  const plain = Buffer.from(`${password}\0`, 'utf8');
  const mixed = Buffer.from(plain.map((byte, i) => byte ^ scramble[i % scramble.length]));
  return publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, mixed);
}

type AuthPlugin = NonNullable<mysql.ConnectionOptions['authPlugins']>[string];
type PluginContext = Parameters<AuthPlugin>[0];

/**
 * The plugins for mysql2's `authPlugins`. `verify` says the base secret asks for the server
 * to be verified; the connection's own TLS socket must also say it was.
 */
export function authPlugins(password: string, verify: boolean, serverPublicKey: string | undefined): Record<string, AuthPlugin> {
  const passwordFor = (context: PluginContext, scramble: Buffer | undefined): Buffer => {
    const stream = (context.connection as unknown as { stream?: Partial<tls.TLSSocket> }).stream;
    if (verify && stream?.encrypted === true && stream.authorized === true) return Buffer.from(`${password}\0`, 'utf8');
    if (serverPublicKey !== undefined && scramble !== undefined) return encryptedPassword(password, scramble, serverPublicKey);
    throw new PasswordRefused();
  };
  return {
    caching_sha2_password: (context) => {
      let scramble: Buffer | undefined;
      return (data) => {
        if (scramble === undefined) {
          scramble = Buffer.from(data.subarray(0, 20));
          return scrambledToken(password, scramble);
        }
        if (data.length === 1 && data[0] === FAST_AUTH_SUCCESS) return null;
        if (data.length === 1 && data[0] === PERFORM_FULL_AUTHENTICATION) return passwordFor(context, scramble);
        throw new Error('unexpected caching_sha2_password data from the server');
      };
    },
    sha256_password: (context) => {
      let done = false;
      return (data) => {
        if (done) throw new Error('unexpected sha256_password data from the server');
        done = true;
        return passwordFor(context, Buffer.from(data.subarray(0, 20)));
      };
    },
    // No nonce to encrypt with: the password as it is, so only over verified TLS.
    mysql_clear_password: (context) => () => passwordFor(context, undefined),
  };
}

/**
 * With an IP address as host, mysql2 would check the certificate against "localhost" (Node's
 * fallback when no server name is given), so sy asks it to check the chain only and checks
 * the address itself, as soon as TLS is up and before mysql2 sends the login packet (user
 * name, auth token): mysql2 upgrades in its connection's startTLS, which this wraps for this
 * one connection. A host name is left to mysql2.
 */
export function checkAddressBeforeLogin(core: mysql.Connection, host: string): void {
  if (net.isIP(host) === 0) return;
  const connection = core as unknown as { startTLS?: (onSecure: (error?: Error) => void) => void; stream?: Partial<tls.TLSSocket> };
  const upgrade = connection.startTLS;
  if (typeof upgrade !== 'function') throw new Error('this mysql2 does not upgrade to TLS in startTLS, so sy cannot check the address before the login');
  connection.startTLS = function (this: unknown, onSecure) {
    upgrade.call(this, (error) => {
      if (error) return onSecure(error);
      const cert = connection.stream?.getPeerCertificate?.();
      if (cert?.raw === undefined) return onSecure(new Error('the server sent no certificate'));
      onSecure(tls.checkServerIdentity(host, cert));
    });
  };
}
