/**
 * An impostor PostgreSQL server, for the tests of where a password may go: it answers the
 * SSL request (with TLS when given a certificate, else "N", as a server without TLS or
 * someone on the path would), reads the startup message, asks for the password in clear
 * (AuthenticationCleartextPassword) or as MD5, and records what it receives. It never lets
 * anyone in: every password is answered with "password authentication failed" (28P01).
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { Duplex } from 'node:stream';
import tls from 'node:tls';

export interface FakePostgresOptions {
  auth: 'cleartext' | 'md5';
  /** Accept TLS with this certificate and key (PEM); without it the SSL request gets "N". */
  tls?: { cert: string; key: string };
  /** The address to listen on: 127.0.0.1 unless given. */
  host?: string;
}

export interface FakePostgres {
  host: string;
  port: number;
  /** Every byte the clients sent, over TLS or not, in order of arrival. */
  received(): Buffer;
  /** The password messages received: a password in clear, or `md5...`. */
  passwords(): string[];
  /** Startup messages received (one per login attempt that got that far). */
  startups(): number;
  close(): Promise<void>;
}

const SSL_REQUEST = 80877103;
const GSS_REQUEST = 80877104;

function message(type: string, body: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeInt32BE(body.length + 4);
  return Buffer.concat([Buffer.from(type), length, body]);
}

function authRequest(auth: FakePostgresOptions['auth']): Buffer {
  if (auth === 'cleartext') {
    const body = Buffer.alloc(4);
    body.writeInt32BE(3);
    return message('R', body);
  }
  const body = Buffer.alloc(8);
  body.writeInt32BE(5);
  randomBytes(4).copy(body, 4);
  return message('R', body);
}

function passwordFailed(): Buffer {
  const fields = ['SFATAL', 'VFATAL', 'C28P01', 'Mpassword authentication failed'].map((field) => `${field}\0`).join('');
  return message('E', Buffer.from(`${fields}\0`));
}

export async function startFakePostgres(options: FakePostgresOptions): Promise<FakePostgres> {
  const host = options.host ?? '127.0.0.1';
  const chunks: Buffer[] = [];
  const passwords: string[] = [];
  let startups = 0;
  const sockets = new Set<net.Socket>();

  const onConnection = (raw: net.Socket) => {
    sockets.add(raw);
    raw.on('error', () => undefined);
    raw.on('close', () => sockets.delete(raw));
    let stream: net.Socket | tls.TLSSocket = raw;
    let buffer = Buffer.alloc(0);
    let started = false;

    const onData = (data: Buffer) => {
      chunks.push(data);
      buffer = Buffer.concat([buffer, data]);
      for (;;) {
        if (!started) {
          // Untyped messages: SSL request, GSS request, startup.
          if (buffer.length < 8) return;
          const length = buffer.readInt32BE(0);
          if (buffer.length < length) return;
          const code = buffer.readInt32BE(4);
          buffer = buffer.subarray(length);
          if (code === SSL_REQUEST && options.tls && stream === raw) {
            raw.write('S');
            const rest = buffer;
            buffer = Buffer.alloc(0);
            const tunnel = new Duplex({ read() {}, write: (chunk, _encoding, done) => raw.write(chunk, done) });
            raw.removeAllListeners('data');
            raw.on('data', (more: Buffer) => tunnel.push(more));
            raw.on('close', () => tunnel.destroy());
            if (rest.length > 0) tunnel.push(rest);
            const secure = new tls.TLSSocket(tunnel as unknown as net.Socket, { isServer: true, cert: options.tls.cert, key: options.tls.key });
            secure.on('error', () => undefined);
            secure.on('data', onData);
            stream = secure;
            return;
          }
          if (code === SSL_REQUEST || code === GSS_REQUEST) {
            stream.write('N');
            continue;
          }
          started = true;
          startups++;
          stream.write(authRequest(options.auth));
          continue;
        }
        if (buffer.length < 5) return;
        const type = String.fromCharCode(buffer[0]);
        const length = buffer.readInt32BE(1);
        if (buffer.length < 1 + length) return;
        const body = buffer.subarray(5, 1 + length);
        buffer = buffer.subarray(1 + length);
        if (type === 'p') {
          passwords.push(body.toString('utf8').replace(/\0$/, ''));
          stream.write(passwordFailed());
          stream.end();
          return;
        }
        if (type === 'X') {
          stream.end();
          return;
        }
      }
    };
    raw.on('data', onData);
  };

  const server = net.createServer(onConnection);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    host,
    port,
    received: () => Buffer.concat(chunks),
    passwords: () => [...passwords],
    startups: () => startups,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
