import type { IOStreams } from '../io/streams.js';

const SIGNALS = ['SIGINT', 'SIGTERM'] as const;

/**
 * Runs `work` with a signal that the first Ctrl-C (SIGINT) or SIGTERM aborts, so that the
 * command stops at a safe point and cleans up (`lease create` leaves no user that nobody
 * received); it then ends with the interrupted error: one line, `sy: Interrupted.`, exit 130.
 * A second signal does not wait for the clean-up: it says so and ends the process as the
 * signal would (what is left is the sweep's to resolve).
 */
export async function interruptible<T>(io: IOStreams, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (!controller.signal.aborted) {
      controller.abort();
      return;
    }
    remove();
    io.warn('sy: Interrupted.');
    process.kill(process.pid, signal);
  };
  const remove = () => {
    for (const name of SIGNALS) process.off(name, onSignal);
  };
  for (const name of SIGNALS) process.on(name, onSignal);
  try {
    return await work(controller.signal);
  } finally {
    remove();
  }
}
