#!/usr/bin/env node
// The floor of `sy dynamic lease create` / `lease revoke` on MariaDB/MySQL: the least a
// script can do with the same driver (mysql2/promise). Connection and names come from
// BENCH_TARGET (JSON: host, port, user, password, database, prefix).
//
//   node bench/floor-mysql.mjs create      connect, CREATE USER ... IDENTIFIED BY, GRANT SELECT ON db.*, print JSON, exit
//   node bench/floor-mysql.mjs revoke <u>  connect, kill the user's sessions, DROP USER
import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';

const target = JSON.parse(process.env.BENCH_TARGET);
const [action, arg] = process.argv.slice(2);
const connection = await mysql.createConnection({ host: target.host, port: target.port, user: target.user, password: target.password, database: target.database });
if (action === 'create') {
  const username = `${target.prefix}${randomBytes(5).toString('hex')}_fl`;
  const password = randomBytes(24).toString('base64url');
  await connection.query("CREATE USER ?@'%' IDENTIFIED BY ?", [username, password]);
  await connection.query(`GRANT SELECT ON ${mysql.escapeId(target.database)}.* TO ?@'%'`, [username]);
  process.stdout.write(`${JSON.stringify({ username, password, host: target.host, port: target.port, database: target.database })}\n`);
} else if (action === 'revoke') {
  const [sessions] = await connection.query('SELECT id FROM information_schema.processlist WHERE user = ? AND id <> CONNECTION_ID()', [arg]);
  for (const { id } of sessions) await connection.query(`KILL CONNECTION ${Number(id)}`).catch(() => undefined);
  await connection.query("DROP USER IF EXISTS ?@'%'", [arg]);
  process.stdout.write(`${JSON.stringify({ username: arg, revoked: true })}\n`);
} else {
  throw new Error('usage: floor-mysql.mjs create | revoke <user>');
}
await connection.end();
