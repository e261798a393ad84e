import { usageError } from '../errors.js';

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/**
 * `3600`, `90s`, `15m`, `1h30m`, `1d` → seconds. `what` names the value in the error: an
 * attribute (`attributes.ttl`) or a wizard's answer here, a flag through cli/flags.ts.
 */
export function parseDuration(input: string | number, what: string): number {
  if (typeof input === 'number') {
    if (Number.isInteger(input) && input > 0) return input;
    throw usageError('invalid_duration', `${what} must be a positive whole number of seconds.`);
  }
  const text = input.trim();
  if (/^\d+$/.test(text)) {
    const seconds = Number(text);
    if (seconds > 0) return seconds;
  } else if (/^(\d+[smhd])+$/i.test(text)) {
    let total = 0;
    for (const [, amount, unit] of text.toLowerCase().matchAll(/(\d+)([smhd])/g)) {
      total += Number(amount) * UNIT_SECONDS[unit];
    }
    if (total > 0) return total;
  }
  throw usageError(
    'invalid_duration',
    `${what} "${text.slice(0, 40)}" is not a duration: use seconds (3600) or a duration such as 90s, 15m or 1h30m.`,
  );
}

/** 3599 → `59m 59s`, 90061 → `1d 1h 1m 1s`: how people read durations in tables. */
export function humanDuration(totalSeconds: number): string {
  if (totalSeconds <= 0) return '0s';
  const parts: string[] = [];
  let rest = Math.round(totalSeconds);
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.join(' ');
}
