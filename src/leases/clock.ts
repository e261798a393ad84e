/**
 * Whose clock a lease follows: the target server's. A lease's created, expiry and max times,
 * PostgreSQL's VALID UNTIL and the reap-after bound in the user's name all come from it, so a
 * machine whose clock is wrong cannot make a user that outlives its lease on the server.
 */
import { failed, type SyError } from '../errors.js';
import { ENGINES } from '../model/engines.js';
import type { BaseConnection } from '../model/secret.js';
import type { Target } from '../targets/target.js';
import type { LeaseDeps } from './deps.js';

/** The most this machine's clock may differ from the server's when a lease is created. */
export const MAX_CLOCK_SKEW_MS = 60_000;

export interface ServerClock {
  /** The server's time, in milliseconds since the epoch. */
  server: number;
  /** This machine's time at the same instant (the middle of the round trip). */
  local: number;
  /** How long the round trip took: the reading is only this precise. */
  roundTripMs: number;
}

/** One round trip to read the server's clock, with this machine's around it. */
export async function readServerClock(deps: LeaseDeps, target: Target): Promise<ServerClock> {
  const before = deps.now();
  const server = (await target.serverNow()).getTime();
  const after = deps.now();
  return { server, local: Math.round((before + after) / 2), roundTripMs: after - before };
}

const isoSeconds = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/**
 * Why no lease may be created with these clocks, or undefined when they agree within
 * MAX_CLOCK_SKEW_MS (plus the uncertainty of the round trip): one sentence naming both times.
 */
export function clockSkewRefusal(clock: ServerClock, connection: BaseConnection): SyError | undefined {
  const unreadable = !Number.isFinite(clock.server);
  if (!unreadable && Math.abs(clock.server - clock.local) <= MAX_CLOCK_SKEW_MS + clock.roundTripMs / 2) return undefined;
  const server = `${ENGINES[connection.engine].label} at ${connection.host}:${connection.port}`;
  if (unreadable) return failed('clock_unreadable', `Could not read the clock of ${server}, so no lease was created.`);
  return failed(
    'clock_skew',
    `This machine's clock says ${isoSeconds(clock.local)} but ${server} says ${isoSeconds(clock.server)}, more than ${MAX_CLOCK_SKEW_MS / 1000} seconds apart, so no lease was created.`,
  );
}
