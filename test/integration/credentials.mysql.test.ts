/**
 * Where the MySQL admin's password may go: an impostor at the target's address (a reused
 * address, a changed DNS name, someone on the path) asks for the password itself, through
 * the RSA key exchange of caching_sha2_password or sha256_password with its own key, or over
 * TLS it did not prove. The impostor (test/helpers/fake-mysql.ts) records what it receives
 * and recovers any password sent to it; none may arrive. The same fake, holding the key the
 * base secret pins or a certificate sy verified, shows that the legitimate paths still work.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SyError } from '../../src/errors.js';
import type { BaseConnection } from '../../src/model/secret.js';
import { newPassword } from '../../src/targets/names.js';
import { MysqlTarget } from '../../src/targets/mysql.js';
import { type FakeMysql, type FakeMysqlPlugin, rsaKeyPair, startFakeMysql } from '../helpers/fake-mysql.js';
import { localhostCertificate } from '../helpers/pg-cluster.js';

const OPTIONS = { connectTimeoutMs: 3000 };
const fakes: FakeMysql[] = [];
let certDir: string;
let certificate: { cert: string; key: string };

beforeAll(() => {
  certDir = mkdtempSync(join(tmpdir(), 'sy-test-fake-mysql-'));
  const { certFile, keyFile } = localhostCertificate(certDir, process.getuid!(), process.getgid!());
  certificate = { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
});

afterEach(async () => {
  await Promise.all(fakes.splice(0).map((fake) => fake.close()));
});

afterAll(() => rmSync(certDir, { recursive: true, force: true }));

async function fake(plugin: FakeMysqlPlugin, options: { tls?: boolean; keyPair?: { publicKey: string; privateKey: string } } = {}): Promise<FakeMysql> {
  const started = await startFakeMysql({ plugin, tls: options.tls ? certificate : undefined, keyPair: options.keyPair });
  fakes.push(started);
  return started;
}

/** The admin's base secret for the fake, with a password of its own. */
const adminOf = (server: FakeMysql, extra: Partial<BaseConnection> = {}): BaseConnection => ({
  engine: 'mysql',
  host: '127.0.0.1',
  port: server.port,
  username: 'sy_admin',
  password: newPassword(),
  ...extra,
});

async function connectError(conn: BaseConnection): Promise<SyError> {
  try {
    const target = await MysqlTarget.connect(conn, OPTIONS);
    await target.close();
  } catch (error) {
    expect(error).toBeInstanceOf(SyError);
    return error as SyError;
  }
  throw new Error('the connection was expected to fail');
}

/** Nothing the fake received holds the password, and it recovered none. */
function expectNeverArrived(server: FakeMysql, password: string): void {
  expect(server.received().includes(Buffer.from(password))).toBe(false);
  expect(server.recovered()).toEqual([]);
}

const ASKED_FOR_PASSWORD = (port: number) =>
  `Could not connect to MySQL/MariaDB at 127.0.0.1:${port}: the server asked for the admin's password itself, which sy sends only over TLS that verified the server or encrypted with data.serverPublicKey.`;

describe('the MySQL admin password goes only to a verified server', () => {
  test.each(['caching_sha2_password', 'sha256_password'] as const)('without TLS, %s full authentication with the impostor\'s RSA key is refused, in one sentence', async (plugin) => {
    const server = await fake(plugin);
    const conn = adminOf(server);
    const error = await connectError(conn);
    expect({ message: error.message, exitCode: error.exitCode }).toEqual({ message: ASKED_FOR_PASSWORD(server.port), exitCode: 1 });
    expect(server.logins()).toBe(1);
    expect(server.keyRequests()).toBe(0);
    expectNeverArrived(server, conn.password);
  });

  test.each(['caching_sha2_password', 'sha256_password'] as const)('over TLS that verified nothing (rejectUnauthorized false), %s full authentication is refused too', async (plugin) => {
    const server = await fake(plugin, { tls: true });
    const conn = adminOf(server, { ssl: { rejectUnauthorized: false } });
    const error = await connectError(conn);
    expect(error.message).toBe(ASKED_FOR_PASSWORD(server.port));
    expect(server.logins()).toBe(1);
    expectNeverArrived(server, conn.password);
  });

  test.each(['caching_sha2_password', 'sha256_password'] as const)('with data.serverPublicKey, %s encrypts to that key without asking: only its holder reads the password', async (plugin) => {
    const real = rsaKeyPair();
    // An impostor with a key of its own gets something it cannot open.
    const impostor = await fake(plugin);
    const conn = adminOf(impostor, { serverPublicKey: real.publicKey });
    expect((await connectError(conn)).message).toMatch(/access denied/);
    expect(impostor.keyRequests()).toBe(0);
    expectNeverArrived(impostor, conn.password);

    // The server that holds the pinned key reads it, as a real server would.
    const genuine = await fake(plugin, { keyPair: real });
    const login = adminOf(genuine, { serverPublicKey: real.publicKey });
    await connectError(login);
    expect(genuine.keyRequests()).toBe(0);
    expect(genuine.recovered()).toEqual([login.password]);
    expect(genuine.received().includes(Buffer.from(login.password))).toBe(false);
  });

  test('a switch to mysql_clear_password gets nothing without verified TLS, and the password over it', async () => {
    for (const ssl of [undefined, { rejectUnauthorized: false }]) {
      const server = await fake('mysql_clear_password', { tls: ssl !== undefined });
      const conn = adminOf(server, { ssl });
      expect((await connectError(conn)).message).toBe(ASKED_FOR_PASSWORD(server.port));
      expectNeverArrived(server, conn.password);
    }
    const verified = await fake('mysql_clear_password', { tls: true });
    const conn = adminOf(verified, { host: 'localhost', ssl: { ca: certificate.cert } });
    expect((await connectError(conn)).message).toMatch(/access denied/);
    expect(verified.recovered()).toEqual([conn.password]);
  });

  test('over TLS that verified the server (its CA, its name), full authentication sends the password there', async () => {
    const server = await fake('caching_sha2_password', { tls: true });
    const conn = adminOf(server, { host: 'localhost', ssl: { ca: certificate.cert } });
    expect((await connectError(conn)).message).toMatch(/access denied/);
    expect(server.recovered()).toEqual([conn.password]);
  });

  test('a certificate that names the IP address is accepted for that address', async () => {
    const ipDir = mkdtempSync(join(tmpdir(), 'sy-test-fake-mysql-ip-'));
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=sy-test-ip', '-addext', 'subjectAltName=IP:127.0.0.1',
        '-keyout', join(ipDir, 'key.pem'), '-out', join(ipDir, 'cert.pem')], { stdio: 'ignore' });
      const ipCertificate = { cert: readFileSync(join(ipDir, 'cert.pem'), 'utf8'), key: readFileSync(join(ipDir, 'key.pem'), 'utf8') };
      const server = await startFakeMysql({ plugin: 'mysql_clear_password', tls: ipCertificate });
      fakes.push(server);
      const conn = adminOf(server, { ssl: { ca: ipCertificate.cert } });
      expect((await connectError(conn)).message).toMatch(/access denied/);
      expect(server.logins()).toBe(1);
      expect(server.recovered()).toEqual([conn.password]);
    } finally {
      rmSync(ipDir, { recursive: true, force: true });
    }
  });

  test('an IP address the certificate does not name is refused before the admin logs in', async () => {
    const server = await fake('caching_sha2_password', { tls: true });
    // The right CA, but the certificate names localhost only.
    const conn = adminOf(server, { ssl: { ca: certificate.cert } });
    const error = await connectError(conn);
    expect(error.message).toBe(`Could not connect to MySQL/MariaDB at 127.0.0.1:${server.port}: the TLS certificate does not match the host name.`);
    expect(server.logins()).toBe(0);
    expect(server.received().includes(Buffer.from('sy_admin'))).toBe(false);
    expectNeverArrived(server, conn.password);
  });
});
