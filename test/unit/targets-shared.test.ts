import { SyError } from '../../src/errors.js';
import { checkedUserName, networkReason, renderTemplate, safeReason } from '../../src/targets/shared.js';

describe('checkedUserName', () => {
  it('passes the names sy generates, within the engine limit', () => {
    expect(checkedUserName('sy_abcdefghij_sy0toy0ql', 32, 'MySQL/MariaDB')).toBe('sy_abcdefghij_sy0toy0ql');
    expect(checkedUserName('a'.repeat(63), 63, 'PostgreSQL')).toBe('a'.repeat(63));
  });
  it.each(['', 'a'.repeat(33), 'x"; DROP ROLE postgres; --', "o'brien", 'with space', 'dash-ed', 'ünï'])('refuses %j', (name) => {
    let error: unknown;
    try {
      checkedUserName(name, 32, 'MySQL/MariaDB');
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
