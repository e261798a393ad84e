import { SyError } from '../../src/errors.js';
import { POSTGRES_DATA_PRIVILEGES, MYSQL_TABLE_PRIVILEGES } from '../../src/model/engines.js';
import {
  checkedUserName,
  describeUsers,
  driverReason,
  expandPrivileges,
  networkReason,
  renderTemplate,
  revocationStatement,
  type StatementFailures,
  safeReason,
  statementFailure,
  tlsMaterial,
} from '../../src/targets/shared.js';

describe('checkedUserName', () => {
  it('passes the names sy generates, within the engine limit', () => {
    expect(checkedUserName('sy_abcdefghij_sy0toy0ql', 'mysql')).toBe('sy_abcdefghij_sy0toy0ql');
    expect(checkedUserName('a'.repeat(63), 'postgresql')).toBe('a'.repeat(63));
    expect(() => checkedUserName('a'.repeat(64), 'postgresql')).toThrow('sy refuses to use a PostgreSQL user name that it did not generate.');
  });
  it.each(['', 'a'.repeat(33), 'x"; DROP ROLE postgres; --', "o'brien", 'with space', 'dash-ed', 'ünï'])('refuses %j', (name) => {
    let error: unknown;
    try {
      checkedUserName(name, 'mysql');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SyError);
    expect((error as SyError).message).toBe('sy refuses to use a MySQL/MariaDB user name that it did not generate.');
  });
});

describe('renderTemplate', () => {
  const values = { name: 'sy_abc', password: `p'a\\ss`, expiration: '2026-11-22T10:00:00.000Z' };
  it('fills name, escaped password and expiration, with or without spaces in the braces', () => {
    const doubled = (p: string) => p.replace(/'/g, "''");
    expect(renderTemplate(`CREATE ROLE "{{name}}" PASSWORD '{{ password }}' VALID UNTIL '{{expiration}}'`, values, doubled)).toBe(
      `CREATE ROLE "sy_abc" PASSWORD 'p''a\\ss' VALID UNTIL '2026-11-22T10:00:00.000Z'`,
    );
  });
  it('leaves unknown placeholders as written', () => {
    expect(renderTemplate('GRANT {{what}} TO {{name}}', values, (p) => p)).toBe('GRANT {{what}} TO sy_abc');
  });
});

describe('networkReason', () => {
  it.each([
    ['ECONNREFUSED', 'connection refused'],
    ['ENOTFOUND', 'host name not found'],
    ['EAI_AGAIN', 'host name not found'],
    ['EHOSTUNREACH', 'host unreachable'],
    ['ECONNRESET', 'the server closed the connection'],
    ['ERR_TLS_CERT_ALTNAME_INVALID', 'the TLS certificate does not match the host name'],
    ['DEPTH_ZERO_SELF_SIGNED_CERT', 'the TLS certificate was not accepted (DEPTH_ZERO_SELF_SIGNED_CERT)'],
  ])('says %s as %j', (code, reason) => {
    expect(networkReason(code)).toBe(reason);
  });
  it('leaves server error codes to the engine', () => {
    expect(networkReason('28P01')).toBeUndefined();
    expect(networkReason('ER_ACCESS_DENIED_ERROR')).toBeUndefined();
    expect(networkReason('')).toBeUndefined();
  });
});

describe('safeReason', () => {
  it('keeps the first line without its final full stop', () => {
    expect(safeReason('relation "app.nope" does not exist.\nLINE 1: GRANT ...', '42P01', [])).toBe('relation "app.nope" does not exist');
  });
  it('says only the code when the message holds a secret', () => {
    expect(safeReason(`syntax error near 'hunter2-secret'`, 'ER_PARSE_ERROR', ['', 'hunter2-secret'])).toBe('server error ER_PARSE_ERROR');
    expect(safeReason('failed for hunter2-secret', undefined, ['hunter2-secret'])).toBe('server error');
  });
  it('shortens a long message to 300 characters', () => {
    const reason = safeReason('x'.repeat(1000), undefined, []);
    expect(reason).toHaveLength(300);
    expect(reason.endsWith('...')).toBe(true);
  });
});

describe('revocationStatement', () => {
  it('fills the name and leaves password and expiration empty', () => {
    expect(revocationStatement(`DROP ROLE "{{name}}"; -- '{{password}}' '{{expiration}}' {{other}}`, 'sy_abc')).toBe(`DROP ROLE "sy_abc"; -- '' '' {{other}}`);
  });
});

describe('describeUsers', () => {
  it('names one user and counts more', () => {
    expect(describeUsers(['sy_abc'])).toBe('user sy_abc');
    expect(describeUsers(['a', 'b', 'c'])).toBe('3 users');
  });
});

describe('expandPrivileges', () => {
  it('expands ALL to the data privileges of the level, each once, in the order named', () => {
    expect(expandPrivileges(['UPDATE', 'ALL', 'SELECT'], POSTGRES_DATA_PRIVILEGES)).toEqual({
      privileges: ['UPDATE', 'SELECT', 'INSERT', 'DELETE', 'TRUNCATE', 'REFERENCES'],
      unknown: undefined,
    });
    expect(expandPrivileges(['ALL PRIVILEGES'], MYSQL_TABLE_PRIVILEGES).privileges).toEqual(MYSQL_TABLE_PRIVILEGES);
  });
  it('keeps what the level does not know, and names the first such', () => {
    expect(expandPrivileges(['SELECT', 'TRIGGER', 'MAINTAIN'], POSTGRES_DATA_PRIVILEGES)).toEqual({ privileges: ['SELECT', 'TRIGGER', 'MAINTAIN'], unknown: 'TRIGGER' });
  });
});

describe('tlsMaterial', () => {
  it('takes only the CA, certificate and key that are given', () => {
    expect(tlsMaterial({ ca: 'CA', rejectUnauthorized: false, servername: 'db' })).toEqual({ ca: 'CA' });
    expect(tlsMaterial({ cert: 'C', key: 'K' })).toEqual({ cert: 'C', key: 'K' });
  });
});

describe('driverReason', () => {
  it("prefers mysql2's sqlMessage to the message", () => {
    expect(driverReason(Object.assign(new Error("Access denied; you need the CREATE USER privilege"), { sqlMessage: 'Access denied' }), [])).toBe('Access denied');
    expect(driverReason(new Error('relation "x" does not exist'), [])).toBe('relation "x" does not exist');
  });
});

describe('statementFailure', () => {
  const session = (explain: StatementFailures['explain'] = () => undefined): StatementFailures => ({
    address: 'db:5432',
    label: 'PostgreSQL',
    conn: { password: 'admin-secret' },
    fromServer: (error) => error?.code === '42501',
    explain,
  });
  const serverError = (message: string) => Object.assign(new Error(message), { code: '42501' });

  it('passes an error sy raised through', () => {
    const raised = new SyError('failed', 'grant_failed', 'Could not grant.');
    expect(statementFailure(session(), 'target_error', 'grant', raised)).toBe(raised);
  });
  it("tells the server's reason under the caller's code, without secrets", () => {
    const told = statementFailure(session(), 'grant_failed', 'grant SELECT on app.t', serverError('permission denied for table t'));
    expect([told.code, told.message]).toEqual(['grant_failed', 'Could not grant SELECT on app.t at db:5432: permission denied for table t.']);
    const hidden = statementFailure(session(), 'create_user_failed', 'create user u', serverError("bad 'user-secret'"), 'user-secret');
    expect(hidden.message).toBe('Could not create user u at db:5432: server error 42501.');
    expect(statementFailure(session(), 'x', 'list users', serverError('admin-secret leaked')).message).toBe('Could not list users at db:5432: server error 42501.');
  });
  it('says the connection was lost when the server did not answer', () => {
    const lost = statementFailure(session(), 'revoke_failed', 'revoke 3 users', Object.assign(new Error('Connection terminated'), { code: 'ECONNRESET' }));
    expect([lost.code, lost.message]).toEqual(['target_unreachable', 'Could not revoke 3 users at db:5432: the connection to PostgreSQL was lost (Connection terminated).']);
  });
  it("lets the engine's own reading speak first, with or without a code of its own", () => {
    const locked = statementFailure(session(() => ({ code: 'target_locked', why: 'a lock was held' })), 'revoke_failed', 'revoke user u', serverError('x'));
    expect([locked.code, locked.message]).toEqual(['target_locked', 'Could not revoke user u at db:5432: a lock was held.']);
    const slow = statementFailure(session(() => ({ why: 'too slow' })), 'grant_failed', 'grant', serverError('x'));
    expect([slow.code, slow.message]).toEqual(['grant_failed', 'Could not grant at db:5432: too slow.']);
  });
});
