/**
 * The MySQL option file of `sy run`, read back by the MariaDB client library itself
 * (my_print_defaults, from the mariadb-client package): values with the characters of
 * sy's passwords, quotes, backslashes and line breaks come back exactly as written.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clientEnv, mysqlOptionFile } from '../../src/io/client-env.js';
import type { IssuedLease } from '../../src/io/lease-view.js';

const lease = (over: Partial<IssuedLease>): IssuedLease => ({
  lease_id: 'l', record_uid: 'r', path: 'db:mariadb:x', engine: 'mariadb', host: '127.0.0.1', port: 3306,
  database: 'app', username: 'u', password: 'p', connection_string: 'mysql://u:p@127.0.0.1:3306/app',
  created_at: '', expires_at: '', lease_duration: 60, renewable: true, ...over,
});

function readBack(text: string, group: string): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'sy-optfile-'));
  try {
    writeFileSync(join(dir, 'my.cnf'), text, { mode: 0o600 });
    return execFileSync('my_print_defaults', [`--defaults-file=${join(dir, 'my.cnf')}`, group], { encoding: 'utf8' }).replace(/\n$/, '').split(/\n(?=--)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('the MySQL option file', () => {
  it('carries values with # ! % * + - . : = ? @ ^ _ ~, quotes, backslashes and line breaks verbatim', () => {
    const password = `a#b!%*+-.:=?@^_~;c'd"e\\f\ng\th`;
    const text = mysqlOptionFile(lease({ username: 'u#1', password, host: 'db.example', port: 3307, database: 'my#db' }));
    expect(readBack(text, 'client')).toEqual(['--user=u#1', `--password=${password}`, '--host=db.example', '--port=3307', '--protocol=TCP']);
    // The database only where the interactive clients look: mysqladmin refuses it in [client].
    expect(readBack(text, 'mysql')).toEqual(['--database=my#db']);
  });

  it('names no database when the lease has none', () => {
    expect(mysqlOptionFile(lease({ database: null }))).not.toMatch(/database|\[mysql\]/);
  });
});

describe('client variables', () => {
  it('are the PG* ones for PostgreSQL and the MYSQL_* ones for MySQL, with DATABASE_URL', () => {
    expect(Object.keys(clientEnv(lease({ engine: 'postgresql' }))).sort()).toEqual(['DATABASE_URL', 'PGDATABASE', 'PGHOST', 'PGPASSWORD', 'PGPORT', 'PGUSER', 'SY_LEASE_ID']);
    expect(Object.keys(clientEnv(lease({}))).sort()).toEqual(['DATABASE_URL', 'MYSQL_DATABASE', 'MYSQL_HOST', 'MYSQL_PWD', 'MYSQL_TCP_PORT', 'MYSQL_USER', 'SY_LEASE_ID']);
  });

  it('carry the lease id as SY_LEASE_ID, so a script can renew or revoke what it got', () => {
    expect(clientEnv(lease({ lease_id: 'b1d0c0de-0000-4000-8000-000000000001' })).SY_LEASE_ID).toBe('b1d0c0de-0000-4000-8000-000000000001');
    expect(clientEnv(lease({ engine: 'postgresql', lease_id: 'x-1' })).SY_LEASE_ID).toBe('x-1');
  });
});
