#!/usr/bin/env node
// Sets up many real, soon-expiring leases for the sweep benchmark, fast. What the sweep
// then finds is what `sy dynamic lease create --ttl 2` would have left: a ledger row per lease
// (recorded through sy's store layer, intent then active, revocation snapshot sealed) and a
// real user on the server, named by sy's own newUserName and created with the statements
// sy's targets use (PostgreSQL: CREATE ROLE ... LOGIN NOINHERIT PASSWORD <SCRAM verifier>
// VALID UNTIL, COMMENT, GRANT CONNECT/USAGE/SELECT; MariaDB: CREATE USER ... IDENTIFIED BY
// PASSWORD <hash>, GRANT SELECT). The only difference: users are created a hundred per
// transaction/statement instead of one process and one commit each, because creating roles
// one by one costs ~40 ms each here and the sweep, not the creation, is what is measured.
//
// --path may be given several times: the leases take the recipes in turn. (PostgreSQL keeps a
// table's grants in its pg_class row, which has no TOAST: about a thousand roles granted on one
// table fill it, "row is too big", so thousands of leases need their grants spread over tables.)
// With --spread S the expiries are spread evenly over S seconds after the TTL; with --ids
// the output lists each lease's id and expiry (milliseconds), for measuring delays. With
// --after-issue the TTL counts from the end of issuing, however long the machine takes: the
// expiries are set when the leases become active (as a renewal sets them), from an estimate
// of how long activating them all takes (half again as long as recording the intents did).
//
//   SY_HOME=... (or SY_STORE=...) SY_MASTER_KEY=... node bench/issue-leases.mjs --path P --count N [--ttl 2] [--spread S] [--ids]
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    path: { type: 'string', multiple: true },
    count: { type: 'string', default: '1' },
    ttl: { type: 'string', default: '2' },
    chunk: { type: 'string', default: '100' },
    spread: { type: 'string', default: '0' },
    ids: { type: 'boolean', default: false },
    'after-issue': { type: 'boolean', default: false },
  },
});
if (!(process.env.SY_HOME || process.env.SY_STORE) || !process.env.SY_MASTER_KEY || !values.path?.length) throw new Error('set SY_HOME or SY_STORE, SY_MASTER_KEY and --path');
const dist = (file) => new URL(`../dist/${file}`, import.meta.url).href;
const { openBenchStore, inBatch } = await import(new URL('./store.mjs', import.meta.url).href);
const { parseBaseConnection, parseDynamicRecipe } = await import(dist('secrets/validate.js'));
const { engineOfType } = await import(dist('model/engines.js'));
const { newUserName, newPassword } = await import(dist('targets/names.js'));
const { targetLabel } = await import(dist('leases/connection.js'));
const { REAP_GRACE_MS } = await import(dist('leases/deps.js'));

const count = Number(values.count);
const chunk = Number(values.chunk);
const started = Date.now();
const store = await openBenchStore();
const stores = store.kind === 'sqlite' ? [store] : [store, ...(await Promise.all([1, 2, 3].map(() => openBenchStore())))];

let lastExpiry = 0;
let leases = [];
/** When the last lease became active: a lease is fairly timed only if that was before its expiry. */
let activatedAt = 0;
try {
  // Each --path is a recipe; leases take them in turn.
  const recipes = [];
  for (const path of values.path) {
    const secret = await store.secrets.get({ path });
    if (!secret) throw new Error(`no secret at ${path}`);
    const base = await store.secrets.get({ path: secret.attributes.linkConfig.linkedSecret });
    const engine = engineOfType(base.attributes.type);
    const connection = parseBaseConnection(base.attributes, base.data);
    recipes.push({ secret, base, engine, connection, recipe: parseDynamicRecipe(secret.attributes, secret.data, engine), target: targetLabel(connection) });
  }
  const createdAt = Date.now();
  const spreadMs = Number(values.spread) * 1000;
  const expiryOf = (from, i) => from + Number(values.ttl) * 1000 + (count > 1 ? Math.round((spreadMs * i) / (count - 1)) : 0);
  leases = Array.from({ length: count }, (_, i) => {
    const kind = recipes[i % recipes.length];
    return {
      kind,
      id: randomUUID(),
      // With --after-issue, a placeholder an hour out (within any maxTtl sy accepts for these recipes).
      expiresAt: values['after-issue'] ? createdAt + Math.min(3600, kind.recipe.maxTtl) * 1000 : expiryOf(createdAt, i),
      maxExpiresAt: createdAt + kind.recipe.maxTtl * 1000,
      username: newUserName(kind.engine, new Date(createdAt + kind.recipe.maxTtl * 1000 + REAP_GRACE_MS), kind.recipe.userPrefix),
      password: newPassword(),
    };
  });
  lastExpiry = Math.max(...leases.map((l) => l.expiresAt));

  // 1. Intents, as sy records them before a user exists.
  for (let i = 0; i < count; i += 1000) {
    await inBatch(stores, leases.slice(i, i + 1000).map(({ kind, ...lease }) => (s) => s.leases.recordIntent({
      id: lease.id, secretId: kind.secret.id, baseId: kind.base.id, path: kind.secret.path, pool: kind.recipe.pool, engine: kind.engine, target: kind.target,
      username: lease.username, createdAt, expiresAt: lease.expiresAt, maxExpiresAt: lease.maxExpiresAt, ownerPid: process.pid, ownerHost: hostname(),
      revocation: { connection: { ...kind.connection }, username: lease.username, revocationStatements: kind.recipe.revocationStatements },
    })));
  }

  const intentsMs = Date.now() - createdAt;

  // 2. The users, recipe by recipe.
  for (const kind of recipes) {
    const mine = leases.filter((l) => l.kind === kind);
    const { connection, recipe } = kind;
    if (kind.engine === 'postgresql') {
      const { default: pg } = await import('pg');
      const { scramSha256Verifier } = await import(dist('targets/scram.js'));
      const { parseManagedName } = await import(dist('targets/names.js'));
      const client = new pg.Client({ host: connection.host, port: connection.port, user: connection.username, password: connection.password, database: connection.database ?? 'postgres' });
      await client.connect();
      const id = pg.escapeIdentifier;
      const lit = pg.escapeLiteral;
      const until = new Date(lastExpiry).toISOString();
      for (let i = 0; i < mine.length; i += chunk) {
        const statements = ['BEGIN'];
        for (const { username, password } of mine.slice(i, i + chunk)) {
          const name = id(username);
          statements.push(
            `CREATE ROLE ${name} WITH LOGIN NOINHERIT PASSWORD ${lit(scramSha256Verifier(password))} VALID UNTIL ${lit(until)}`,
            `COMMENT ON ROLE ${name} IS ${lit(`managed by sy; reap after ${parseManagedName(username).reapAfter.toISOString()}`)}`,
            `GRANT CONNECT ON DATABASE ${id(connection.database ?? 'postgres')} TO ${name}`,
          );
          for (const grant of recipe.grants) {
            statements.push(`GRANT USAGE ON SCHEMA ${id(grant.schema)} TO ${name}`);
            statements.push(grant.table === '*'
              ? `GRANT ${grant.privileges.join(', ')} ON ALL TABLES IN SCHEMA ${id(grant.schema)} TO ${name}`
              : `GRANT ${grant.privileges.join(', ')} ON TABLE ${id(grant.schema)}.${id(grant.table)} TO ${name}`);
          }
        }
        statements.push('COMMIT');
        await client.query(statements.join(';\n'));
      }
      await client.end();
    } else {
      const { default: mysql } = await import('mysql2/promise');
      const { nativePasswordHash } = await import(dist('targets/mysql.js'));
      const conn = await mysql.createConnection({ host: connection.host, port: connection.port, user: connection.username, password: connection.password, database: connection.database });
      for (let i = 0; i < mine.length; i += chunk) {
        const some = mine.slice(i, i + chunk);
        await conn.query(`CREATE USER ${some.map((l) => `${mysql.escape(l.username)}@'%' IDENTIFIED BY PASSWORD ${mysql.escape(nativePasswordHash(l.password))}`).join(', ')}`);
        for (const grant of recipe.grants) {
          const on = grant.schema === '*' ? '*.*' : `${mysql.escapeId(grant.schema)}.${grant.table === '*' ? '*' : mysql.escapeId(grant.table)}`;
          await conn.query(`GRANT ${grant.privileges.join(', ')} ON ${on} TO ${some.map((l) => `${mysql.escape(l.username)}@'%'`).join(', ')}`);
        }
      }
      await conn.end();
    }
  }

  // 3. Active, as sy marks them once the user exists.
  if (values['after-issue']) {
    const from = Date.now() + Math.round(1.5 * intentsMs);
    leases.forEach((lease, i) => (lease.expiresAt = expiryOf(from, i)));
    lastExpiry = Math.max(...leases.map((l) => l.expiresAt));
  }
  for (let i = 0; i < count; i += 1000) {
    await inBatch(stores, leases.slice(i, i + 1000).map((lease) => (s) =>
      s.leases.transition(lease.id, ['intent'], 'active', values['after-issue'] ? { expiresAt: lease.expiresAt } : {})));
  }
  activatedAt = Date.now();
} finally {
  for (const s of stores) await s.close();
}
const listed = values.ids ? { leases: leases.map((l) => [l.id, l.expiresAt]) } : {};
process.stdout.write(`${JSON.stringify({ issued: count, lastExpiry, activatedAt, ms: Date.now() - started, ...listed })}\n`);
