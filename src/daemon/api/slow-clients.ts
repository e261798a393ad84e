import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

const ARM = Symbol('sy.deadline');
type Guarded = Socket & { [ARM]?: (ms: number | undefined) => void };

/**
 * Deadlines against slow clients, per connection: its headers must arrive within
 * `headersMs` (of the connection, or of the previous response), its body within
 * `bodyMs` of its headers, and it may not sit silent for `idleMs`; otherwise its socket is
 * destroyed. Node's own headersTimeout and requestTimeout are set too, but they are
 * enforced by a periodic check that, on Node 20, was seen to leave a lone slow connection
 * open; these timers do not depend on it. The time a handler takes (a lease create that
 * waits on its database) is not limited here.
 */
export function guardSlowClients(server: Server, limits: { headersMs: number; bodyMs: number; idleMs: number }): void {
  server.on('connection', (socket: Guarded) => {
    let timer: NodeJS.Timeout | undefined;
    const arm = (ms: number | undefined) => {
      clearTimeout(timer);
      timer = ms === undefined ? undefined : setTimeout(() => socket.destroy(), ms).unref();
    };
    socket[ARM] = arm;
    socket.setTimeout(limits.idleMs, () => socket.destroy());
    socket.on('close', () => arm(undefined));
    arm(limits.headersMs);
  });
  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    const arm = (request.socket as Guarded)[ARM];
    if (!arm) return;
    if (request.complete) arm(undefined);
    else {
      arm(limits.bodyMs);
      request.once('end', () => arm(undefined));
    }
    response.once('finish', () => arm(limits.headersMs));
  });
}
