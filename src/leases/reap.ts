import type { AuditEvent } from '../audit/chain.js';
import { SyError } from '../errors.js';
import { kindOf, parseBaseConnection } from '../secrets/validate.js';
import type { BaseConnection } from '../model/secret.js';
import type { ManagedUser, Target } from '../targets/target.js';
import { targetLabel } from './connection.js';
import { CONNECT_TIMEOUT_MS, type LeaseDeps, VALID_UNTIL_GRACE_MS } from './deps.js';
import { errorText } from './issue.js';
import { mapConcurrently } from './revoke.js';

export interface ReapError {
  target: string;
  /** The user that could not be dropped; absent when the server itself failed. */
  db_user?: string;
  error: string;
  /** True only when the server could not be reached at all. */
  unreachable: boolean;
}

export interface ReapReport {
  /** Users this pass dropped (seen gone afterwards). */
  reaped: number;
  targets: number;
  errors: ReapError[];
}

export interface ReapOptions {
  connectTimeoutMs?: number;
  /** Give up on servers still busy after this long; their orphans wait for the next pass. */
  budgetMs?: number;
}

const PARALLEL_SERVERS = 8;

/**
 * The orphan reaper: on the server of every base secret, drops the users that carry sy's
 * name marker, are not live in this ledger, and are past their bound by the server's own
 * clock: the bound written in their name (the max TTL plus a grace), or on PostgreSQL their
 * VALID UNTIL (the lease's current expiry) plus a grace. No lease of any store can be live
 * past either, so this is safe for users that other sy stores created on a shared server.
 * Servers are reaped in parallel and user by user: one user that cannot be dropped is
 * reported by name and never keeps the others.
 */
export async function reapOrphans(deps: LeaseDeps, options: ReapOptions = {}): Promise<ReapReport> {
  const servers = await baseServers(deps);
  const live = await deps.store.leases.liveUsernames();
  const deadline = options.budgetMs === undefined ? undefined : deps.now() + options.budgetMs;
  const perServer = await mapConcurrently(servers, PARALLEL_SERVERS, (admins) => reapServer(deps, admins, live, options, deadline));
  const report: ReapReport = { reaped: 0, targets: servers.length, errors: [] };
  for (const part of perServer) {
    report.reaped += part.reaped;
    report.errors.push(...part.errors);
  }
  return report;
}

/**
 * The servers (engine, host and port) the base secrets name, each with every admin that the
 * store holds for it: what one admin may not drop, another may.
 */
async function baseServers(deps: LeaseDeps): Promise<BaseConnection[][]> {
  const secrets = await deps.store.secrets.search({ query: '', limit: 100_000 });
  const servers = new Map<string, BaseConnection[]>();
  for (const metadata of secrets) {
    if (kindOf(metadata.attributes) !== 'base') continue;
    const base = await deps.store.secrets.get({ id: metadata.id });
    if (!base) continue;
    try {
      const connection = parseBaseConnection(base.attributes, base.data);
      const key = `${connection.engine}\u0000${connection.host.toLowerCase()}\u0000${connection.port}`;
      const admins = servers.get(key) ?? [];
      if (!admins.some((a) => a.username === connection.username && a.database === connection.database)) admins.push(connection);
      servers.set(key, admins);
    } catch {
      // A base secret that does not parse names no server to reap.
    }
  }
  return [...servers.values()];
}

async function reapServer(
  deps: LeaseDeps,
  admins: BaseConnection[],
  live: Set<string>,
  options: ReapOptions,
  deadline: number | undefined,
): Promise<{ reaped: number; errors: ReapError[] }> {
  const label = targetLabel(admins[0]);
  const controller = new AbortController();
  const timer = deadline === undefined ? undefined : setTimeout(() => controller.abort(), Math.max(0, deadline - deps.now()));
  const events: AuditEvent[] = [];
  let serverErrors: ReapError[] = [];
  let pending: ManagedUser[] | undefined;
  let userErrors = new Map<string, string>();
  let reaped = 0;
  try {
    for (const connection of admins) {
      if (pending !== undefined && pending.length === 0) break;
      let client: Target | undefined;
      try {
        deps.progress?.(`Looking for orphaned users on ${connection.host}:${connection.port}`);
        client = await deps.connect(connection, { connectTimeoutMs: options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS, signal: controller.signal });
        if (pending === undefined) {
          const { serverNow, users } = await client.listManagedUsers();
          pending = users.filter((u) => !live.has(u.username) && pastBound(u, serverNow.getTime()));
        }
        if (pending.length === 0) break;
        const bounds = new Map(pending.map((u) => [u.username, u]));
        const result = await client.revokeUsers(pending.map((u) => u.username));
        reaped += result.dropped.length;
        for (const username of result.dropped) {
          const user = bounds.get(username)!;
          const detail: Record<string, string> = { reap_after: user.reapAfter.toISOString() };
          if (user.validUntil) detail.valid_until = user.validUntil.toISOString();
          events.push({ action: 'reaper.drop', db_user: username, target: label, outcome: 'success', detail });
        }
        // What this admin could not drop is left to the next admin of the same server.
        userErrors = new Map(result.failed.map((f) => [f.username, f.error.message]));
        pending = pending.filter((u) => userErrors.has(u.username));
        serverErrors = [];
      } catch (error) {
        const unreachable = controller.signal.aborted || (error instanceof SyError && error.code === 'target_unreachable');
        const message = controller.signal.aborted ? `the reaper's budget ran out before ${label} answered` : errorText(error);
        serverErrors = [{ target: label, error: message, unreachable }];
        if (controller.signal.aborted) break;
      } finally {
        await client?.close().catch(() => undefined);
      }
    }
  } finally {
    if (timer) clearTimeout(timer);
  }
  const errors: ReapError[] = [...serverErrors];
  for (const user of pending ?? []) {
    const error = userErrors.get(user.username);
    if (error === undefined) continue;
    errors.push({ target: label, db_user: user.username, error, unreachable: false });
  }
  for (const e of errors) events.push({ action: 'reaper.drop', db_user: e.db_user, target: label, outcome: 'failure', error: e.error });
  if (events.length > 0) await deps.store.audit.append(events);
  return { reaped, errors };
}

function pastBound(user: ManagedUser, serverNow: number): boolean {
  if (user.reapAfter.getTime() <= serverNow) return true;
  return user.validUntil !== undefined && user.validUntil.getTime() + VALID_UNTIL_GRACE_MS <= serverNow;
}
