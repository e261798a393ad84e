import type { Engine } from '../model/engines.js';
import type { IssuedLease } from '../io/lease-view.js';
import type { SessionCount } from './loop.js';

/**
 * How many sessions a lease's user holds, asked as that user: it needs no admin and works the
 * same on a store and through a pool's server (the agent holds the lease's password, which
 * is all it takes). A user sees its own sessions in pg_stat_activity and in the MySQL
 * process list without any privilege. The probe's own session is not counted; a refused
 * login means the user is gone (dropped, or past its VALID UNTIL).
 *
 * The probe trusts the server as the lease's clients do: TLS as the connection string says,
 * verified against the system's CAs. Where that cannot succeed (a private CA), it cannot
 * count, and the agent revokes at the drain deadline.
 */
const PROBE_TIMEOUT_MS = 5_000;

interface Prober {
  count(lease: IssuedLease): Promise<number>;
  /** The driver's error means the user cannot log in. */
  refused(error: unknown): boolean;
}

const tlsMode = (lease: IssuedLease): string | undefined =>
  /[?&](?:sslmode|ssl-mode)=([A-Za-z_-]+)/.exec(lease.connection_string)?.[1]?.toLowerCase();

const PROBERS: Record<Engine, Prober> = {
  postgresql: {
    async count(lease) {
      const { default: pg } = await import('pg');
      const mode = tlsMode(lease);
      const client = new pg.Client({
        host: lease.host,
        port: lease.port,
        user: lease.username,
        password: lease.password,
        database: lease.database ?? undefined,
        ssl: mode === undefined ? false : mode === 'require' ? { rejectUnauthorized: false } : { rejectUnauthorized: true },
        connectionTimeoutMillis: PROBE_TIMEOUT_MS,
        query_timeout: PROBE_TIMEOUT_MS,
        application_name: 'sy agent probe',
      });
      client.on('error', () => undefined);
      try {
        await client.connect();
        const { rows } = await client.query(
          'SELECT pg_catalog.count(*)::int AS n FROM pg_catalog.pg_stat_activity WHERE usename OPERATOR(pg_catalog.=) current_user AND pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()',
        );
        return Number(rows[0].n);
      } finally {
        await client.end().catch(() => undefined);
      }
    },
    // Class 28: invalid authorization (no such role, bad or expired password, NOLOGIN).
    refused: (error) => /^28/.test(String((error as { code?: string })?.code ?? '')),
  },
  mysql: {
    async count(lease) {
      // The package itself, not mysql2/promise: the bundle vendors `mysql2` into a file of its
      // own, loaded only here and by MySQL targets (scripts/bundle.mjs).
      const { default: mysql } = await import('mysql2');
      const mode = tlsMode(lease);
      const core = mysql.createConnection({
        host: lease.host,
        port: lease.port,
        user: lease.username,
        password: lease.password,
        database: lease.database ?? undefined,
        ssl: mode === undefined ? undefined : mode === 'required' ? { rejectUnauthorized: false } : { rejectUnauthorized: true },
        connectTimeout: PROBE_TIMEOUT_MS,
      });
      core.on('error', () => undefined);
      const connection = core.promise();
      try {
        await connection.connect();
        const [rows] = await connection.query(
          "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE USER = SUBSTRING_INDEX(CURRENT_USER(), '@', 1) AND ID <> CONNECTION_ID()",
        );
        return Number((rows as { n: number }[])[0].n);
      } finally {
        await connection.end().catch(() => undefined);
      }
    },
    // Access denied, or the account is locked.
    refused: (error) => [1044, 1045, 4151].includes(Number((error as { errno?: number })?.errno)),
  },
};

/** The lease user's other sessions, 'gone' when it can no longer log in; throws when it cannot tell. */
export async function leaseSessions(lease: IssuedLease): Promise<SessionCount> {
  const prober = PROBERS[lease.engine as Engine];
  try {
    return await prober.count(lease);
  } catch (error) {
    if (prober.refused(error)) return 'gone';
    throw error;
  }
}
