/**
 * What `sy agent` does, as typed events: the loop emits them, observers (the stderr log)
 * turn them into lines. An event never carries a password: the lease travels to the file
 * writer, not to the log.
 */
export type AgentEvent =
  | { event: 'issued'; lease_id: string; username: string; expires_at: string; ms: number }
  | { event: 'written'; lease_id: string; file: string; ms: number }
  | { event: 'exec'; lease_id: string; status: number; ms: number }
  | { event: 'renewed'; lease_id: string; expires_at: string; capped: boolean; ms: number }
  | { event: 'rotating'; lease_id: string; reason: string }
  | { event: 'draining'; lease_id: string; sessions: number | null; deadline: string }
  | { event: 'revoked'; lease_id: string; reason: string }
  | { event: 'retry'; action: string; lease_id?: string; error: string; delay_ms: number }
  | { event: 'stopping'; signal: string }
  | { event: 'stopped'; revoked: number; failed: number };

export type AgentObserver = (event: AgentEvent) => void;

/** One line of text per event, for people reading a container's log. */
export function textLine(event: AgentEvent): string {
  switch (event.event) {
    case 'issued':
      return `issued lease ${event.lease_id} (user ${event.username}, expires ${event.expires_at}) in ${event.ms} ms`;
    case 'written':
      return `wrote ${event.file} for lease ${event.lease_id}`;
    case 'exec':
      return `--exec exited ${event.status} after ${event.ms} ms`;
    case 'renewed':
      return `renewed lease ${event.lease_id} until ${event.expires_at}${event.capped ? ' (its max TTL)' : ''}`;
    case 'rotating':
      return `rotating lease ${event.lease_id}: ${event.reason}`;
    case 'draining':
      return `draining lease ${event.lease_id}: ${event.sessions === null ? 'its sessions cannot be counted' : `${event.sessions} session${event.sessions === 1 ? '' : 's'} open`}; revoked by ${event.deadline} at the latest`;
    case 'revoked':
      return `revoked lease ${event.lease_id} (${event.reason})`;
    case 'retry':
      return `could not ${event.action}${event.lease_id ? ` lease ${event.lease_id}` : ''}: ${event.error}; retrying in ${Math.round(event.delay_ms / 100) / 10} s`;
    case 'stopping':
      return `${event.signal}: revoking this agent's leases`;
    case 'stopped':
      return `stopped: ${event.revoked} lease${event.revoked === 1 ? '' : 's'} revoked${event.failed ? `, ${event.failed} left to the sweep` : ''}`;
  }
}

/** One JSON object per line (`--log-format json`), with a timestamp. */
export function jsonLine(event: AgentEvent, now: number): string {
  return JSON.stringify({ time: new Date(now).toISOString(), ...event });
}
