/**
 * An impostor MySQL server on 127.0.0.1, for the tests of where the admin's password may go:
 * it speaks just enough of the MySQL handshake to switch the client to `caching_sha2_password`
 * (and ask for full authentication), `sha256_password` or `mysql_clear_password`, offers its own RSA public key
 * when asked, and records everything it receives. Whatever password reaches it, in clear or
 * encrypted to its key, it recovers, so a test can assert that the password never arrived.
 * It never lets anyone in: every login ends with "Access denied".
 */
import { generateKeyPairSync, privateDecrypt, constants as cryptoConstants, randomBytes } from 'node:crypto';
import net from 'node:net';
import { Duplex } from 'node:stream';
import tls from 'node:tls';

export type FakeMysqlPlugin = 'caching_sha2_password' | 'sha256_password' | 'mysql_clear_password';

export interface FakeMysqlOptions {
  plugin: FakeMysqlPlugin;
  /** Offer TLS with this certificate and key (PEM). */
  tls?: { cert: string; key: string };
  /** The RSA key pair the server holds; a fresh one by default. */
  keyPair?: { publicKey: string; privateKey: string };
}

export interface FakeMysql {
  port: number;
  /** The fake's RSA public key (PEM), as it sends it to a client that asks. */
  publicKey: string;
  /** Every byte the clients sent, over TLS or not, in order of arrival. */
  received(): Buffer;
  /** Passwords recovered from what clients sent: in clear, or encrypted to the fake's key. */
  recovered(): string[];
  /** Clients that sent a login packet (the handshake response with the user name and auth token). */
  logins(): number;
  /** How often a client asked for the fake's public key. */
  keyRequests(): number;
  close(): Promise<void>;
}

const CLIENT_SSL = 0x800;
const CAPABILITIES =
  0x1 | 0x2 | 0x4 | 0x8 | 0x200 | 0x2000 | 0x8000 | 0x20000 | 0x80000 | 0x200000; // long password ... plugin auth lenenc data

export function rsaKeyPair(): { publicKey: string; privateKey: string } {
  return generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
}

function packet(seq: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header.writeUIntLE(payload.length, 0, 3);
  header[3] = seq & 0xff;
  return Buffer.concat([header, payload]);
}

function hello(scramble: Buffer, plugin: string, withTls: boolean): Buffer {
  const caps = CAPABILITIES | (withTls ? CLIENT_SSL : 0);
  const id = Buffer.alloc(4);
  id.writeUInt32LE(Math.floor(Math.random() * 1e6));
  const lower = Buffer.alloc(2);
  lower.writeUInt16LE(caps & 0xffff);
  const upper = Buffer.alloc(2);
  upper.writeUInt16LE(caps >>> 16);
  return Buffer.concat([
    Buffer.from([0x0a]),
    Buffer.from('8.0.36-sy-impostor\0'),
    id,
    scramble.subarray(0, 8),
    Buffer.from([0]),
    lower,
    Buffer.from([0xff]),
    Buffer.from([0x02, 0x00]),
    upper,
    Buffer.from([21]),
    Buffer.alloc(10),
    scramble.subarray(8, 20),
    Buffer.from([0]),
    Buffer.from(`${plugin}\0`),
  ]);
}

function accessDenied(): Buffer {
  const code = Buffer.alloc(2);
  code.writeUInt16LE(1045);
  return Buffer.concat([Buffer.from([0xff]), code, Buffer.from('#28000Access denied')]);
}

/** xor with the scramble, rotating, as both plugins do before encrypting. */
function unscramble(data: Buffer, scramble: Buffer): string {
  const out = Buffer.alloc(data.length);
  for (let i = 0; i < data.length; i++) out[i] = data[i] ^ scramble[i % scramble.length];
  return out.toString('utf8').replace(/\0+$/, '');
}

export async function startFakeMysql(options: FakeMysqlOptions): Promise<FakeMysql> {
  const keys = options.keyPair ?? rsaKeyPair();
  const chunks: Buffer[] = [];
  const passwords: string[] = [];
  let logins = 0;
  let keyRequests = 0;
  const sockets = new Set<net.Socket>();

  const tryDecrypt = (data: Buffer, scramble: Buffer): void => {
    try {
      passwords.push(unscramble(privateDecrypt({ key: keys.privateKey, padding: cryptoConstants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, data), scramble));
    } catch {
      // Not encrypted to this key: nothing to recover.
    }
  };

  const onConnection = (raw: net.Socket) => {
    sockets.add(raw);
    raw.on('error', () => undefined);
    raw.on('close', () => sockets.delete(raw));
    const scramble = Buffer.from(randomBytes(20).map((b) => (b % 94) + 33)); // printable, no NUL, as servers send
    let stream: net.Socket | tls.TLSSocket = raw;
    let buffer = Buffer.alloc(0);
    let seq = 0;
    // switch: the switch request was sent; token: the full-auth request was sent; key: the key was sent.
    let state: 'hello' | 'switch' | 'token' | 'key' | 'done' = 'hello';
    const send = (payload: Buffer) => stream.write(packet(++seq, payload));
    const refuse = () => {
      send(accessDenied());
      state = 'done';
      stream.end();
    };

    const onPacket = (payload: Buffer) => {
      if (state === 'hello') {
        if (options.tls && payload.length === 32 && (payload.readUInt32LE(0) & CLIENT_SSL) !== 0) {
          // SSLRequest: the rest of the conversation is over TLS. The client's first TLS
          // bytes may have come with it, so TLS reads through a stream fed from here.
          const rest = buffer;
          buffer = Buffer.alloc(0);
          const tunnel = new Duplex({ read() {}, write: (chunk, _encoding, done) => raw.write(chunk, done) });
          raw.removeAllListeners('data');
          raw.on('data', (data: Buffer) => tunnel.push(data));
          raw.on('close', () => tunnel.destroy());
          if (rest.length > 0) tunnel.push(rest);
          const secure = new tls.TLSSocket(tunnel as unknown as net.Socket, { isServer: true, cert: options.tls.cert, key: options.tls.key });
          secure.on('error', () => undefined);
          secure.on('data', onData);
          stream = secure;
          return;
        }
        logins++;
        state = 'switch';
        send(Buffer.concat([Buffer.from([0xfe]), Buffer.from(`${options.plugin}\0`), scramble, Buffer.from([0])]));
        return;
      }
      if (state === 'switch' && options.plugin === 'caching_sha2_password') {
        // The scrambled token: pretend the cache is empty and ask for the password itself.
        state = 'token';
        send(Buffer.from([0x01, 0x04]));
        return;
      }
      if ((state === 'switch' || state === 'token') && payload.length === 1 && (payload[0] === 0x01 || payload[0] === 0x02)) {
        keyRequests++;
        state = 'key';
        send(Buffer.concat([Buffer.from([0x01]), Buffer.from(keys.publicKey)]));
        return;
      }
      if (state === 'switch' || state === 'token' || state === 'key') {
        if (payload.length > 0 && payload[payload.length - 1] === 0 && payload.subarray(0, -1).every((b) => b >= 0x20 && b < 0x7f)) {
          passwords.push(payload.subarray(0, -1).toString('utf8'));
        } else {
          tryDecrypt(payload, scramble);
        }
        refuse();
      }
    };

    const onData = (data: Buffer) => {
      chunks.push(data);
      buffer = Buffer.concat([buffer, data]);
      while (buffer.length >= 4) {
        const length = buffer.readUIntLE(0, 3);
        if (buffer.length < 4 + length) break;
        seq = buffer[3];
        const payload = buffer.subarray(4, 4 + length);
        buffer = buffer.subarray(4 + length);
        onPacket(payload);
      }
    };

    raw.on('data', onData);
    raw.write(packet(0, hello(scramble, options.plugin, options.tls !== undefined)));
  };

  const server = net.createServer(onConnection);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    publicKey: keys.publicKey,
    received: () => Buffer.concat(chunks),
    recovered: () => [...passwords],
    logins: () => logins,
    keyRequests: () => keyRequests,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
