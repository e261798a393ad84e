#!/usr/bin/env node
// The floor of `sy dynamic sweep` (rows 5a/5b): the least a script can do, with the same
// drivers (pg, mysql2) and no sy code, to really revoke N users like the ones the sweep row
// revokes. Connection and names come from BENCH_TARGET (JSON: host, port, user, password,
// database, schema (PostgreSQL), prefix).
//
//   node bench/floor-revoke.mjs create <postgresql|mariadb> <count>
//       Untimed set-up: creates <count> users named <prefix>fl<4 hex>_<n>, shaped as
//       bench/issue-leases.mjs shapes the sweep's (PostgreSQL: LOGIN NOINHERIT, a SCRAM
//       verifier, VALID UNTIL in 2 s, a COMMENT, CONNECT on the database, USAGE on the
//       schema, SELECT on all its tables; MariaDB: <name>@'%' with a password, SELECT on
//       <database>.*), a hundred per transaction/statement. Prints {"users": [...]}.
//   node bench/floor-revoke.mjs drop <postgresql|mariadb>  < {"users": [...]}
//       The timed part: connects once and revokes them all.
//       PostgreSQL, one round trip, one transaction: pg_terminate_backend on every session of
//       the roles (waiting up to 5 s, as sy does), one REVOKE ALL each on their tables, the
//       schema and the database naming all the roles, DROP OWNED BY all, DROP ROLE all.
//       MariaDB, one round trip: DROP USER of all, then the processlist lookup of their
//       sessions (a KILL for each found; none normally).
//   node bench/floor-revoke.mjs clean <postgresql|mariadb>
//       Drops every user whose name starts with <prefix>fl, whatever state it is in.
//
// create and drop clean up after themselves when they fail: no user they made survives an
// error (run.mjs also drops everything starting with its prefix at the end).
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import mysql from 'mysql2/promise';
import pg from 'pg';

const target = JSON.parse(process.env.BENCH_TARGET ?? '{}');
const [action, engine, countArg] = process.argv.slice(2);
if (!['create', 'drop', 'clean'].includes(action) || !['postgresql', 'mariadb'].includes(engine)) {
  throw new Error('usage: floor-revoke.mjs create <postgresql|mariadb> <count> | drop <engine> < users.json | clean <engine>');
}
if (!target.host || !target.database || !target.prefix) throw new Error('set BENCH_TARGET (host, port, user, password, database, schema, prefix)');
const MINE = `${target.prefix}fl`;
const CHUNK = 100;
const id = pg.escapeIdentifier;
const lit = pg.escapeLiteral;

async function pgConnect() {
  const client = new pg.Client({ host: target.host, port: target.port, user: target.user, password: target.password, database: target.database });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

async function myConnect() {
  const connection = await mysql.createConnection({ host: target.host, port: target.port, user: target.user, password: target.password, multipleStatements: true });
  connection.on('error', () => undefined);
  return connection;
}

/** A SCRAM-SHA-256 verifier (RFC 5802/7677), as PostgreSQL stores it; computed once per create. */
function scramVerifier(password) {
  const salt = randomBytes(16);
  const salted = pbkdf2Sync(password, salt, 4096, 32, 'sha256');
  const hmac = (key, text) => createHmac('sha256', key).update(text).digest();
  const storedKey = createHash('sha256').update(hmac(salted, 'Client Key')).digest();
  return `SCRAM-SHA-256$4096:${salt.toString('base64')}$${storedKey.toString('base64')}:${hmac(salted, 'Server Key').toString('base64')}`;
}

const account = (name) => `${mysql.escape(name)}@'%'`;

// ------------------------------------------------------------------ clean-up

/** Drops those of `names` (or, without names, every user starting with MINE) that exist. */
async function dropLeftovers(names) {
  if (engine === 'postgresql') {
    const client = await pgConnect();
    try {
      const { rows } = names
        ? await client.query('SELECT rolname FROM pg_roles WHERE rolname = ANY($1::text[])', [names])
        : await client.query('SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)', [MINE]);
      const left = rows.map((r) => r.rolname);
      for (let i = 0; i < left.length; i += CHUNK) {
        const some = left.slice(i, i + CHUNK);
        await client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY($1::text[])', [some]);
        // DROP OWNED here also revokes CONNECT on the database (a shared object).
        await client.query(`BEGIN; DROP OWNED BY ${some.map(id).join(', ')}; DROP ROLE IF EXISTS ${some.map(id).join(', ')}; COMMIT`);
      }
      return left.length;
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  const connection = await myConnect();
  try {
    const [rows] = names
      ? await connection.query("SELECT User AS user FROM mysql.user WHERE Host = '%' AND User IN (?)", [names.length ? names : ['']])
      : await connection.query("SELECT User AS user FROM mysql.user WHERE Host = '%' AND LEFT(User, ?) = ?", [MINE.length, MINE]);
    const left = rows.map((r) => String(r.user));
    for (let i = 0; i < left.length; i += CHUNK) {
      await connection.query(`DROP USER IF EXISTS ${left.slice(i, i + CHUNK).map(account).join(', ')}`);
    }
    return left.length;
  } finally {
    await connection.end().catch(() => connection.destroy());
  }
}

/** Runs `work`; when it fails, drops what it may have left before failing. */
async function orCleanUp(names, work) {
  try {
    return await work();
  } catch (error) {
    try {
      const dropped = await dropLeftovers(names);
      process.stderr.write(`floor-revoke ${action}: failed, dropped the ${dropped} users left\n`);
    } catch (cleanupError) {
      process.stderr.write(`floor-revoke ${action}: failed, and cleaning up failed too: ${cleanupError.message}\n`);
    }
    throw error;
  }
}

// ------------------------------------------------------------------ create (untimed)

async function create(count) {
  const batch = randomBytes(2).toString('hex');
  const users = Array.from({ length: count }, (_, i) => `${MINE}${batch}_${i}`);
  const password = randomBytes(24).toString('base64url');
  await orCleanUp(users, async () => {
    if (engine === 'postgresql') {
      const client = await pgConnect();
      try {
        const verifier = lit(scramVerifier(password));
        const until = lit(new Date(Date.now() + 2000).toISOString());
        const schema = id(target.schema ?? 'public');
        for (let i = 0; i < count; i += CHUNK) {
          const statements = ['BEGIN'];
          for (const user of users.slice(i, i + CHUNK)) {
            const name = id(user);
            statements.push(
              `CREATE ROLE ${name} WITH LOGIN NOINHERIT PASSWORD ${verifier} VALID UNTIL ${until}`,
              `COMMENT ON ROLE ${name} IS 'bench floor'`,
              `GRANT CONNECT ON DATABASE ${id(target.database)} TO ${name}`,
              `GRANT USAGE ON SCHEMA ${schema} TO ${name}`,
              `GRANT SELECT ON ALL TABLES IN SCHEMA ${schema} TO ${name}`,
            );
          }
          statements.push('COMMIT');
          await client.query(statements.join(';\n'));
        }
      } finally {
        await client.end().catch(() => undefined);
      }
    } else {
      const connection = await myConnect();
      try {
        for (let i = 0; i < count; i += CHUNK) {
          const some = users.slice(i, i + CHUNK);
          await connection.query(`CREATE USER ${some.map((u) => `${account(u)} IDENTIFIED BY ${mysql.escape(password)}`).join(', ')}`);
          await connection.query(`GRANT SELECT ON ${mysql.escapeId(target.database)}.* TO ${some.map(account).join(', ')}`);
        }
      } finally {
        await connection.end().catch(() => connection.destroy());
      }
    }
  });
  return { users };
}

// ------------------------------------------------------------------ drop (timed by the caller)

async function drop(users) {
  if (users.length === 0) return { dropped: 0, sessions: 0 };
  return orCleanUp(users, async () => {
    if (engine === 'postgresql') {
      const client = await pgConnect();
      try {
        const roles = users.map(id).join(', ');
        const schema = id(target.schema ?? 'public');
        const transaction = (terminate) => [
          'BEGIN',
          `SELECT ${terminate} FROM pg_stat_activity WHERE usename IN (${users.map(lit).join(', ')})`,
          `REVOKE ALL ON ALL TABLES IN SCHEMA ${schema} FROM ${roles}`,
          `REVOKE ALL ON SCHEMA ${schema} FROM ${roles}`,
          `REVOKE ALL ON DATABASE ${id(target.database)} FROM ${roles}`,
          `DROP OWNED BY ${roles}`,
          `DROP ROLE ${roles}`,
          'COMMIT',
        ].join(';\n');
        let results;
        try {
          results = await client.query(transaction('pg_terminate_backend(pid, 5000)'));
        } catch (error) {
          if (error.code !== '42883') throw error; // before PostgreSQL 14: no timeout argument
          await client.query('ROLLBACK').catch(() => undefined);
          results = await client.query(transaction('pg_terminate_backend(pid)'));
        }
        return { dropped: users.length, sessions: results[1].rowCount };
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw error;
      } finally {
        await client.end().catch(() => undefined);
      }
    }
    const connection = await myConnect();
    try {
      const [results] = await connection.query(
        `DROP USER ${users.map(account).join(', ')};
         SELECT id FROM information_schema.processlist WHERE user IN (?) AND id <> CONNECTION_ID()`,
        [users],
      );
      const sessions = results[1];
      for (const { id: thread } of sessions) {
        await connection.query(`KILL CONNECTION ${Number(thread)}`).catch((error) => {
          if (error.errno !== 1094) throw error; // ER_NO_SUCH_THREAD: it ended on its own
        });
      }
      return { dropped: users.length, sessions: sessions.length };
    } finally {
      await connection.end().catch(() => connection.destroy());
    }
  });
}

// ------------------------------------------------------------------ main

let out;
if (action === 'create') {
  const count = Number(countArg);
  if (!Number.isInteger(count) || count < 0) throw new Error(`bad count: ${countArg}`);
  out = await create(count);
} else if (action === 'drop') {
  const { users } = JSON.parse(readFileSync(0, 'utf8'));
  if (!Array.isArray(users) || users.some((u) => typeof u !== 'string' || !u.startsWith(MINE))) throw new Error(`stdin must be {"users": [...]} with names starting with ${MINE}`);
  out = await drop(users);
} else {
  out = { dropped: await dropLeftovers() };
}
process.stdout.write(`${JSON.stringify(out)}\n`);
