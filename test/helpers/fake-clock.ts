/**
 * A clock that moves only when the test says so: the `now()` of LeaseDeps. Expiry, backoff,
 * claim expiry and stale intents are then reached by advancing it, not by waiting.
 */
export class FakeClock {
  private current: number;

  /** `step`: how far each reading moves it on, for code that polls the clock in a loop. */
  constructor(start = Date.UTC(2030, 0, 1), private readonly step = 0) {
    this.current = start;
  }

  /** Bound, so it can be handed over as `now` on its own. */
  readonly now = (): number => {
    const value = this.current;
    this.current += this.step;
    return value;
  };

  /** The time without moving it. */
  peek(): number {
    return this.current;
  }

  advance(ms: number): number {
    this.current += ms;
    return this.current;
  }

  set(ms: number): void {
    this.current = ms;
  }
}

export const SECOND = 1000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;
