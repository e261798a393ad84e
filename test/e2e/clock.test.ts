/**
 * A lease's times come from the target server's clock, through the built bin/sy run under
 * faketime (libfaketime: this process's clock moved, the server's left alone), on the SCRAM
 * PostgreSQL cluster and on MariaDB. More than 60 s apart, `lease create` refuses with one
 * sentence naming both times and creates nothing; less, the lease follows the server, and a
 * sweep on a correct clock revokes it on time.
 */
import { execa } from 'execa';
import { parseManagedName } from '../../src/targets/names.js';
import { leaseRunner, makeHome, type SyHome, SY_BIN, type SyResult } from '../helpers/cli.js';
import {
  createMyDatabase,
  createPgDatabase,
  dropMyDatabase,
  dropMyUsers,
  dropPgDatabase,
  dropPgRoles,
  expectExit,
  MARIADB,
  ms,
  myAdminQuery,
  myManagedUsers,
  myUserExists,
  pgAdminQuery,
  pgManagedRoles,
  pgRoleExists,
  pgValidUntil,
  scramCluster,
  tag,
} from '../helpers/db.js';
import { sleep } from '../helpers/revocation.js';

const T = tag();
const MAX_TTL = 600;
/** REAP_GRACE_MS of src/leases/deps.ts: the name's bound is the max expiry plus this. */
const REAP_GRACE_MS = 10_000;

interface Engine {
  name: string;
  prefix: string;
  setUp(): Promise<{ base: Record<string, unknown>; type: string; where: string }>;
  tearDown(users: string[]): Promise<void>;
  serverNow(): Promise<number>;
  users(prefix: string): Promise<string[]>;
  exists(user: string): Promise<boolean>;
}

const PG_DB = `sy_clk_${T}`;
const MY_DB = `sy_clk_${T}`;

const ENGINES: Engine[] = [
  {
    name: 'PostgreSQL',
    prefix: `ckp${T}_`,
    async setUp() {
      await createPgDatabase(PG_DB, ['CREATE SCHEMA app; CREATE TABLE app.items (id int)']);
      const admin = scramCluster();
      return { type: 'postgresql', where: 'app.items', base: { host: admin.host, port: admin.port, username: admin.user, password: admin.password, database: PG_DB } };
    },
    async tearDown(users) {
      await dropPgRoles([...users, ...(await pgManagedRoles(this.prefix))], [PG_DB]);
      await dropPgDatabase(PG_DB);
    },
    async serverNow() {
      const [row] = await pgAdminQuery<{ now: Date }>('SELECT clock_timestamp() AS now');
      return row.now.getTime();
    },
    users: (prefix) => pgManagedRoles(prefix),
    exists: (user) => pgRoleExists(user),
  },
  {
    name: 'MariaDB',
    prefix: `ckm${T}_`,
    async setUp() {
      await createMyDatabase(MY_DB, ['CREATE TABLE {{db}}.items (id INT)']);
      return { type: 'mariadb', where: `${MY_DB}.*`, base: { host: MARIADB.host, port: MARIADB.port, username: MARIADB.user, password: MARIADB.password } };
    },
    async tearDown(users) {
      await dropMyUsers([...users, ...(await myManagedUsers(this.prefix))]);
      await dropMyDatabase(MY_DB);
    },
    async serverNow() {
      const [row] = await myAdminQuery<{ now: string }>('SELECT UNIX_TIMESTAMP(NOW(6)) AS now');
      return Math.round(Number(row.now) * 1000);
    },
    users: (prefix) => myManagedUsers(prefix),
    exists: (user) => myUserExists(user),
  },
];

describe.each(ENGINES)('$name', (engine) => {
  let sy: SyHome;
  const { ok, issued, remember } = leaseRunner(() => sy);

  /** bin/sy with this machine's clock moved by `offset` (faketime's syntax: `+3y`, `-50s`). */
  async function skewed(offset: string, args: string[]): Promise<SyResult> {
    const result = await execa('faketime', ['-f', offset, SY_BIN, ...args], {
      env: { PATH: process.env.PATH, ...sy.env },
      extendEnv: false,
      reject: false,
      stdin: 'ignore',
      timeout: 60_000,
    });
    return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
  }

  beforeAll(async () => {
    const { base, type, where } = await engine.setUp();
    sy = await makeHome();
    await ok(['secret', 'create', 'db:clk:root', '--attributes', JSON.stringify({ type }), '--data', '-'], { input: JSON.stringify(base) });
    await ok([
      'secret', 'create', 'db:clk:app', '--attributes',
      JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: 'db:clk:root' }, grantPermissions: { what: 'SELECT', where }, userPrefix: engine.prefix, ttl: 300, maxTtl: MAX_TTL }),
    ]);
  });

  afterAll(async () => {
    if (sy) {
      await sy.run(['dynamic', 'lease', 'revoke', '--prefix', 'db', '--yes', '--force']).catch(() => undefined);
      sy.cleanup();
    }
    await engine.tearDown(issued.map((l) => l.username));
  });

  test.each([
    ['years ahead of', '+3y'],
    ['minutes ahead of', '+5m'],
    ['minutes behind', '-5m'],
  ])('a local clock %s the server’s: refused with one sentence naming both times, and nothing is created', async (_how, offset) => {
    const before = await engine.users(engine.prefix);
    const serverBefore = await engine.serverNow();
    const result = await skewed(offset, ['dynamic', 'lease', 'create', '--path', 'db:clk:app']);
    const serverAfter = await engine.serverNow();
    expectExit(result, 1);
    expect(result.stdout).toBe('');
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    const times = /clock says (\S+) but .* says (\S+), more than 60 seconds apart/.exec(lines[0]);
    expect(times).not.toBeNull();
    // The server's time is the server's; this machine's is off by about the offset.
    expect(ms(times![2])).toBeGreaterThanOrEqual(Math.floor(serverBefore / 1000) * 1000);
    expect(ms(times![2])).toBeLessThanOrEqual(serverAfter);
    expect(Math.abs(ms(times![1]) - ms(times![2]))).toBeGreaterThan(4 * 60_000);

    expect(await engine.users(engine.prefix)).toEqual(before);
    const { data } = await ok<{ data: { state: string }[] }>(['dynamic', 'lease', 'list', '--all', '--path', 'db:clk:app']);
    expect(data.filter((l) => l.state !== 'revoked')).toEqual([]);
  });

  test('a local clock less than a minute off: the lease’s times follow the server, and a sweep on a correct clock revokes it on time', async () => {
    // Behind by less than a minute works the same way. Done first: every command sweeps before
    // it runs, so nothing may run between the short lease below and the sweep that must revoke it.
    const behind = await skewed('-50s', ['dynamic', 'lease', 'create', '--path', 'db:clk:app']);
    expectExit(behind, 0);
    const other = remember(JSON.parse(behind.stdout));
    expect(Math.abs(ms(other.created_at) - (await engine.serverNow()))).toBeLessThan(30_000);
    await ok(['dynamic', 'lease', 'revoke', other.lease_id]);

    const serverBefore = await engine.serverNow();
    const created = await skewed('+50s', ['dynamic', 'lease', 'create', '--path', 'db:clk:app', '--ttl', '3']);
    const serverAfter = await engine.serverNow();
    expectExit(created, 0);
    const lease = remember(JSON.parse(created.stdout));
    // created_at may be printed to the second.
    expect(ms(lease.created_at)).toBeGreaterThanOrEqual(Math.floor(serverBefore / 1000) * 1000);
    expect(ms(lease.created_at)).toBeLessThanOrEqual(serverAfter);
    expect(ms(lease.expires_at) - ms(lease.created_at)).toBe(3000);
    const bound = parseManagedName(lease.username)!.reapAfter.getTime();
    expect(bound).toBeLessThanOrEqual(serverAfter + MAX_TTL * 1000 + REAP_GRACE_MS + 1000);
    if (engine.name === 'PostgreSQL') expect(Math.floor((await pgValidUntil(lease.username))!.getTime() / 1000) * 1000).toBe(ms(lease.expires_at));

    // On a correct clock, past the lease's expiry by the server's: the sweep revokes it.
    // expires_at is printed to the second: the lease really expires within the second after.
    while ((await engine.serverNow()) < ms(lease.expires_at) + 1500) await sleep(250);
    const sweep = await ok(['dynamic', 'sweep']);
    expect(sweep.revoked).toBeGreaterThanOrEqual(1);
    expect(await engine.exists(lease.username)).toBe(false);
    expect(await ok(['dynamic', 'lease', 'lookup', lease.lease_id])).toMatchObject({ state: 'revoked' });
  });
});
