import type { Store } from '../store/store.js';
import { isLiveMember } from '../leases/pool.js';
import type { DaemonEvent } from './loop.js';
import type { ApiRequestEvent } from './api/server.js';

/** The most live leases the gauge reads at one scrape. */
const GAUGE_LIMIT = 100_000;

export interface DaemonMetrics {
  observe(event: DaemonEvent): void;
  request(event: ApiRequestEvent): void;
  issued(lease: { pool?: string; engine: string }): void;
  render(): Promise<{ contentType: string; text: string }>;
}

/**
 * `/metrics` in Prometheus's text format (prom-client, loaded only by `sy daemon --listen`).
 * Counters are this daemon's; gauges are read from the store at each scrape, so any daemon
 * of the pool reports the same leases and live daemons. Labels name states, pools, engines,
 * routes and outcomes: never a secret, path or user.
 */
export async function createMetrics(store: Store): Promise<DaemonMetrics> {
  const prom = await import('prom-client');
  const registry = new prom.Registry();
  const registers = [registry];

  new prom.Gauge({
    name: 'sy_leases',
    help: 'Leases not yet ended, by state (intent, active, revoking, failed), pool and engine.',
    labelNames: ['state', 'pool', 'engine'],
    registers,
    async collect() {
      this.reset();
      const leases = await store.leases.list({ limit: GAUGE_LIMIT });
      const counts = new Map<string, { state: string; pool: string; engine: string; n: number }>();
      for (const lease of leases) {
        const key = `${lease.state}\0${lease.pool}\0${lease.engine}`;
        const entry = counts.get(key) ?? { state: lease.state, pool: lease.pool, engine: lease.engine, n: 0 };
        entry.n++;
        counts.set(key, entry);
      }
      for (const { state, pool, engine, n } of counts.values()) this.set({ state, pool, engine }, n);
    },
  });
  new prom.Gauge({
    name: 'sy_daemons_live',
    help: 'Daemons that heartbeat in the store, by the pool they serve ("*": every pool).',
    labelNames: ['pool'],
    registers,
    async collect() {
      this.reset();
      const now = Date.now();
      const counts = new Map<string, number>();
      for (const member of await store.pools.list()) {
        if (!isLiveMember(member, now)) continue;
        const pool = member.pool ?? '*';
        counts.set(pool, (counts.get(pool) ?? 0) + 1);
      }
      for (const [pool, n] of counts) this.set({ pool }, n);
    },
  });
  const created = new prom.Counter({ name: 'sy_leases_created_total', help: 'Leases this daemon issued through the API, by pool and engine.', labelNames: ['pool', 'engine'], registers });
  const revocations = new prom.Counter({ name: 'sy_revocations_total', help: 'Revocations by this daemon, by outcome (revoked, failed).', labelNames: ['outcome'], registers });
  const delay = new prom.Histogram({
    name: 'sy_revocation_delay_seconds',
    help: 'How long after its expiry a lease was revoked.',
    buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300],
    registers,
  });
  const passes = new prom.Histogram({ name: 'sy_revocation_pass_seconds', help: 'How long a revocation pass took.', buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 30], registers });
  const requests = new prom.Counter({ name: 'sy_http_requests_total', help: 'API requests, by route and status.', labelNames: ['method', 'route', 'status'], registers });
  const durations = new prom.Histogram({
    name: 'sy_http_request_duration_seconds',
    help: 'API request durations, by route.',
    labelNames: ['method', 'route'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers,
  });

  return {
    observe(e) {
      if (e.event === 'revoked') {
        revocations.inc({ outcome: 'revoked' });
        if (e.delay_ms !== undefined) delay.observe(e.delay_ms / 1000);
      } else if (e.event === 'revoke_failed') revocations.inc({ outcome: 'failed' });
      else if (e.event === 'pass' && e.duration_ms !== undefined) passes.observe(e.duration_ms / 1000);
    },
    request(e) {
      requests.inc({ method: e.method, route: e.route, status: String(e.status) });
      durations.observe({ method: e.method, route: e.route }, e.duration_ms / 1000);
    },
    issued(lease) {
      created.inc({ pool: lease.pool ?? 'default', engine: lease.engine });
    },
    async render() {
      return { contentType: registry.contentType, text: await registry.metrics() };
    },
  };
}
