import { generateKeyPairSync } from 'node:crypto';
import { usageMessage } from '../helpers/errors.js';
import { canonicalPath, secretRef } from '../../src/secrets/path.js';
import { kindOf, parseBaseConnection, parseDynamicRecipe } from '../../src/secrets/validate.js';

const link = { linkType: 'dynamic', linkedSecret: 'db:postgresql:root' };

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
  it('takes serverPublicKey, an RSA public key in PEM, for MySQL/MariaDB only', () => {
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
    expect(parseBaseConnection({ type: 'mysql' }, { ...seedData, serverPublicKey: publicKey }).serverPublicKey).toBe(publicKey);
    expect(parseBaseConnection({ type: 'mysql' }, seedData)).not.toHaveProperty('serverPublicKey');
    expect(usageMessage(() => parseBaseConnection({ type: 'postgresql' }, { ...seedData, serverPublicKey: publicKey }))).toBe('data.serverPublicKey is for MySQL/MariaDB only.');
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256', publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
    for (const bad of ['not a key', 42, ec.publicKey]) {
      expect(usageMessage(() => parseBaseConnection({ type: 'mariadb' }, { ...seedData, serverPublicKey: bad }))).toBe(
        "data.serverPublicKey must be the server's RSA public key in PEM (-----BEGIN PUBLIC KEY-----).",
      );
    }
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

describe('a recipe never reaches more than it names', () => {
  const recipe = (grantPermissions: unknown, extra: Record<string, unknown> = {}) => ({ linkConfig: link, grantPermissions, ...extra });

  it.each([
    ['postgresql', 'pg_catalog.pg_authid'],
    ['postgresql', 'PG_CATALOG.*'],
    ['postgresql', 'pg_toast.*'],
    ['postgresql', 'information_schema.tables'],
    ['mysql', 'mysql.user'],
    ['mysql', 'MySQL.*'],
    ['mysql', 'sys.*'],
    ['mysql', 'performance_schema.*'],
    ['mysql', 'information_schema.*'],
  ] as const)('refuses the system schema in %s where %s', (engine, where) => {
    expect(usageMessage(() => parseDynamicRecipe(recipe({ what: 'SELECT', where }), {}, engine))).toMatch(/is a system (schema|database), which a lease never reaches/);
  });

  it('takes CREATE on a PostgreSQL schema (s.* or *.*), named only, and refuses it on a table or with a system schema', () => {
    expect(parseDynamicRecipe(recipe({ what: 'create, select', where: 'mig.*' }), {}, 'postgresql').grants).toEqual([{ privileges: ['CREATE', 'SELECT'], schema: 'mig', table: '*' }]);
    expect(parseDynamicRecipe(recipe({ what: 'CREATE', where: '*.*' }), {}, 'postgresql').grants[0].privileges).toEqual(['CREATE']);
    expect(usageMessage(() => parseDynamicRecipe(recipe({ what: 'CREATE', where: 'app.orders' }), {}, 'postgresql'))).toMatch(/CREATE is a privilege on a whole schema on PostgreSQL: grant it on "app\.\*"/);
    expect(usageMessage(() => parseDynamicRecipe(recipe({ what: 'CREATE', where: 'pg_catalog.*' }), {}, 'postgresql'))).toMatch(/system schema/);
  });

  it('accepts ordinary names that only look similar', () => {
    expect(parseDynamicRecipe(recipe({ what: 'SELECT', where: 'pgx.*' }), {}, 'postgresql').grants[0].schema).toBe('pgx');
    expect(parseDynamicRecipe(recipe({ what: 'SELECT', where: 'mysql_app.*' }), {}, 'mysql').grants[0].schema).toBe('mysql_app');
  });

  it.each([
    ['postgresql', 'TRIGGER'],
    ['postgresql', 'MAINTAIN'],
    ['mysql', 'PROCESS'],
    ['mysql', 'SUPER'],
    ['mysql', 'FILE'],
    ['mysql', 'CREATE USER'],
    ['mysql', 'GRANT OPTION'],
    ['mysql', 'SHOW DATABASES'],
  ] as const)('refuses the %s privilege %s', (engine, what) => {
    expect(usageMessage(() => parseDynamicRecipe(recipe({ what, where: 'app.*' }), {}, engine))).toMatch(/is not a .* privilege sy can grant/);
  });

  it('refuses a database-only MySQL privilege on a table', () => {
    expect(usageMessage(() => parseDynamicRecipe(recipe({ what: 'SELECT, LOCK TABLES', where: 'app.t' }), {}, 'mysql'))).toBe(
      'grantPermissions.what: LOCK TABLES can be granted only on a whole database ("app.*"), not on a table.',
    );
    expect(parseDynamicRecipe(recipe({ what: 'ALL', where: 'app.t' }), {}, 'mysql').grants[0].privileges).toEqual(['ALL']);
  });

  it('takes reassignTo on PostgreSQL only, as a plain role name', () => {
    expect(parseDynamicRecipe(recipe({ what: 'SELECT', where: '*.*' }, { reassignTo: 'app_graveyard' }), {}, 'postgresql').reassignTo).toBe('app_graveyard');
    expect(usageMessage(() => parseDynamicRecipe(recipe({ what: 'SELECT', where: '*.*' }, { reassignTo: 'x"; DROP' }), {}, 'postgresql'))).toMatch(/reassignTo/);
    expect(usageMessage(() => parseDynamicRecipe(recipe({ what: 'SELECT', where: '*.*' }, { reassignTo: 'pg_monitor' }), {}, 'postgresql'))).toMatch(/reassignTo/);
    expect(usageMessage(() => parseDynamicRecipe(recipe({ what: 'SELECT', where: 'app.*' }, { reassignTo: 'g' }), {}, 'mysql'))).toMatch(/PostgreSQL only/);
  });

  it("allows {{password}} in MySQL templates only as IDENTIFIED BY '{{password}}'", () => {
    const ok = ["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'", "GRANT SELECT ON app.* TO '{{name}}'@'%'"];
    expect(parseDynamicRecipe(recipe({ what: 'SELECT', where: 'app.*' }, { creationStatements: ok }), {}, 'mysql').creationStatements).toEqual(ok);
    for (const bad of ["SET PASSWORD FOR '{{name}}'@'%' = PASSWORD('{{password}}')", "CREATE USER '{{name}}' IDENTIFIED VIA ed25519 USING PASSWORD('{{password}}')"]) {
      expect(usageMessage(() => parseDynamicRecipe(recipe({ what: 'SELECT', where: 'app.*' }, { creationStatements: [bad] }), {}, 'mysql'))).toMatch(
        /may appear only as IDENTIFIED BY/,
      );
    }
    // PostgreSQL templates get the SCRAM verifier in place of the password, wherever it appears.
    expect(parseDynamicRecipe(recipe({ what: 'SELECT', where: 'app.*' }, { creationStatements: ["ALTER ROLE \"{{name}}\" PASSWORD '{{password}}'"] }), {}, 'postgresql').creationStatements).toHaveLength(1);
  });
});
