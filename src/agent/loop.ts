import { SyError } from '../errors.js';
import type { LeaseService } from '../client/lease-service.js';
import type { IssuedLease } from '../io/lease-view.js';
import type { SecretRef } from '../model/secret.js';
import { isoSeconds } from '../util/time.js';
import type { AgentObserver } from './events.js';

/**
 * The loop of `sy agent`: one lease kept fresh for an application, following the Vault
 * lesson's two patterns. "Cached with renewal": renew at two thirds of the current duration.
 * "Graceful credential rotation": before the max TTL, or as soon as the lease stops working,
 * issue the next lease first, publish it (write the file, run --exec), and only then revoke
 * the old one, once its user has no session left or the drain deadline has passed.
 *
 * It works on a LeaseService, so the same loop runs on a store or as a client of a pool.
 */
export interface AgentOptions {
  ref: SecretRef;
  ttlSeconds?: number;
  /** How long an old lease may stay after its successor is published (default 5 min). */
  drainMs: number;
}

/** What a lease user's probe saw: its other sessions, or that it can no longer log in. */
export type SessionCount = number | 'gone';

export interface AgentDeps {
  service: LeaseService;
  /** Writes the file and runs --exec; throws when the file could not be written. */
  publish(lease: IssuedLease): Promise<void>;
  /** The lease user's sessions on its server; throws when they cannot be counted. */
  sessions(lease: IssuedLease): Promise<SessionCount>;
  now(): number;
  /** Waits, or returns early when `signal` aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
  emit: AgentObserver;
}

export interface AgentSummary {
  revoked: number;
  /** Leases that could not be revoked at the end: they expire, and the sweep drops them. */
  failed: number;
}

/** A renewal, lookup or issue failed with one of these: the lease itself has stopped working. */
const STOPPED = new Set(['lease_not_found', 'lease_not_active', 'lease_expired']);
const MIN_CHECK_MS = 1_000;
const MAX_CHECK_MS = 30_000;
const MAX_BACKOFF_MS = 60_000;
const DRAIN_POLL_MS = 1_000;
/**
 * An application that read the file just before the new lease replaced it may still be
 * connecting with the old one: the old user's sessions are first counted after this.
 */
const DRAIN_GRACE_MS = 1_000;

interface Held {
  lease: IssuedLease;
  expiresAt: number;
  renewable: boolean;
  /** When the current duration began (issue or last renewal). */
  since: number;
}

export function backoffMs(failures: number): number {
  return Math.min(1_000 * 2 ** Math.max(0, failures - 1), MAX_BACKOFF_MS);
}

/** Errors worth retrying: a store, server or target that could not be reached or refused for now. */
function transient(error: unknown): boolean {
  return !(error instanceof SyError) || error.exitCode === 1;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export async function runAgent(options: AgentOptions, deps: AgentDeps, signal: AbortSignal): Promise<AgentSummary> {
  const { service, emit } = deps;
  /** Old leases still draining or being revoked; each leaves the map once it is settled. */
  const retiring = new Map<string, Promise<boolean>>();
  const settled = { revoked: 0, failed: 0 };
  const track = (id: string, outcome: Promise<boolean>): void => {
    retiring.set(
      id,
      outcome.then((revoked) => {
        if (revoked) settled.revoked++;
        else settled.failed++;
        retiring.delete(id);
        return revoked;
      }),
    );
  };
  let failures = 0;

  const hold = (lease: IssuedLease): Held => ({
    lease,
    expiresAt: Date.parse(lease.expires_at),
    renewable: lease.renewable,
    since: deps.now(),
  });

  const wait = (ms: number) => deps.sleep(Math.max(0, ms), signal);

  /** Issues and publishes a lease, retrying what is transient; undefined when stopped first. */
  const issueNext = async (fatal: boolean): Promise<Held | undefined> => {
    for (let attempt = 1; !signal.aborted; attempt++) {
      const started = deps.now();
      let lease: IssuedLease;
      try {
        lease = await service.issue(options.ref, { ttlSeconds: options.ttlSeconds });
      } catch (error) {
        if (fatal && !transient(error)) throw error;
        const delay = backoffMs(attempt);
        emit({ event: 'retry', action: 'issue a lease', error: message(error), delay_ms: delay });
        await wait(delay);
        continue;
      }
      emit({ event: 'issued', lease_id: lease.lease_id, username: lease.username, expires_at: lease.expires_at, ms: deps.now() - started });
      try {
        await deps.publish(lease);
      } catch (error) {
        // Nobody can use a lease that was not written: give it back and try again.
        await service.revoke(lease.lease_id).catch(() => undefined);
        if (fatal && !transient(error)) throw error;
        const delay = backoffMs(attempt);
        emit({ event: 'retry', action: 'write the lease', lease_id: lease.lease_id, error: message(error), delay_ms: delay });
        await wait(delay);
        continue;
      }
      return hold(lease);
    }
    return undefined;
  };

  /** Revokes an old lease once its user has no session left, or at the drain deadline. */
  const retire = (old: Held): void => {
    const id = old.lease.lease_id;
    const done = (async () => {
      const deadline = Math.min(deps.now() + options.drainMs, old.expiresAt);
      let reason = deadline === old.expiresAt ? 'it expires' : 'drain deadline';
      let announced = false;
      await wait(Math.min(DRAIN_GRACE_MS, deadline - deps.now()));
      while (!signal.aborted && deps.now() < deadline) {
        let count: SessionCount | null;
        try {
          count = await deps.sessions(old.lease);
        } catch {
          count = null;
        }
        if (count === 'gone') {
          reason = 'its user can no longer log in';
          break;
        }
        if (count === 0) {
          reason = 'no session left';
          break;
        }
        if (!announced) {
          emit({ event: 'draining', lease_id: id, sessions: count, deadline: isoSeconds(deadline) });
          announced = true;
        }
        await wait(Math.min(DRAIN_POLL_MS, deadline - deps.now()));
      }
      if (signal.aborted) reason = 'agent stopped';
      for (let attempt = 1; ; attempt++) {
        try {
          await service.revoke(id);
          emit({ event: 'revoked', lease_id: id, reason });
          return true;
        } catch (error) {
          if (!transient(error) || (error instanceof SyError && STOPPED.has(error.code))) {
            // Already ended (revoked elsewhere, or gone): nothing is left to do.
            emit({ event: 'revoked', lease_id: id, reason: message(error) });
            return true;
          }
          if (signal.aborted || deps.now() >= old.expiresAt || attempt >= 5) {
            emit({ event: 'retry', action: 'revoke', lease_id: id, error: `${message(error)} (left to the sweep)`, delay_ms: 0 });
            return false;
          }
          const delay = backoffMs(attempt);
          emit({ event: 'retry', action: 'revoke', lease_id: id, error: message(error), delay_ms: delay });
          await wait(delay);
        }
      }
    })();
    track(id, done);
  };

  const rotate = async (old: Held, reason: string): Promise<Held> => {
    emit({ event: 'rotating', lease_id: old.lease.lease_id, reason });
    const next = await issueNext(false);
    if (!next) return old; // stopped while trying: the shutdown revokes the old one
    retire(old);
    return next;
  };

  /** Whether the lease has stopped working: ended in the ledger, or its user cannot log in. */
  const stoppedWorking = async (held: Held): Promise<string | undefined> => {
    try {
      const details = await service.lookup(held.lease.lease_id);
      if (details.state !== 'active') return `it is ${details.state}`;
    } catch (error) {
      if (error instanceof SyError && STOPPED.has(error.code)) return error.message;
      return undefined; // cannot tell now; the renewal will retry
    }
    if (deps.now() >= held.expiresAt) return 'it expired';
    try {
      if ((await deps.sessions(held.lease)) === 'gone') return 'its user can no longer log in';
    } catch {
      // Cannot tell (a full connection limit, a network error): keep it.
    }
    return undefined;
  };

  let current = await issueNext(true);
  if (current) {
    let retryAt: number | undefined;
    while (!signal.aborted) {
      const duration = current.expiresAt - current.since;
      const renewAt = retryAt ?? current.since + (duration * 2) / 3;
      const checkEvery = Math.min(MAX_CHECK_MS, Math.max(MIN_CHECK_MS, duration / 6));
      const now = deps.now();
      if (now < renewAt) {
        await wait(Math.min(renewAt, now + checkEvery) - now);
        if (signal.aborted) break;
        if (deps.now() < renewAt) {
          const why = await stoppedWorking(current);
          if (why) {
            retryAt = undefined;
            current = await rotate(current, why);
          }
          continue;
        }
      }
      retryAt = undefined;
      if (!current.renewable) {
        current = await rotate(current, 'it reaches its max TTL');
        continue;
      }
      const started = deps.now();
      try {
        const { lease, capped } = await service.renew(current.lease.lease_id);
        failures = 0;
        current = { ...current, expiresAt: Date.parse(lease.expires_at), renewable: lease.renewable, since: started };
        emit({ event: 'renewed', lease_id: lease.lease_id, expires_at: lease.expires_at, capped: capped || !lease.renewable, ms: deps.now() - started });
      } catch (error) {
        if (error instanceof SyError && STOPPED.has(error.code)) {
          current = await rotate(current, error.message);
          continue;
        }
        if (!transient(error)) {
          current = await rotate(current, `its renewal was refused: ${message(error)}`);
          continue;
        }
        failures++;
        if (deps.now() >= current.expiresAt) {
          current = await rotate(current, 'it expired while it could not be renewed');
          continue;
        }
        const delay = Math.min(backoffMs(failures), Math.max(MIN_CHECK_MS, current.expiresAt - deps.now()));
        emit({ event: 'retry', action: 'renew', lease_id: current.lease.lease_id, error: message(error), delay_ms: delay });
        retryAt = deps.now() + delay;
      }
    }
  }

  // Stopped: the old leases finish draining at once, and the current one goes too.
  if (current && !retiring.has(current.lease.lease_id)) {
    const id = current.lease.lease_id;
    track(
      id,
      service.revoke(id).then(
        () => (emit({ event: 'revoked', lease_id: id, reason: 'agent stopped' }), true),
        (error) => (emit({ event: 'retry', action: 'revoke', lease_id: id, error: `${message(error)} (left to the sweep)`, delay_ms: 0 }), false),
      ),
    );
  }
  await Promise.all(retiring.values());
  return { ...settled };
}
