import { SyError } from '../../src/errors.js';
import { canonicalPath, secretRef } from '../../src/secrets/path.js';
import { kindOf, parseBaseConnection, parseDynamicRecipe } from '../../src/secrets/validate.js';

const link = { linkType: 'dynamic', linkedSecret: 'db:postgresql:root' };

function usageMessage(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(SyError);
    expect((error as SyError).exitCode).toBe(2);
    return (error as SyError).message;
  }
  throw new Error('expected a usage error');
}

describe('paths', () => {
  it('treats : and / as the same separator and keeps : as canonical', () => {
    expect(canonicalPath('db/postgresql/root')).toBe('db:postgresql:root');
    expect(canonicalPath('a.b@c+d_e-f')).toBe('a.b@c+d_e-f');
  });
  it.each(['a b', 'a::b', ':a', 'a:', '../x', 'a;b', "a'b", ''])('refuses %j', (path) => {
    expect(usageMessage(() => canonicalPath(path))).toMatch(/path/);
  });
  it('recognises ids', () => {
    expect(secretRef('0C81AAA1-45A0-4FC3-8536-8E6FD0989C5E')).toEqual({ id: '0c81aaa1-45a0-4fc3-8536-8e6fd0989c5e' });
    expect(secretRef('db/x')).toEqual({ path: 'db:x' });
  });
});

describe('base secrets', () => {
  const seedData = { host: 'database-1.cjqpjhgsaz53.us-east-1.rds.amazonaws.com', password: 'P@ssword!', port: 3306, username: 'admin' };

  it('accepts the seed as written, port 3306 included', () => {
    expect(parseBaseConnection({ type: 'postgresql' }, seedData)).toMatchObject({ engine: 'postgresql', port: 3306, username: 'admin' });
    expect(kindOf({ type: 'postgresql' })).toBe('base');
  });
  it('maps postgres and mariadb aliases', () => {
    expect(parseBaseConnection({ type: 'postgres' }, seedData).engine).toBe('postgresql');
    expect(parseBaseConnection({ type: 'mariadb' }, seedData).engine).toBe('mysql');
  });
  it('accepts an empty password but not a missing one', () => {
    expect(parseBaseConnection({ type: 'mysql' }, { ...seedData, password: '' }).password).toBe('');
    const { password: _p, ...noPassword } = seedData;
    expect(usageMessage(() => parseBaseConnection({ type: 'mysql' }, noPassword))).toBe('A MySQL/MariaDB base secret needs data.password.');
  });
  it('names the unknown type and the bad field', () => {
    expect(usageMessage(() => parseBaseConnection({ type: 'oracle' }, seedData))).toMatch(/"oracle" is not supported/);
    expect(usageMessage(() => parseBaseConnection({ type: 'postgresql' }, { ...seedData, port: 70000 }))).toMatch(/data\.port/);
    expect(usageMessage(() => parseBaseConnection({ type: 'postgresql' }, { ...seedData, ssl: { verify: 1 } }))).toMatch(/data\.ssl\.verify/);
  });
  it('takes ssl.servername for PostgreSQL only', () => {
    expect(parseBaseConnection({ type: 'postgresql' }, { ...seedData, ssl: { servername: 'db.internal' } }).ssl).toEqual({ servername: 'db.internal' });
    expect(usageMessage(() => parseBaseConnection({ type: 'mariadb' }, { ...seedData, ssl: { servername: 'db.internal' } }))).toBe(
      'data.ssl.servername is for PostgreSQL only: for MySQL/MariaDB, write the name the certificate carries as data.host.',
    );
  });
  it('never puts the password in a message', () => {
    const message = usageMessage(() => parseBaseConnection({ type: 'postgresql' }, { ...seedData, host: 'bad host' }));
    expect(message).not.toContain('P@ssword!');
  });
});

describe('dynamic secrets', () => {
  const seed = { grantPermissions: { what: 'SELECT', where: '*.*' }, linkConfig: link, pool: 'pool1', ttl: 1000 };

  it('accepts the seed recipe and fills defaults', () => {
    expect(parseDynamicRecipe(seed, {}, 'postgresql')).toMatchObject({
      basePath: 'db:postgresql:root',
      grants: [{ privileges: ['SELECT'], schema: '*', table: '*' }],
      ttl: 1000,
      maxTtl: 86400,
      pool: 'pool1',
    });
    expect(parseDynamicRecipe({ ...seed, pool: undefined, ttl: undefined }, {}, 'mysql')).toMatchObject({ pool: 'default', ttl: 3600 });
  });
  it('accepts several grants and normalises privileges', () => {
    const recipe = parseDynamicRecipe({ ...seed, grantPermissions: [{ what: 'select, insert', where: 'app.*' }, { what: 'ALL PRIVILEGES', where: 'app.t1' }] }, {}, 'mysql');
    expect(recipe.grants.map((g) => g.privileges)).toEqual([['SELECT', 'INSERT'], ['ALL PRIVILEGES']]);
  });
  it.each([
    ['SELECT; DROP TABLE x', '*.*'],
    ["SELECT'", '*.*'],
    ['SELECT -- x', '*.*'],
    ['SELECT /* x */', '*.*'],
    ['SUPER', '*.*'],
    ['SELECT', "a'.*"],
    ['SELECT', 'a`.b'],
    ['SELECT', 'a.b; DROP TABLE x'],
    ['SELECT', 'a.b--'],
    ['SELECT', '*.t'],
    ['SELECT', 'a'],
  ])('refuses what=%j where=%j', (what, where) => {
    expect(usageMessage(() => parseDynamicRecipe({ ...seed, grantPermissions: { what, where } }, {}, 'postgresql'))).toMatch(/grantPermissions/);
  });
  it('refuses SQL in userPrefix and a prefix that would cut the random part', () => {
    expect(usageMessage(() => parseDynamicRecipe({ ...seed, userPrefix: 'x; drop' }, {}, 'postgresql'))).toMatch(/userPrefix/);
    expect(usageMessage(() => parseDynamicRecipe({ ...seed, userPrefix: 'abcdefghijklm' }, {}, 'mysql'))).toMatch(/at most 12/);
    expect(parseDynamicRecipe({ ...seed, userPrefix: 'abcdefghijkl' }, {}, 'mysql').userPrefix).toBe('abcdefghijkl');
  });
  it('bounds ttl and maxTtl', () => {
    expect(usageMessage(() => parseDynamicRecipe({ ...seed, maxTtl: 86401 }, {}, 'postgresql'))).toMatch(/maxTtl/);
    expect(usageMessage(() => parseDynamicRecipe({ ...seed, ttl: 120, maxTtl: 60 }, {}, 'postgresql'))).toMatch(/longer than the maximum/);
    expect(parseDynamicRecipe({ ...seed, ttl: '15m' }, {}, 'postgresql').ttl).toBe(900);
  });
  it('requires the link, the grants and empty data', () => {
    expect(usageMessage(() => parseDynamicRecipe({ ...seed, linkConfig: { linkType: 'static', linkedSecret: 'x' } }, {}, 'postgresql'))).toMatch(/linkType/);
    expect(usageMessage(() => parseDynamicRecipe({ ...seed, grantPermissions: undefined }, {}, 'postgresql'))).toMatch(/grantPermissions/);
    expect(usageMessage(() => parseDynamicRecipe(seed, { password: 'x' }, 'postgresql'))).toMatch(/no data/);
  });
  it('checks template placeholders', () => {
    expect(parseDynamicRecipe({ ...seed, creationStatements: 'CREATE ROLE "{{name}}" PASSWORD \'{{password}}\'' }, {}, 'postgresql').creationStatements).toHaveLength(1);
    expect(usageMessage(() => parseDynamicRecipe({ ...seed, creationStatements: ['{{user}}'] }, {}, 'postgresql'))).toMatch(/\{\{user\}\}/);
  });
});
