/**
 * A TCP forwarder in front of a real server, for tests that need a target to go away and
 * come back at the address sealed with a lease (moving the base secret no longer does that:
 * revocation goes where the user was created). `down()` refuses connections on the same
 * port, `silent()` accepts them and never answers, `up()` forwards again.
 */
import net from 'node:net';

export interface Proxy {
  port: number;
  up(): Promise<void>;
  down(): Promise<void>;
  silent(): Promise<void>;
  close(): Promise<void>;
}

export async function startProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<Proxy> {
  const sockets = new Set<net.Socket>();
  let mode: 'forward' | 'silent' = 'forward';
  let server: net.Server | undefined;
  let port = 0;

  const onConnection = (client: net.Socket) => {
    sockets.add(client);
    client.on('error', () => undefined);
    client.on('close', () => sockets.delete(client));
    if (mode === 'silent') return;
    const upstream = net.connect(targetPort, targetHost);
    sockets.add(upstream);
    upstream.on('error', () => client.destroy());
    upstream.on('close', () => {
      sockets.delete(upstream);
      client.destroy();
    });
    client.on('close', () => upstream.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  };

  const listen = () =>
    new Promise<void>((resolve, reject) => {
      server = net.createServer(onConnection);
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        port = (server!.address() as net.AddressInfo).port;
        resolve();
      });
    });
  const stop = async () => {
    for (const socket of sockets) socket.destroy();
    sockets.clear();
    if (server) await new Promise((resolve) => server!.close(resolve));
    server = undefined;
  };

  await listen();
  return {
    get port() {
      return port;
    },
    async up() {
      mode = 'forward';
      if (!server) await listen();
    },
    async down() {
      await stop();
    },
    async silent() {
      mode = 'silent';
      for (const socket of sockets) socket.destroy();
      if (!server) await listen();
    },
    close: stop,
  };
}
