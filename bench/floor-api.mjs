// The floor of the lease API's throughput (row 13c): pg used directly, no sy code, over
// `connections` warm connections, each making `perConnection` users one after another, all
// connections at once. Each user gets what sy gives a lease of a recipe granting SELECT on
// one table (src/targets/postgres/create.ts), in one transaction and one round trip:
// CREATE ROLE ... LOGIN NOINHERIT PASSWORD ... VALID UNTIL, COMMENT ON ROLE, GRANT CONNECT ON
// DATABASE, GRANT USAGE ON SCHEMA, GRANT SELECT ON TABLE. It skips sy's catalog checks
// (store schema, has_table_privilege) and sends the password for the server to hash (sy sends
// the SCRAM verifier it computed itself: the same work, on the other side of the socket).
import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** Opens the connections (untimed); `run` makes the users (timed by the caller); `drop` removes them. */
export async function pgFloor({ target, schema, table, prefix, connections }) {
  const clients = [];
  for (let i = 0; i < connections; i++) {
    const client = new pg.Client({ host: target.host, port: target.port, user: target.user, password: target.password, database: target.database });
    client.on('error', () => undefined);
    await client.connect();
    clients.push(client);
  }
  const id = pg.escapeIdentifier;
  const lit = pg.escapeLiteral;
  const made = [];
  let retries = 0;
  const createOne = async (client) => {
    const name = `${prefix}${randomBytes(5).toString('hex')}_fa`;
    const expires = new Date(Date.now() + 600_000).toISOString();
    // Concurrent GRANTs on one object fail with "tuple concurrently updated" (PostgreSQL takes
    // no lock for them): any script must roll back and try again, as sy does (same backoff;
    // sy gives up after 12 tries, the floor after 30, so that it always finishes).
    for (let attempt = 1; ; attempt++) {
      try {
        await client.query(
      `BEGIN;
       CREATE ROLE ${id(name)} WITH LOGIN NOINHERIT PASSWORD ${lit(randomBytes(24).toString('base64url'))} VALID UNTIL ${lit(expires)};
       COMMENT ON ROLE ${id(name)} IS ${lit(`managed by sy; reap after ${expires}`)};
       GRANT CONNECT ON DATABASE ${id(target.database)} TO ${id(name)};
       GRANT USAGE ON SCHEMA ${id(schema)} TO ${id(name)};
       GRANT SELECT ON TABLE ${id(schema)}.${id(table)} TO ${id(name)};
       COMMIT`,
        );
        break;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        const retryable = ['40001', '40P01'].includes(error.code) || (error.code === 'XX000' && /tuple concurrently/.test(error.message));
        if (!retryable || attempt >= 30) throw error;
        retries++;
        await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20 * attempt));
      }
    }
    made.push(name);
  };
  return {
    /**
     * The same with a new connection for each user (connect, create, end), as sy opens one
     * to the target for each lease: what the warm connections save (reported, not the floor).
     */
    async runFresh(perConnection) {
      await settleAll(clients.map(async () => {
        for (let i = 0; i < perConnection; i++) {
          const client = new pg.Client({ host: target.host, port: target.port, user: target.user, password: target.password, database: target.database });
          client.on('error', () => undefined);
          await client.connect();
          try {
            await createOne(client);
          } finally {
            await client.end().catch(() => undefined);
          }
        }
      }));
    },
    /** Every connection makes `perConnection` users in turn; resolves when all are made. */
    async run(perConnection) {
      await settleAll(clients.map(async (client) => {
        for (let i = 0; i < perConnection; i++) await createOne(client);
      }));
    },
    /** Drops the users made so far (untimed), a hundred per statement. */
    async drop() {
      const names = made.splice(0);
      for (let i = 0; i < names.length; i += 100) {
        const list = names.slice(i, i + 100).map(id).join(', ');
        await clients[0].query(`DROP OWNED BY ${list}; DROP ROLE ${list}`);
      }
    },
    /** Transactions tried again after a concurrent update. */
    retries: () => retries,
    async close() {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    },
  };
}

/** Like Promise.all, but waits for every worker before throwing: no statement outlives a failure. */
async function settleAll(promises) {
  const failed = (await Promise.allSettled(promises)).find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
}
