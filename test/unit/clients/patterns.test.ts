import { canonicalPattern, patternsAllow, validatePattern } from '../../../src/clients/patterns.js';
import { SyError } from '../../../src/errors.js';

function refusal(pattern: string): SyError {
  try {
    validatePattern(pattern);
  } catch (error) {
    expect(error).toBeInstanceOf(SyError);
    return error as SyError;
  }
  throw new Error(`${JSON.stringify(pattern)} was accepted`);
}

describe('validatePattern', () => {
  it.each(['*', 'db:postgresql:dyn1', 'db/postgresql/dyn1', 'db:postgresql:*', 'db/postgresql/*', 'db:*', 'a.b@c+d_e-f:*'])('accepts %j', (pattern) => {
    expect(() => validatePattern(pattern)).not.toThrow();
  });

  it('spells patterns with ":" as paths are', () => {
    expect(canonicalPattern('db/postgresql/*')).toBe('db:postgresql:*');
    expect(canonicalPattern('db/postgresql:dyn1')).toBe('db:postgresql:dyn1');
    expect(canonicalPattern('*')).toBe('*');
  });

  it.each([
    '', ':*', '/*', '**', '*:*', 'db:*:x', 'db:post*', 'db:postgresql*', 'db:postgresql:', 'db::x', 'db:..:*', '..:*', 'db:.', '../db',
    'db:postgresql:*:*', 'db postgresql', "db:x'; DROP", 'db:x\n', 'DB:%2e%2e', 'db:ｘ',
  ])('refuses %j: exit 2, one sentence naming it', (pattern) => {
    const error = refusal(pattern);
    expect({ exitCode: error.exitCode, code: error.code }).toEqual({ exitCode: 2, code: 'invalid_pattern' });
    expect(error.message).toContain(JSON.stringify(pattern.replace(/\n/g, '?')));
    expect(error.message).not.toMatch(/\n/);
  });
});

describe('patternsAllow', () => {
  it('a path matches itself, whichever separator either is written with', () => {
    expect(patternsAllow(['db:postgresql:dyn1'], 'db:postgresql:dyn1')).toBe(true);
    expect(patternsAllow(['db/postgresql/dyn1'], 'db:postgresql:dyn1')).toBe(true);
    expect(patternsAllow(['db:postgresql:dyn1'], 'db/postgresql/dyn1')).toBe(true);
    expect(patternsAllow(['db:postgresql:dyn1'], 'db:postgresql:dyn2')).toBe(false);
    expect(patternsAllow(['db:postgresql:dyn1'], 'db:postgresql:dyn1:more')).toBe(false);
    expect(patternsAllow(['db:postgresql:dyn1'], 'db:postgresql')).toBe(false);
  });

  it('prefix:* matches everything strictly below the prefix, by whole segments', () => {
    const allow = ['db:postgresql:*'];
    expect(patternsAllow(allow, 'db:postgresql:dyn1')).toBe(true);
    expect(patternsAllow(allow, 'db/postgresql/dyn1')).toBe(true);
    expect(patternsAllow(allow, 'db:postgresql:team:dyn1')).toBe(true);
    expect(patternsAllow(['db/postgresql/*'], 'db:postgresql:dyn1')).toBe(true);
    // Not the prefix itself, not a longer segment, not a shorter one.
    expect(patternsAllow(allow, 'db:postgresql')).toBe(false);
    expect(patternsAllow(allow, 'db:postgresqlx:a')).toBe(false);
    expect(patternsAllow(allow, 'db:postgresql-prod:a')).toBe(false);
    expect(patternsAllow(allow, 'db:postgres:a')).toBe(false);
    expect(patternsAllow(allow, 'db:post')).toBe(false);
    expect(patternsAllow(allow, 'db')).toBe(false);
    expect(patternsAllow(allow, 'xdb:postgresql:a')).toBe(false);
    expect(patternsAllow(allow, 'app:db:postgresql:a')).toBe(false);
  });

  it('case as written', () => {
    expect(patternsAllow(['db:postgresql:*'], 'DB:postgresql:dyn1')).toBe(false);
    expect(patternsAllow(['db:postgresql:*'], 'db:PostgreSQL:dyn1')).toBe(false);
    expect(patternsAllow(['db:postgresql:dyn1'], 'db:postgresql:DYN1')).toBe(false);
    expect(patternsAllow(['DB:*'], 'db:x')).toBe(false);
  });

  it('"*" alone matches every valid path, and nothing that is not one', () => {
    expect(patternsAllow(['*'], 'db:postgresql:dyn1')).toBe(true);
    expect(patternsAllow(['*'], 'x')).toBe(true);
    expect(patternsAllow(['*'], '')).toBe(false);
    expect(patternsAllow(['*'], 'db:..:x')).toBe(false);
  });

  it.each([
    'db:postgresql:..', 'db:postgresql:..:..:app:x', 'db/postgresql/../../app/x', 'db:postgresql:.', 'db:postgresql::dyn1', 'db:postgresql:',
    'db:postgresql:dyn1:', ':db:postgresql:dyn1', 'db:postgresql:%2e%2e', 'db:postgresql:dyn1 ', 'db:postgresql:dyn1\n', 'db:postgresql:d\u0000',
    'db:postgresql:*', 'db:postgresql:\u0430pp', '',
  ])('a path trick matches nothing: %j', (path) => {
    expect(patternsAllow(['db:postgresql:*', '*', 'db:postgresql:..', path], path)).toBe(false);
  });

  it('an invalid pattern among valid ones allows nothing itself, and breaks nothing', () => {
    expect(patternsAllow(['db:*:x', 'db:post*', '', 'app:a'], 'db:post:x')).toBe(false);
    expect(patternsAllow(['db:*:x', 'app:a'], 'app:a')).toBe(true);
    expect(patternsAllow([], 'app:a')).toBe(false);
  });

  it('any one pattern is enough', () => {
    const allow = ['app:one', 'db:mysql:*'];
    expect(patternsAllow(allow, 'app:one')).toBe(true);
    expect(patternsAllow(allow, 'db:mysql:reports')).toBe(true);
    expect(patternsAllow(allow, 'db:postgresql:reports')).toBe(false);
    expect(patternsAllow(allow, 'app:two')).toBe(false);
  });
});
