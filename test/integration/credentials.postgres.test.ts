/**
 * Where a PostgreSQL target's admin password may go: an impostor at the target's address
 * (test/helpers/fake-postgres.ts) asks for it in clear, over no TLS or over TLS that proved
 * nothing; it must never arrive. Over TLS that verified the server it does (a real server
 * with `password`, LDAP or PAM authentication needs it), and MD5 sends only its salted hash.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SyError } from '../../src/errors.js';
import type { BaseConnection } from '../../src/model/secret.js';
import { newPassword } from '../../src/targets/names.js';
import { PostgresTarget } from '../../src/targets/postgres.js';
import { type FakePostgres, type FakePostgresOptions, startFakePostgres } from '../helpers/fake-postgres.js';
import { localhostCertificate } from '../helpers/pg-cluster.js';

const OPTIONS = { connectTimeoutMs: 3000 };
const fakes: FakePostgres[] = [];
let certDir: string;
let certificate: { cert: string; key: string };

beforeAll(() => {
  certDir = mkdtempSync(join(tmpdir(), 'sy-test-fake-pg-'));
  const { certFile, keyFile } = localhostCertificate(certDir, process.getuid!(), process.getgid!());
  certificate = { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
});

afterEach(async () => {
  await Promise.all(fakes.splice(0).map((fake) => fake.close()));
});

afterAll(() => rmSync(certDir, { recursive: true, force: true }));

async function fake(auth: FakePostgresOptions['auth'], withTls = false): Promise<FakePostgres> {
  const started = await startFakePostgres({ auth, tls: withTls ? certificate : undefined });
  fakes.push(started);
  return started;
}

const adminOf = (server: FakePostgres, extra: Partial<BaseConnection> = {}): BaseConnection => ({
  engine: 'postgresql',
  host: '127.0.0.1',
  port: server.port,
  username: 'sy_admin',
  password: newPassword(),
  ...extra,
});

async function connectError(conn: BaseConnection): Promise<SyError> {
  try {
    const target = await PostgresTarget.connect(conn, OPTIONS);
    await target.close();
  } catch (error) {
    expect(error).toBeInstanceOf(SyError);
    return error as SyError;
  }
  throw new Error('the connection was expected to fail');
}

const IN_CLEAR = (port: number) =>
  `Could not connect to PostgreSQL at 127.0.0.1:${port}: the server asked for the admin's password in clear, which sy sends only over TLS that verified the server.`;

describe('the PostgreSQL admin password goes only to a verified server', () => {
  test('without TLS, a request for the password in clear is refused in one sentence, and the password never arrives', async () => {
    const server = await fake('cleartext');
    const conn = adminOf(server);
    const error = await connectError(conn);
    expect({ message: error.message, exitCode: error.exitCode }).toEqual({ message: IN_CLEAR(server.port), exitCode: 1 });
    expect(server.startups()).toBe(1);
    expect(server.passwords()).toEqual([]);
    expect(server.received().includes(Buffer.from(conn.password))).toBe(false);
  });

  test('over TLS that verified nothing (rejectUnauthorized false), the password in clear is refused too', async () => {
    const server = await fake('cleartext', true);
    const conn = adminOf(server, { ssl: { rejectUnauthorized: false } });
    expect((await connectError(conn)).message).toBe(IN_CLEAR(server.port));
    expect(server.startups()).toBe(1);
    expect(server.passwords()).toEqual([]);
    expect(server.received().includes(Buffer.from(conn.password))).toBe(false);
  });

  test('over TLS that verified the server (its CA, its name), the password in clear goes there', async () => {
    const server = await fake('cleartext', true);
    const conn = adminOf(server, { host: 'localhost', ssl: { ca: certificate.cert } });
    expect((await connectError(conn)).message).toMatch(/password authentication failed for user "sy_admin"/);
    expect(server.passwords()).toEqual([conn.password]);
  });

  test('MD5 without TLS sends its salted hash, never the password', async () => {
    const server = await fake('md5');
    const conn = adminOf(server);
    expect((await connectError(conn)).message).toMatch(/password authentication failed/);
    expect(server.passwords()).toEqual([expect.stringMatching(/^md5[0-9a-f]{32}$/)]);
    expect(server.received().includes(Buffer.from(conn.password))).toBe(false);
  });
});
