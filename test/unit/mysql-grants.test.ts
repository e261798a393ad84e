import { databasePatternMatches, notGrantable, parseGrantLine } from '../../src/targets/mysql/grants.js';

describe('parseGrantLine (SHOW GRANTS, as MariaDB and MySQL print it)', () => {
  test('global, database and table levels, with and without GRANT OPTION', () => {
    expect(parseGrantLine('GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION')).toEqual({
      on: { kind: 'global' }, privileges: new Set(['ALL PRIVILEGES']), grantable: true,
    });
    expect(parseGrantLine("GRANT CREATE USER ON *.* TO `adm`@`%` IDENTIFIED BY PASSWORD '*D821809F681A40A6E379B50D0463EFAE20BDD122'")).toEqual({
      on: { kind: 'global' }, privileges: new Set(['CREATE USER']), grantable: false,
    });
    expect(parseGrantLine('GRANT SELECT, INSERT, CREATE TEMPORARY TABLES ON `app\\_db`.* TO `adm`@`%` WITH GRANT OPTION')).toEqual({
      on: { kind: 'database', pattern: 'app\\_db' }, privileges: new Set(['SELECT', 'INSERT', 'CREATE TEMPORARY TABLES']), grantable: true,
    });
    expect(parseGrantLine('GRANT UPDATE ON `app`.`items` TO `adm`@`%`')).toEqual({
      on: { kind: 'table', database: 'app', table: 'items' }, privileges: new Set(['UPDATE']), grantable: false,
    });
    expect(parseGrantLine('GRANT DELETE ON `app`.* TO `a_role` WITH GRANT OPTION')?.grantable).toBe(true);
  });

  test('quoted names may hold what looks like syntax', () => {
    expect(parseGrantLine('GRANT SELECT ON `we``ird ON x`.`t TO y` TO `WITH GRANT OPTION`@`%`')).toEqual({
      on: { kind: 'table', database: 'we`ird ON x', table: 't TO y' }, privileges: new Set(['SELECT']), grantable: false,
    });
  });

  test('column grants give nothing on the table; role memberships, routines and PROXY are not privileges on data', () => {
    expect(parseGrantLine('GRANT SELECT (`a`, `b`), INSERT ON `app`.`t` TO `u`@`%`')?.privileges).toEqual(new Set(['INSERT']));
    expect(parseGrantLine('GRANT `a_role` TO `u`@`%`')).toBeUndefined();
    expect(parseGrantLine('GRANT EXECUTE ON PROCEDURE `app`.`p` TO `u`@`%`')).toBeUndefined();
    expect(parseGrantLine("GRANT PROXY ON ''@'%' TO 'root'@'localhost' WITH GRANT OPTION")).toBeUndefined();
    expect(parseGrantLine('SET DEFAULT ROLE `a_role` FOR `u`@`%`')).toBeUndefined();
  });
});

describe('databasePatternMatches', () => {
  test('_ and % are wildcards unless escaped; case counts unless names are folded', () => {
    expect(databasePatternMatches('app_db', 'appXdb', false)).toBe(true);
    expect(databasePatternMatches('app\\_db', 'appXdb', false)).toBe(false);
    expect(databasePatternMatches('app\\_db', 'app_db', false)).toBe(true);
    expect(databasePatternMatches('app%', 'application', false)).toBe(true);
    expect(databasePatternMatches('a.p', 'axp', false)).toBe(false);
    expect(databasePatternMatches('App', 'app', false)).toBe(false);
    expect(databasePatternMatches('App', 'app', true)).toBe(true);
  });
});

describe('notGrantable', () => {
  const held = [
    'GRANT CREATE USER ON *.* TO `adm`@`%`',
    'GRANT SELECT, INSERT ON `app`.* TO `adm`@`%` WITH GRANT OPTION',
    'GRANT UPDATE ON `app`.`items` TO `adm`@`%`',
    'GRANT SELECT ON `ro`.* TO `adm`@`%`',
  ].map((line) => parseGrantLine(line)!);

  test('privileges add up over the levels, with GRANT OPTION held at any of them', () => {
    expect(notGrantable(held, ['SELECT', 'INSERT', 'UPDATE'], 'app', 'items', false)).toEqual([]);
    expect(notGrantable(held, ['SELECT', 'UPDATE'], 'app', undefined, false)).toEqual(['UPDATE']);
    expect(notGrantable(held, ['SELECT', 'DELETE'], 'app', 'other', false)).toEqual(['DELETE']);
  });

  test('without GRANT OPTION nothing can be handed out, not even what is held', () => {
    expect(notGrantable(held, ['SELECT'], 'ro', undefined, false)).toEqual(['SELECT']);
    expect(notGrantable(held, ['SELECT'], 'elsewhere', 't', false)).toEqual(['SELECT']);
  });

  test('ALL PRIVILEGES covers every privilege of its level', () => {
    const root = [parseGrantLine('GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION')!];
    expect(notGrantable(root, ['SELECT', 'EVENT', 'CREATE VIEW'], 'anything', undefined, false)).toEqual([]);
  });
});
