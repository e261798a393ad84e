import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SyError } from '../../src/errors.js';
import { parseStoreUrl, plaintextWarning, tlsChoice } from '../../src/store/postgres/url.js';

function usage(fn: () => unknown): SyError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(SyError);
    expect((error as SyError).exitCode).toBe(2);
    return error as SyError;
  }
  throw new Error('expected a usage error');
}

describe('SY_STORE, the URL of a PostgreSQL store', () => {
  test('host, port, user, password and database, percent-decoded; the location leaves the password out', () => {
    const url = parseStoreUrl('postgresql://sy%40app:p%2Fss%3Aword@DB.Example.com:6432/sy%2Dstore?sslmode=require&connect_timeout=5');
    expect(url).toMatchObject({ host: 'db.example.com', port: 6432, user: 'sy@app', password: 'p/ss:word', database: 'sy-store', sslmode: 'require', connectTimeoutMs: 5000 });
    expect(url.location).toBe('postgresql://sy%40app@db.example.com:6432/sy-store');
    expect(url.address).toBe('db.example.com:6432');
  });

  test("libpq's defaults: port 5432, the user's name as database, sslmode prefer, a 10 s timeout (not for ever)", () => {
    const url = parseStoreUrl('postgres://alice@localhost');
    expect(url).toMatchObject({ host: 'localhost', port: 5432, user: 'alice', database: 'alice', sslmode: 'prefer', connectTimeoutMs: 10_000 });
    expect(url.password).toBeUndefined();
    expect(parseStoreUrl('postgresql://a@h/d?connect_timeout=0').connectTimeoutMs).toBe(10_000);
    expect(parseStoreUrl('postgresql://a@h/d?connect_timeout=1').connectTimeoutMs).toBe(2000);
  });

  test('IPv6 addresses and Unix sockets', () => {
    expect(parseStoreUrl('postgresql://a@[::1]:5433/d')).toMatchObject({ host: '::1', port: 5433, address: '[::1]:5433', location: 'postgresql://a@[::1]:5433/d' });
    expect(parseStoreUrl('postgresql://a@/d?host=/var/run/postgresql')).toMatchObject({ host: '/var/run/postgresql', location: 'postgresql://a@/d?host=%2Fvar%2Frun%2Fpostgresql' });
  });

  test('what sy cannot honour is refused, naming it, never repeating the password', () => {
    expect(usage(() => parseStoreUrl('mysql://root@h/d')).message).toMatch(/must start with postgresql:\/\//);
    const unknown = usage(() => parseStoreUrl('postgresql://a:hunter2@h/d?sslmod=require'));
    expect(unknown.message).toMatch(/"?sslmod"?/);
    expect(unknown.message + (unknown.hint ?? '')).not.toContain('hunter2');
    expect(usage(() => parseStoreUrl('postgresql://a@h/d?sslmode=allow')).message).toMatch(/allow is not supported/);
    expect(usage(() => parseStoreUrl('postgresql://a@h1,h2/d')).message).toMatch(/one host/);
    expect(usage(() => parseStoreUrl('postgresql://a@h:0/d')).message).toMatch(/port/);
    expect(usage(() => parseStoreUrl('postgresql://a@h/d?connect_timeout=soon')).message).toMatch(/connect_timeout/);
    expect(usage(() => parseStoreUrl('postgresql://a@h/d/e')).message).toMatch(/one path segment/);
    expect(usage(() => parseStoreUrl('postgresql://a@h/d?sslmode=disable&sslmode=require')).message).toMatch(/twice/);
  });
});

describe('sslmode as libpq means it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-url-'));
  const ca = join(dir, 'ca.crt');
  writeFileSync(ca, '-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n');
  const choice = (query: string) => tlsChoice(parseStoreUrl(`postgresql://a@db.example.com/d?${query}`));

  test('disable: no TLS; prefer: TLS unchecked, the clear if the server has none; require: TLS unchecked', async () => {
    expect(await choice('sslmode=disable')).toEqual({ fallbackToPlain: false });
    expect(await choice('sslmode=prefer')).toEqual({ options: { rejectUnauthorized: false }, fallbackToPlain: true });
    expect(await choice('sslmode=require')).toEqual({ options: { rejectUnauthorized: false }, fallbackToPlain: false });
  });

  test('require with a root certificate is verify-ca; verify-ca checks the chain, not the name; verify-full both', async () => {
    const cert = { getPeerCertificate: () => undefined } as never;
    for (const mode of ['require', 'verify-ca']) {
      const { options } = await choice(`sslmode=${mode}&sslrootcert=${ca}`);
      expect(options).toMatchObject({ rejectUnauthorized: true, ca: expect.stringContaining('not really') });
      expect(options!.checkServerIdentity!('anything', cert)).toBeUndefined();
      expect(options!.servername).toBeUndefined();
    }
    const full = (await choice(`sslmode=verify-full&sslrootcert=${ca}`)).options!;
    expect(full).toMatchObject({ rejectUnauthorized: true, servername: 'db.example.com' });
    const wrongName = full.checkServerIdentity!('db.example.com', { subject: { CN: 'other.example.com' }, subjectaltname: 'DNS:other.example.com' } as never);
    expect(wrongName?.message).toMatch(/other\.example\.com/);
    expect(full.checkServerIdentity!('ignored', { subject: { CN: 'db.example.com' }, subjectaltname: 'DNS:db.example.com' } as never)).toBeUndefined();
  });

  test('sslrootcert=system trusts the CAs Node trusts; verifying without any CA, or with an unreadable file, is a usage error', async () => {
    const system = (await choice('sslmode=verify-full&sslrootcert=system')).options!;
    expect(system.ca).toBeUndefined();
    expect(system.rejectUnauthorized).toBe(true);
    const previous = process.env.HOME;
    process.env.HOME = dir;
    try {
      await expect(choice('sslmode=verify-full')).rejects.toMatchObject({ code: 'store_tls_no_ca', exitCode: 2 });
    } finally {
      process.env.HOME = previous;
    }
    await expect(choice(`sslmode=verify-ca&sslrootcert=${join(dir, 'missing.crt')}`)).rejects.toMatchObject({ code: 'store_tls_file', exitCode: 2 });
  });
});

describe('a store elsewhere named without sslmode', () => {
  test('is warned about, naming where the URL came from; loopback, Unix sockets and any sslmode given are not', () => {
    expect(plaintextWarning(parseStoreUrl('postgresql://sy_app:pw@db.example.com/sy'))).toBe(
      'SY_STORE names db.example.com:5432 without sslmode, so anyone on the path can make that connection plaintext: add sslmode=verify-full and sslrootcert to the URL.',
    );
    expect(plaintextWarning(parseStoreUrl('postgresql://a@10.0.0.7:6432/sy', '--to'))).toMatch(/^--to names 10\.0\.0\.7:6432 without sslmode/);
    expect(plaintextWarning(parseStoreUrl('postgresql://a@[fd00::2]/sy'))).toMatch(/^SY_STORE names \[fd00::2\]:5432/);
    for (const quiet of [
      'postgresql://a@localhost/sy',
      'postgresql://a@127.0.0.1/sy',
      'postgresql://a@127.1.2.3/sy',
      'postgresql://a@[::1]/sy',
      'postgresql://a@/sy?host=/var/run/postgresql',
      'postgresql://a@db.example.com/sy?sslmode=prefer',
      'postgresql://a@db.example.com/sy?sslmode=disable',
      'postgresql://a@db.example.com/sy?sslmode=verify-full&sslrootcert=system',
    ]) {
      expect(plaintextWarning(parseStoreUrl(quiet))).toBeUndefined();
    }
  });
});
