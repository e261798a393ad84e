import type { IOStreams } from './streams.js';

/**
 * A spinner on the streams' stderr while sy talks to a database, drawn only when stdout and
 * stderr are terminals and --quiet is off. ora is imported on first use.
 */
export interface Spinner {
  update(text: string): void;
  stop(): void;
}

export function createSpinner(io: IOStreams): Spinner {
  if (!io.canSpin()) return { update() {}, stop() {} };
  let spinner: { text: string; stop(): void } | undefined;
  let pending: Promise<void> | undefined;
  let stopped = false;
  let latest = '';
  return {
    update(text) {
      latest = text;
      if (spinner) {
        spinner.text = text;
        return;
      }
      pending ??= import('ora').then(({ default: ora }) => {
        if (stopped) return;
        spinner = ora({ text: latest, stream: io.stderr, color: 'cyan', isEnabled: true, discardStdin: false });
        (spinner as unknown as { start(): void }).start();
        if (!io.colorEnabled) (spinner as unknown as { color: string }).color = 'white';
      });
    },
    stop() {
      stopped = true;
      spinner?.stop();
    },
  };
}
