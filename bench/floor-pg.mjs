#!/usr/bin/env node
// The floor of `sy dynamic lease create` / `lease revoke` on PostgreSQL: the least a script
// can do with the same driver (pg). Connection and names come from BENCH_TARGET (JSON:
// host, port, user, password, database, schema, prefix).
//
//   node bench/floor-pg.mjs create [ttl]   connect, CREATE ROLE ... PASSWORD ... VALID UNTIL,
//                                          GRANT CONNECT / USAGE / SELECT, print JSON, exit
//   node bench/floor-pg.mjs revoke <user>  connect, terminate the user's sessions, drop it
import { randomBytes } from 'node:crypto';
import pg from 'pg';

const target = JSON.parse(process.env.BENCH_TARGET);
const [action, arg] = process.argv.slice(2);
const client = new pg.Client({ host: target.host, port: target.port, user: target.user, password: target.password, database: target.database });
await client.connect();
const id = pg.escapeIdentifier;
if (action === 'create') {
  const username = `${target.prefix}${randomBytes(5).toString('hex')}_fl`;
  const password = randomBytes(24).toString('base64url');
  const expires = new Date(Date.now() + Number(arg ?? 600) * 1000).toISOString();
  await client.query(
    `BEGIN;
     CREATE ROLE ${id(username)} WITH LOGIN PASSWORD ${pg.escapeLiteral(password)} VALID UNTIL ${pg.escapeLiteral(expires)};
     GRANT CONNECT ON DATABASE ${id(target.database)} TO ${id(username)};
     GRANT USAGE ON SCHEMA ${id(target.schema)} TO ${id(username)};
     GRANT SELECT ON ALL TABLES IN SCHEMA ${id(target.schema)} TO ${id(username)};
     COMMIT`,
  );
  process.stdout.write(`${JSON.stringify({ username, password, host: target.host, port: target.port, database: target.database, expires_at: expires })}\n`);
} else if (action === 'revoke') {
  await client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [arg]);
  await client.query(`DROP OWNED BY ${id(arg)}; DROP ROLE ${id(arg)}`);
  process.stdout.write(`${JSON.stringify({ username: arg, revoked: true })}\n`);
} else {
  throw new Error('usage: floor-pg.mjs create [ttl] | revoke <user>');
}
await client.end();
