import { connectionString } from '../../src/io/lease-view.js';
import { clientTls } from '../../src/leases/connection.js';
import { newPassword, newUserName, parseManagedName, MANAGED_NAME_SQL_PATTERN } from '../../src/targets/names.js';

describe('user names', () => {
  const bound = new Date('2026-11-23T12:00:00Z');
  it('carry the reap-after bound and fit the engine', () => {
    const name = newUserName('mysql', bound, 'abcdefghijkl');
    expect(name.length).toBeLessThanOrEqual(32);
    expect(name.startsWith('abcdefghijkl')).toBe(true);
    expect(parseManagedName(name)?.reapAfter.getTime()).toBe(bound.getTime());
    expect(new RegExp(MANAGED_NAME_SQL_PATTERN).test(name)).toBe(true);
  });
  it('are fresh each time', () => {
    const names = new Set(Array.from({ length: 200 }, () => newUserName('postgresql', bound)));
    expect(names.size).toBe(200);
  });
  it('are not confused with other users', () => {
    expect(parseManagedName('postgres')).toBeUndefined();
    expect(parseManagedName('app_reader')).toBeUndefined();
  });
});

describe('passwords', () => {
  it('are 32 characters with every class', () => {
    for (let i = 0; i < 50; i++) {
      const password = newPassword();
      expect(password).toHaveLength(32);
      expect(password).toMatch(/[a-z]/);
      expect(password).toMatch(/[A-Z]/);
      expect(password).toMatch(/[0-9]/);
      expect(password).toMatch(/[^A-Za-z0-9]/);
      expect(password).not.toMatch(/['"\\`$ ]/);
    }
  });
});

describe('connection strings', () => {
  const base = { engine: 'postgresql' as const, host: 'db.example.com', port: 5432 };
  it('percent-encode user and password', () => {
    const url = connectionString(base, 'sy_user', 'xK9#mP2$qR7wL4nB', 'myapp');
    expect(url).toBe('postgresql://sy_user:xK9%23mP2%24qR7wL4nB@db.example.com:5432/myapp');
    const parsed = new URL(url);
    expect(decodeURIComponent(parsed.password)).toBe('xK9#mP2$qR7wL4nB');
  });
  it('carry TLS settings and the mysql scheme', () => {
    expect(connectionString({ ...base, tls: { verify: true } }, 'u', 'p', 'd')).toMatch(/\?sslmode=verify-full$/);
    expect(connectionString({ ...base, tls: { verify: false } }, 'u', 'p', 'd')).toMatch(/\?sslmode=require$/);
    expect(connectionString({ ...base, engine: 'mysql', port: 3306, tls: { verify: false } }, 'u', 'p', undefined)).toBe('mysql://u:p@db.example.com:3306?ssl-mode=REQUIRED');
    expect(connectionString({ ...base, host: '::1' }, 'u', 'p', 'd')).toBe('postgresql://u:p@[::1]:5432/d');
  });
  it('ask for TLS as sy reaches the base, verifying unless the base says not to', () => {
    const admin = { ...base, username: 'admin', password: 'x' };
    expect(clientTls(admin)).toBeUndefined();
    expect(clientTls({ ...admin, ssl: true })).toEqual({ verify: true });
    expect(clientTls({ ...admin, ssl: { ca: 'pem' } })).toEqual({ verify: true });
    expect(clientTls({ ...admin, ssl: { rejectUnauthorized: false } })).toEqual({ verify: false });
  });
});
