/**
 * A base secret's `ssl` settings on MySQL/MariaDB, through the built bin/sy, against a
 * throwaway MariaDB that speaks TLS with a self-signed certificate (the machine's own
 * MariaDB has TLS off). Its admin is created `REQUIRE SSL`, so every lease that works here
 * went over TLS for the admin connection.
 */
import mysql from 'mysql2/promise';
import { type Lease, makeHome, recordingRunner, type SyHome } from '../helpers/cli.js';
import { expectExit, tag } from '../helpers/db.js';
import { startTlsMariadb, type TlsMariadb } from '../helpers/mariadb-tls.js';

const T = tag();
const DB = `sy_tls_${T}`;
const PREFIX = `t${T}_`;

let server: TlsMariadb;
let sy: SyHome;
const { run, ok, stderrs } = recordingRunner(() => sy);

async function base(path: string, data: Record<string, unknown>): Promise<void> {
  await ok(['secret', 'create', path, '--attributes', '{"type": "mysql"}', '--data', '-'], {
    input: JSON.stringify({ host: '127.0.0.1', port: server.port, username: server.admin.user, password: server.admin.password, database: DB, ...data }),
  });
  await ok(['secret', 'create', `${path}-ro`, '--attributes', JSON.stringify({
    linkConfig: { linkType: 'dynamic', linkedSecret: path },
    grantPermissions: { what: 'SELECT', where: `${DB}.*` },
    userPrefix: PREFIX,
    ttl: 600,
  })]);
}

const managedUsers = (): string[] =>
  server.query(`SELECT User FROM mysql.user WHERE User LIKE '${PREFIX}%' ORDER BY User`).split('\n').filter(Boolean);

/** Logs the issued user in over TLS and returns the cipher of its session and what it reads. */
async function tlsSession(lease: Lease, ssl: mysql.SslOptions): Promise<{ cipher: string; rows: unknown }> {
  const connection = await mysql.createConnection({ host: lease.host, port: lease.port, user: lease.username, password: lease.password, database: lease.database, ssl });
  try {
    const [status] = (await connection.query("SHOW SESSION STATUS LIKE 'Ssl_cipher'")) as any;
    const [rows] = await connection.query('SELECT id FROM items ORDER BY id');
    return { cipher: status[0].Value, rows };
  } finally {
    await connection.end();
  }
}

beforeAll(async () => {
  server = await startTlsMariadb();
  server.query(`CREATE DATABASE ${DB}; CREATE TABLE ${DB}.items (id int PRIMARY KEY); INSERT INTO ${DB}.items VALUES (1), (2)`);
  sy = await makeHome();
  await base('db:mytls:noverify', { ssl: { rejectUnauthorized: false } });
  await base('db:mytls:ca', { host: 'localhost', ssl: { ca: server.certPem } });
  await base('db:mytls:verify', { ssl: true });
  await base('db:mytls:wronghost', { ssl: { ca: server.certPem } });
  await base('db:mytls:plain', {});
}, 60_000);

afterAll(() => {
  sy?.cleanup();
  server?.stop();
});

describe('MySQL/MariaDB base secrets with ssl', () => {
  test('rejectUnauthorized false: the admin connects over TLS, the lease says ssl-mode=REQUIRED and works over TLS', async () => {
    const lease = await ok<Lease>(['dynamic', 'lease', 'create', '--path', 'db:mytls:noverify-ro']);
    expect(new URL(lease.connection_string).searchParams.get('ssl-mode')).toBe('REQUIRED');
    const session = await tlsSession(lease, { rejectUnauthorized: false });
    expect(session.cipher).not.toBe('');
    expect(session.rows).toEqual([{ id: 1 }, { id: 2 }]);
    expect(managedUsers()).toContain(lease.username);

    expectExit(await run(['dynamic', 'lease', 'revoke', lease.lease_id]), 0);
    expect(managedUsers()).not.toContain(lease.username);
  });

  test('a CA that signs the certificate: verified against the host name, ssl-mode=VERIFY_IDENTITY', async () => {
    const lease = await ok<Lease>(['dynamic', 'lease', 'create', '--path', 'db:mytls:ca-ro']);
    expect(lease.host).toBe('localhost');
    expect(new URL(lease.connection_string).searchParams.get('ssl-mode')).toBe('VERIFY_IDENTITY');
    const session = await tlsSession(lease, { ca: server.certPem, rejectUnauthorized: true });
    expect(session.cipher).not.toBe('');
    expectExit(await run(['dynamic', 'lease', 'revoke', lease.lease_id]), 0);
    expect(managedUsers()).not.toContain(lease.username);
  });

  test('ssl true against a self-signed certificate, or a certificate for another name, fails in one sentence and creates nothing', async () => {
    const before = managedUsers();
    const result = await run(['dynamic', 'lease', 'create', '--path', 'db:mytls:verify-ro']);
    expect({ exitCode: result.exitCode, stdout: result.stdout }).toEqual({ exitCode: 1, stdout: '' });
    expect(result.stderr.trim()).toMatch(
      new RegExp(`^sy: Could not connect to MySQL/MariaDB at 127\\.0\\.0\\.1:${server.port}: the TLS certificate was not accepted \\(self[- ]signed certificate\\)\\.$`),
    );
    expect(managedUsers()).toEqual(before);

    // The right CA, but the certificate names localhost and the secret says 127.0.0.1: refused
    // before the admin's login packet, so the server's general log shows no login by the admin.
    server.query("SET GLOBAL log_output = 'TABLE'; SET GLOBAL general_log = 1");
    try {
      const mismatch = await run(['dynamic', 'lease', 'create', '--path', 'db:mytls:wronghost-ro']);
      expect(mismatch.exitCode).toBe(1);
      expect(mismatch.stderr.trim()).toBe(`sy: Could not connect to MySQL/MariaDB at 127.0.0.1:${server.port}: the TLS certificate does not match the host name.`);
      expect(managedUsers()).toEqual(before);
      expect(server.query(`SELECT COUNT(*) FROM mysql.general_log WHERE command_type = 'Connect' AND CONVERT(argument USING utf8mb4) LIKE '%${server.admin.user}%'`)).toBe('0');
      // The log does record logins: the admin's own, through a name the certificate carries.
      expectExit(await run(['dynamic', 'lease', 'revoke', (await ok<Lease>(['dynamic', 'lease', 'create', '--path', 'db:mytls:ca-ro'])).lease_id]), 0);
      expect(Number(server.query(`SELECT COUNT(*) FROM mysql.general_log WHERE command_type = 'Connect' AND CONVERT(argument USING utf8mb4) LIKE '%${server.admin.user}%'`))).toBeGreaterThan(0);
    } finally {
      server.query('SET GLOBAL general_log = 0');
    }
  });

  test('without ssl the admin, who must use TLS, is refused, and no password is printed', async () => {
    const result = await run(['dynamic', 'lease', 'create', '--path', 'db:mytls:plain-ro']);
    expect({ exitCode: result.exitCode, stdout: result.stdout }).toEqual({ exitCode: 1, stdout: '' });
    expect(result.stderr).toContain(`Could not connect to MySQL/MariaDB at 127.0.0.1:${server.port}: access denied for user "${server.admin.user}"`);
    for (const stderr of stderrs) expect(stderr).not.toContain(server.admin.password);
  });
});
