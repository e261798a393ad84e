/**
 * The PostgreSQL attack of attacks.search-path.test.ts, tried on MariaDB through the built
 * bin/sy: a lease that may create routines in the base secret's default database defines
 * stored functions named like every built-in sy calls (CONCAT, SUBSTRING_INDEX,
 * UNIX_TIMESTAMP, CONNECTION_ID, VERSION), each writing a marker row as whoever runs it.
 * MariaDB resolves an unqualified call to the built-in (note 1585 when such a function is
 * created), so the sweep, the recipe check, lease create and revoke never run them.
 */
import { leaseRunner, makeHome, type SyHome } from '../helpers/cli.js';
import { createMyDatabase, dropMyDatabase, dropMyUsers, MARIADB, myAdminQuery, myConnect, myManagedUsers, myUserExists, tag } from '../helpers/db.js';

const T = tag();
const DB = `sy_mynames_${T}`;
const PREFIX = `mn${T}_`;

/** Each stored function writes who ran it; the lease may run them itself, the admin never. */
const SHADOWS = [
  ['concat', 'a TEXT, b TEXT', 'TEXT', "CONCAT('', a, b)"],
  ['substring_index', 'a TEXT, b TEXT, c INT', 'TEXT', 'a'],
  ['unix_timestamp', 'a DATETIME(6)', 'DECIMAL(20,6)', '0'],
  ['connection_id', '', 'BIGINT', '0'],
  ['version', '', 'TEXT', "'x'"],
].map(
  ([name, args, returns, value]) =>
    `CREATE FUNCTION \`${DB}\`.${name}(${args}) RETURNS ${returns} MODIFIES SQL DATA SQL SECURITY INVOKER
       BEGIN INSERT INTO \`${DB}\`.marker VALUES (CURRENT_USER(), '${name}'); RETURN ${value}; END`,
);

let sy: SyHome;
const { ok, run, create, issued } = leaseRunner(() => sy);

const recipe = (what: string): string =>
  JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: 'db:my:root' }, grantPermissions: { what, where: `${DB}.*` }, userPrefix: PREFIX, ttl: 600 });

beforeAll(async () => {
  await createMyDatabase(DB, ['CREATE TABLE {{db}}.marker (who VARCHAR(200), via VARCHAR(40))', 'CREATE TABLE {{db}}.items (id INT)']);
  sy = await makeHome();
  // The admin's default database is the one the lease writes: unqualified names would look there first.
  await ok(['secret', 'create', 'db:my:root', '--attributes', '{"type": "mariadb"}', '--data', '-'], {
    input: JSON.stringify({ host: MARIADB.host, port: MARIADB.port, username: MARIADB.user, password: MARIADB.password, database: DB }),
  });
  await ok(['secret', 'create', 'db:my:routines', '--attributes', recipe('SELECT, INSERT, CREATE ROUTINE')]);
});

afterAll(async () => {
  if (sy) {
    await sy.run(['dynamic', 'lease', 'revoke', '--prefix', 'db', '--yes', '--force']).catch(() => undefined);
    sy.cleanup();
  }
  await dropMyUsers([...issued.map((l) => l.username), ...(await myManagedUsers(PREFIX))]);
  await dropMyDatabase(DB);
});

test('stored functions named like the built-ins sy calls never run as the admin', async () => {
  const attacker = await create('db:my:routines');
  const session = await myConnect({ host: MARIADB.host, port: MARIADB.port, user: attacker.username, password: attacker.password, database: DB });
  try {
    for (const statement of SHADOWS) await session.query(statement);
    // They exist and work when called by name.
    await session.query(`SELECT \`${DB}\`.version() AS v`);
  } finally {
    await session.end();
  }
  const planted = await myAdminQuery('SELECT routine_name AS name FROM information_schema.routines WHERE routine_schema = ? ORDER BY 1', [DB]);
  expect(planted.map((r) => String(r.name).toLowerCase())).toEqual(['concat', 'connection_id', 'substring_index', 'unix_timestamp', 'version']);

  await ok(['dynamic', 'sweep']);
  await ok(['secret', 'create', `db:my:check${tag(3)}`, '--attributes', recipe('SELECT')]);
  await run(['secret', 'create', `db:my:every${tag(3)}`, '--attributes', JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: 'db:my:root' }, grantPermissions: { what: 'SELECT', where: '*.*' } })]);
  const other = await create('db:my:routines');
  await ok(['dynamic', 'lease', 'revoke', other.lease_id]);
  await ok(['dynamic', 'lease', 'revoke', attacker.lease_id]);
  expect(await myUserExists(attacker.username)).toBe(false);

  const marks = await myAdminQuery(`SELECT DISTINCT who, via FROM \`${DB}\`.marker ORDER BY via`);
  // The lease's own call wrote its row: the plant works, and only the lease ever ran it.
  expect(marks.map((m) => `${m.who} ${m.via}`)).toEqual([`${attacker.username}@% version`]);
});

test('a package a lease defined in Oracle mode (MariaDB) does not keep it from being revoked, and goes with it', async () => {
  const lease = await create('db:my:routines');
  const session = await myConnect({ host: MARIADB.host, port: MARIADB.port, user: lease.username, password: lease.password, database: DB });
  const PKG = `pkg_${T}`;
  try {
    // Any session may switch to sql_mode ORACLE, where CREATE ROUTINE allows packages.
    await session.query("SET sql_mode = 'ORACLE'");
    await session.query(`CREATE PACKAGE \`${DB}\`.${PKG} AS FUNCTION f RETURN INT; END`);
    await session.query(`CREATE PACKAGE BODY \`${DB}\`.${PKG} AS FUNCTION f RETURN INT AS BEGIN RETURN 1; END; END`);
  } finally {
    await session.end();
  }
  const routines = async () => (await myAdminQuery('SELECT routine_type AS kind FROM information_schema.routines WHERE routine_schema = ? AND routine_name = ? ORDER BY 1', [DB, PKG])).map((r) => String(r.kind));
  expect(await routines()).toEqual(['PACKAGE', 'PACKAGE BODY']);
  await ok(['dynamic', 'lease', 'revoke', lease.lease_id]);
  expect(await myUserExists(lease.username)).toBe(false);
  expect(await routines()).toEqual([]);
});

test('another lease that keeps a transaction open on a table where this lease defined a trigger is ended, and stays a lease', async () => {
  const path = `db:my:triggers${tag(3)}`;
  await ok(['secret', 'create', path, '--attributes', recipe('SELECT, INSERT, TRIGGER')]);
  const owner = await create(path);
  const other = await create(path);
  const TRIGGER = `trg_${T}`;
  const mine = await myConnect({ host: MARIADB.host, port: MARIADB.port, user: owner.username, password: owner.password, database: DB });
  try {
    await mine.query(`CREATE TRIGGER \`${DB}\`.${TRIGGER} BEFORE INSERT ON \`${DB}\`.items FOR EACH ROW SET NEW.id = NEW.id`);
  } finally {
    await mine.end();
  }
  // The open transaction holds the table's metadata lock, which DROP TRIGGER must wait for.
  const blocker = await myConnect({ host: MARIADB.host, port: MARIADB.port, user: other.username, password: other.password, database: DB });
  try {
    await blocker.query('BEGIN');
    await blocker.query(`SELECT * FROM \`${DB}\`.items`);
    await ok(['dynamic', 'lease', 'revoke', owner.lease_id]);
    expect(await myUserExists(owner.username)).toBe(false);
    expect(await myAdminQuery('SELECT trigger_name FROM information_schema.triggers WHERE trigger_schema = ? AND trigger_name = ?', [DB, TRIGGER])).toEqual([]);
    await expect(blocker.query('SELECT 1')).rejects.toThrow();
  } finally {
    await blocker.end().catch(() => undefined);
  }
  // Only its session ended: the other lease still logs in.
  const again = await myConnect({ host: MARIADB.host, port: MARIADB.port, user: other.username, password: other.password, database: DB });
  await again.end();
});

test('another lease in a transaction that called this lease\'s function (no InnoDB transaction) is ended, and stays a lease', async () => {
  const path = `db:my:execute${tag(3)}`;
  await ok(['secret', 'create', path, '--attributes', recipe('SELECT, CREATE ROUTINE, EXECUTE')]);
  const owner = await create(path);
  const other = await create(path);
  const FN = `fn_${T}`;
  const mine = await myConnect({ host: MARIADB.host, port: MARIADB.port, user: owner.username, password: owner.password, database: DB });
  try {
    await mine.query(`CREATE FUNCTION \`${DB}\`.${FN}() RETURNS INT DETERMINISTIC SQL SECURITY DEFINER RETURN 1`);
  } finally {
    await mine.end();
  }
  // The function's metadata lock lasts until the transaction ends: DROP FUNCTION must wait for it.
  const blocker = await myConnect({ host: MARIADB.host, port: MARIADB.port, user: other.username, password: other.password, database: DB });
  try {
    await blocker.query('BEGIN');
    await blocker.query(`SELECT \`${DB}\`.${FN}() AS one`);
    await ok(['dynamic', 'lease', 'revoke', owner.lease_id]);
    expect(await myUserExists(owner.username)).toBe(false);
    expect(await myAdminQuery('SELECT routine_name FROM information_schema.routines WHERE routine_schema = ? AND routine_name = ?', [DB, FN])).toEqual([]);
    await expect(blocker.query('SELECT 1')).rejects.toThrow();
  } finally {
    await blocker.end().catch(() => undefined);
  }
  const again = await myConnect({ host: MARIADB.host, port: MARIADB.port, user: other.username, password: other.password, database: DB });
  await again.end();
});
