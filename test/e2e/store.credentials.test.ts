/**
 * Where the shared store's password may go, through the built bin/sy: an impostor at the
 * SY_STORE address (test/helpers/fake-postgres.ts) declines TLS, or offers TLS it cannot
 * prove, and asks for the password in clear; it must never arrive (exit 4, one sentence).
 * A store elsewhere than this machine named without sslmode gets one warning. The same fake
 * behind TLS that sy verified gets the password, as a real `password`/LDAP/PAM server must.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { freshKey, runSy, type SyResult } from '../helpers/cli.js';
import { type FakePostgres, type FakePostgresOptions, startFakePostgres } from '../helpers/fake-postgres.js';
import { localhostCertificate } from '../helpers/pg-cluster.js';

const PASSWORD = `Pw-${Math.random().toString(36).slice(2)}-not-for-impostors`;
const fakes: FakePostgres[] = [];
let dir: string;
let certificate: { cert: string; key: string; certFile: string };

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sy-test-store-cred-'));
  const { certFile, keyFile } = localhostCertificate(dir, process.getuid!(), process.getgid!());
  certificate = { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8'), certFile };
});

afterEach(async () => {
  await Promise.all(fakes.splice(0).map((fake) => fake.close()));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function fake(auth: FakePostgresOptions['auth'], options: { tls?: boolean; host?: string } = {}): Promise<FakePostgres> {
  const started = await startFakePostgres({ auth, tls: options.tls ? certificate : undefined, host: options.host });
  fakes.push(started);
  return started;
}

/** `sy store info` against the store URL, in a home of its own. */
function storeInfo(server: FakePostgres, query: string, host = server.host): Promise<SyResult> {
  const url = `postgresql://sy_app:${encodeURIComponent(PASSWORD)}@${host}:${server.port}/sy${query}`;
  return runSy(['store', 'info'], { SY_STORE: url, SY_MASTER_KEY: freshKey(), SY_HOME: join(dir, 'home'), HOME: dir, SY_NO_SWEEP: '1' });
}

function expectNeverArrived(server: FakePostgres): void {
  expect(server.startups()).toBe(1);
  expect(server.passwords()).toEqual([]);
  expect(server.received().includes(Buffer.from(PASSWORD))).toBe(false);
}

const IN_CLEAR = (address: string) =>
  `sy: The store at ${address} asked for the password in clear, which sy sends only over TLS that verified the server (sslmode=verify-ca or verify-full).`;

/** An address of this machine that is not loopback, so that the store counts as elsewhere. */
function outsideAddress(): string {
  const address = Object.values(networkInterfaces())
    .flat()
    .find((entry) => entry !== undefined && entry.family === 'IPv4' && !entry.internal);
  if (!address) throw new Error('This machine has no IPv4 address outside loopback for the warning test.');
  return address.address;
}

describe('the store password goes only to a verified server', () => {
  test.each(['', '?sslmode=prefer', '?sslmode=disable'])('a server that declines TLS and asks for it in clear gets nothing (%s): exit 4, one sentence', async (query) => {
    const server = await fake('cleartext');
    const result = await storeInfo(server, query);
    expect(result).toEqual({ exitCode: 4, stdout: '', stderr: IN_CLEAR(`127.0.0.1:${server.port}`) });
    expectNeverArrived(server);
  });

  test('TLS that verified nothing (sslmode=require, a self-signed certificate) does not carry it either', async () => {
    const server = await fake('cleartext', { tls: true });
    const result = await storeInfo(server, '?sslmode=require');
    expect(result).toEqual({ exitCode: 4, stdout: '', stderr: IN_CLEAR(`127.0.0.1:${server.port}`) });
    expectNeverArrived(server);
  });

  test('TLS that verified the server (verify-full, its CA, its name) carries it', async () => {
    const server = await fake('cleartext', { tls: true });
    const result = await storeInfo(server, `?sslmode=verify-full&sslrootcert=${encodeURIComponent(certificate.certFile)}`, 'localhost');
    expect(result.exitCode).toBe(4);
    expect(result.stderr).toMatch(/^sy: The store at localhost:\d+ refused the password of "sy_app"\./);
    expect(server.passwords()).toEqual([PASSWORD]);
  });

  test('MD5 without TLS sends a salted hash, never the password', async () => {
    const server = await fake('md5');
    const result = await storeInfo(server, '?sslmode=disable');
    expect(result.exitCode).toBe(4);
    expect(server.passwords()).toEqual([expect.stringMatching(/^md5[0-9a-f]{32}$/)]);
    expect(server.received().includes(Buffer.from(PASSWORD))).toBe(false);
  });

  test('a store elsewhere named without sslmode: one warning, then the same refusal', async () => {
    const host = outsideAddress();
    const server = await fake('cleartext', { host });
    const result = await storeInfo(server, '');
    const address = `${host}:${server.port}`;
    expect(result).toEqual({
      exitCode: 4,
      stdout: '',
      stderr:
        `sy: SY_STORE names ${address} without sslmode, so anyone on the path can make that connection plaintext: add sslmode=verify-full and sslrootcert to the URL.\n` +
        IN_CLEAR(address),
    });
    expectNeverArrived(server);

    // Saying sslmode, even disable, is a choice: no warning.
    const chosen = await fake('md5', { host });
    expect((await storeInfo(chosen, '?sslmode=disable')).stderr).not.toMatch(/without sslmode/);
  });
});
