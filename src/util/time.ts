/** ISO-8601 UTC to the second, as in the lease JSON: `2026-04-06T12:00:00Z`. */
export function isoSeconds(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

export function nowIso(): string {
  return isoSeconds(Date.now());
}

/**
 * Tables show local time with its UTC offset (`2026-12-01 22:40:05 +01:00`): the time a
 * person reads at a glance, and still one instant when pasted into a ticket from another
 * zone. JSON keeps ISO-8601 UTC.
 */
export function localTime(iso: string | null): string {
  if (!iso) return '';
  const date = new Date(iso);
  const pad = (n: number) => String(n).padStart(2, '0');
  const east = -date.getTimezoneOffset();
  const offset = `${east < 0 ? '-' : '+'}${pad(Math.floor(Math.abs(east) / 60))}:${pad(Math.abs(east) % 60)}`;
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())} ${offset}`;
}
