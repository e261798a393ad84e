/**
 * sy on a real terminal: a tmux pane (a pseudo-terminal of a fixed size) running an
 * interactive bash, typed into with send-keys and read with capture-pane. Covers the
 * secret wizard, the passphrase prompts of `sy init`, Ctrl-C, the confirmation of
 * destructive acts, and what a terminal changes in the output (tables, colour, spinners)
 * against the same commands without one. Targets: the machine's PostgreSQL on
 * 127.0.0.1:5432 (postgres, trust).
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import pg from 'pg';
import { makeHome, ROOT, runSy, type SyHome } from '../helpers/cli.js';
import { LOCAL_PG, localPgQuery, pgConnect, tag } from '../helpers/db.js';
import { ESC, hasSpinnerFrame, Pane, shq } from '../helpers/tmux.js';

const T = tag();
const DB = `sy_e2e_term_${T}`;
const PREFIX = `t${T}_`;
/** The admin password typed into the wizard: it must never be drawn on the screen. */
const ADMIN_PASSWORD = `Wz-${T}-pa55word`;
const BASE = `db:postgresql:term${T}`;
const DYN = `db:postgresql:termdyn${T}`;
/** A base whose connections go through a proxy that holds them 1.5 s: the spinner has time to spin. */
const SLOW_BASE = `db:postgresql:slow${T}`;
const SLOW_DYN = `db:postgresql:slowdyn${T}`;
/** Local time zone of the pane (UTC+05:30 all year), so local times differ from UTC. */
const TZ = 'Asia/Kolkata';
const TZ_OFFSET_MS = 330 * 60_000;

const roleExists = async (name: string) => (await localPgQuery('SELECT 1 FROM pg_roles WHERE rolname = $1', [name])).length === 1;

/** `2026-04-06T12:00:00Z` as the pane's local time with its offset, the way tables print it. */
const paneLocal = (iso: string) => `${new Date(Date.parse(iso) + TZ_OFFSET_MS).toISOString().slice(0, 19).replace('T', ' ')} +05:30`;

/** The rows of a KEY/VALUE table as an object. */
function keyValues(table: string): Record<string, string> {
  const rows: Record<string, string> = {};
  for (const line of table.split('\n')) {
    const match = /^(\w+)\s{2,}(.*?)\s*$/.exec(line);
    if (match && match[1] !== 'KEY') rows[match[1]] = match[2];
  }
  return rows;
}

let sy: SyHome;
let pane: Pane;
let proxy: Server;
const proxied = new Set<Socket>();

/** Runs sy without a terminal in the test's store. */
const syPlain = (args: string[], env: Record<string, string | undefined> = {}) => sy.run(args, { env });

beforeAll(async () => {
  await localPgQuery(`CREATE DATABASE ${pg.escapeIdentifier(DB)}`);
  await localPgQuery('CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)', [], DB);
  proxy = createServer((client) => {
    proxied.add(client);
    client.on('error', () => undefined);
    client.pause();
    setTimeout(() => {
      const upstream = connect(LOCAL_PG.port, LOCAL_PG.host);
      proxied.add(upstream);
      upstream.on('error', () => client.destroy());
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    }, 1500);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const proxyPort = (proxy.address() as { port: number }).port;

  sy = await makeHome();
  // Another base secret, so that the wizard's list has a choice to make.
  for (const [path, attributes, data] of [
    [`db:mariadb:other${T}`, { type: 'mariadb' }, { host: '127.0.0.1', port: 3306, username: 'root', password: 'x' }],
    [SLOW_BASE, { type: 'postgresql' }, { host: '127.0.0.1', port: proxyPort, username: 'postgres', password: 'x', database: DB }],
    [SLOW_DYN, { linkConfig: { linkType: 'dynamic', linkedSecret: SLOW_BASE }, grantPermissions: { what: 'SELECT', where: '*.*' }, ttl: 3600, userPrefix: PREFIX }, {}],
  ] as const) {
    const created = await syPlain(['secret', 'create', path, '--attributes', JSON.stringify(attributes), '--data', JSON.stringify(data)]);
    if (created.exitCode !== 0) throw new Error(`creating ${path}: ${created.stderr}`);
  }
  pane = await Pane.start({
    env: {
      PATH: `${join(ROOT, 'bin')}:${process.env.PATH}`,
      HOME: sy.home,
      TZ,
      LANG: 'C.UTF-8',
      ...sy.env,
    },
    cwd: sy.home,
  });
});

afterAll(async () => {
  pane?.kill();
  if (sy) {
    await syPlain(['dynamic', 'lease', 'revoke', '--prefix', 'db', '--yes']).catch(() => undefined);
    sy.cleanup();
  }
  for (const socket of proxied) socket.destroy();
  await new Promise((resolve) => proxy?.close(resolve));
  const left = await localPgQuery<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)', [PREFIX]);
  for (const { rolname } of left) {
    await localPgQuery(`DROP OWNED BY ${pg.escapeIdentifier(rolname)}`, [], DB).catch(() => undefined);
    await localPgQuery(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(rolname)}`).catch(() => undefined);
  }
  await localPgQuery(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(DB)} WITH (FORCE)`);
});

describe('the secret wizard, then a lease, in one terminal', () => {
  test('creates a PostgreSQL base secret field by field, showing the password only masked', async () => {
    const typed = pane.command(`sy secret create ${BASE}`);
    await typed.waitFor('What kind of secret?');
    pane.press('Enter'); // base: the first choice
    await typed.waitFor('Description (optional):');
    pane.type('terminal base');
    pane.press('Enter');
    await typed.waitFor('Database type:');
    pane.press('Enter'); // postgresql: the first choice
    await typed.waitFor(/Host: \(127\.0\.0\.1\)/);
    pane.press('Enter');
    await typed.waitFor(/Port: \(5432\)/);
    pane.press('Enter');
    await typed.waitFor(/Admin user: \(postgres\)/);
    pane.press('Enter');
    await typed.waitFor('Admin password:');
    pane.type(ADMIN_PASSWORD);
    pane.press('Enter');
    await typed.waitFor('Database: (postgres)');
    pane.type(DB);
    pane.press('Enter');
    // The connection is tested with what was typed, against the local PostgreSQL.
    await typed.waitFor('Test the connection to 127.0.0.1:5432 now? (Y/n)');
    pane.press('Enter');
    await typed.waitFor('Connected to PostgreSQL at 127.0.0.1:5432 as postgres.');
    const review = await typed.waitFor('Save this secret?');
    expect(review).toContain('"password": "********"');
    expect(review).toContain(`"path": "${BASE}"`);
    pane.type('y');
    pane.press('Enter');
    expect(await typed.status()).toBe(0);
    // The saved secret holds what was typed.
    const secret = JSON.parse((await syPlain(['secret', 'read', BASE])).stdout);
    expect(secret).toMatchObject({
      path: BASE,
      description: 'terminal base',
      attributes: { type: 'postgresql' },
      data: { host: '127.0.0.1', port: 5432, username: 'postgres', password: ADMIN_PASSWORD, database: DB },
    });
    expect(pane.capture()).not.toContain(ADMIN_PASSWORD);
  });

  test('creates a dynamic secret by picking that base from the list; a wrong answer is asked again, nothing lost', async () => {
    const typed = pane.command(`sy secret create ${DYN}`);
    await typed.waitFor('What kind of secret?');
    pane.press('Down', 'Enter'); // dynamic
    await typed.waitFor('Description (optional):');
    pane.type('picked from the list');
    pane.press('Enter');
    const list = await typed.waitFor(/Base secret:[\s\S]*navigate/);
    const choices = list.slice(list.indexOf('Base secret:')).split('\n').slice(1).filter((line) => /^[❯ ] /.test(line));
    expect(choices.length).toBeGreaterThanOrEqual(3); // the two bases made with flags and the wizard's
    const index = choices.findIndex((line) => line.includes(`${BASE} (postgresql)`));
    expect(index).toBeGreaterThanOrEqual(0);
    for (let i = 0; i < index; i++) pane.press('Down');
    await typed.waitFor(new RegExp(`❯ ${BASE.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(postgresql\\)`));
    pane.press('Enter');
    // A typo in a privilege is caught at once, with a hint, and the question asked again.
    await typed.waitFor(/Privileges to grant \(comma-separated\): \(SELECT\)/);
    pane.type('SELECT, INSRT');
    pane.press('Enter');
    await typed.waitFor('"INSRT" is not a PostgreSQL privilege sy can grant; did you mean INSERT?');
    pane.press('C-u');
    pane.type('SELECT');
    pane.press('Enter');
    // It names the base's database, whose schemas `*.*` means.
    await typed.waitFor(`On (*.*, schema.*, schema.table) in database ${DB}: (*.*)`);
    pane.press('Enter');
    // Durations as --ttl takes them; a wrong one is asked again.
    await typed.waitFor(/Default lease TTL \(seconds, or 90s, 15m, 1h30m\): \(1h\)/);
    pane.type('10x');
    pane.press('Enter');
    await typed.waitFor('"10x" is not a duration');
    pane.press('C-u');
    pane.type('10m');
    pane.press('Enter');
    await typed.waitFor(/Longest lease, renewals included \(maxTtl, at most 24h\): \(24h\)/);
    pane.type('5m');
    pane.press('Enter');
    await typed.waitFor('maxTtl (300 s) must be at least the TTL (600 s).');
    pane.press('C-u');
    pane.type('2h');
    pane.press('Enter');
    await typed.waitFor('Daemon pool:');
    pane.press('Enter');
    await typed.waitFor('User name prefix (optional):');
    pane.type(PREFIX);
    pane.press('Enter');
    await typed.waitFor(`Test the connection to 127.0.0.1:5432 (${BASE}) now? (Y/n)`);
    pane.type('n');
    pane.press('Enter');
    const review = await typed.waitFor('Save this secret?');
    expect(review).toContain('"ttl": 600');
    pane.type('y');
    pane.press('Enter');
    expect(await typed.status()).toBe(0);
    const described = JSON.parse((await syPlain(['secret', 'describe', DYN])).stdout);
    expect(described.description).toBe('picked from the list');
    expect(described.attributes).toEqual({
      linkConfig: { linkType: 'dynamic', linkedSecret: BASE },
      grantPermissions: { what: 'SELECT', where: '*.*' },
      ttl: 600,
      maxTtl: 7200,
      pool: 'default',
      userPrefix: PREFIX,
    });
    // The TTL asked for holds: a lease above maxTtl is refused.
    const tooLong = await syPlain(['dynamic', 'lease', 'create', '--path', DYN, '--ttl', '3h']);
    expect(tooLong.exitCode).toBe(2);
    expect(tooLong.stderr).toMatch(/maxTtl of 7200 seconds/);
  });

  test('a failed connection test says why in one sentence and asks whether to save anyway', async () => {
    const attempt = async (path: string, saveAnyway: 'y' | 'n') => {
      const typed = pane.command(`sy secret create ${path}`);
      await typed.waitFor('What kind of secret?');
      pane.press('Enter');
      await typed.waitFor('Description (optional):');
      pane.press('Enter');
      await typed.waitFor('Database type:');
      pane.press('Enter');
      await typed.waitFor('Host:');
      pane.press('Enter');
      await typed.waitFor('Port:');
      pane.type('1'); // nothing listens on port 1
      pane.press('Enter');
      await typed.waitFor('Admin user:');
      pane.press('Enter');
      await typed.waitFor('Admin password:');
      pane.type('whatever');
      pane.press('Enter');
      await typed.waitFor('Database: (postgres)');
      pane.press('Enter');
      await typed.waitFor('Test the connection to 127.0.0.1:1 now?');
      pane.press('Enter');
      const screen = await typed.waitFor('Save it anyway? (y/N)');
      expect(screen).toMatch(/^sy: Could not connect to PostgreSQL at 127\.0\.0\.1:1: connection refused\.$/m);
      pane.type(saveAnyway);
      pane.press('Enter');
      return typed;
    };
    const declined = await attempt(`db:postgresql:unreachable${T}`, 'n');
    expect(await declined.status()).toBe(130);
    expect(declined.output()).toMatch(/^sy: Nothing was saved\.$/m);
    expect((await syPlain(['secret', 'describe', `db:postgresql:unreachable${T}`])).exitCode).toBe(3);

    const saved = await attempt(`db:postgresql:later${T}`, 'y');
    await saved.waitFor('Save this secret?');
    pane.type('y');
    pane.press('Enter');
    expect(await saved.status()).toBe(0);
    expect(JSON.parse((await syPlain(['secret', 'describe', `db:postgresql:later${T}`])).stdout).attributes).toEqual({ type: 'postgresql' });
  });

  test('`sy dynamic lease create` in the same pane prints a table (bold header) and the lease works', async () => {
    const typed = pane.command(`sy dynamic lease create --path ${DYN}`);
    expect(await typed.status()).toBe(0);
    const out = typed.output();
    expect(out).toMatch(/^KEY\s+VALUE/m);
    const rows = keyValues(out);
    expect(rows).toMatchObject({ path: DYN, engine: 'postgresql', host: '127.0.0.1', port: '5432', database: DB, renewable: 'true' });
    expect(rows.username).toMatch(new RegExp(`^${PREFIX}[a-z0-9]{10}_sy[0-9a-z]{7}$`));
    expect(rows.password).toHaveLength(32);
    expect(rows.connection_string).toMatch(/^postgresql:\/\//);
    // On a terminal the header is bold; data rows are not.
    const coloured = typed.output({ escapes: true });
    expect(coloured).toMatch(/\x1b\[1mKEY\s+VALUE/);
    expect(coloured.split('\n').find((line) => line.includes('lease_id'))).not.toContain(`${ESC}1m`);
    // The user exists with the recipe's grant.
    expect(await roleExists(rows.username)).toBe(true);
    const client = await pgConnect({ ...LOCAL_PG, user: rows.username, password: rows.password, database: DB });
    try {
      expect((await client.query('SELECT count(*)::int AS n FROM t')).rows[0].n).toBe(2);
      await expect(client.query('INSERT INTO t VALUES (3)')).rejects.toMatchObject({ code: '42501' });
    } finally {
      await client.end();
    }
    // Its lease, as JSON elsewhere, keeps UTC and seconds.
    const lookup = JSON.parse((await syPlain(['dynamic', 'lease', 'lookup', rows.lease_id])).stdout);
    expect(lookup).toMatchObject({ lease_id: rows.lease_id, username: rows.username, state: 'active' });
    expect(lookup.expires_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  });

  test('lease tables show local times and human durations; JSON keeps UTC and seconds', async () => {
    const created = JSON.parse((await syPlain(['dynamic', 'lease', 'create', '--path', DYN, '--ttl', '1h'])).stdout);
    expect(created.lease_duration).toBe(3600);
    expect(created.expires_at).toMatch(/Z$/);

    const list = pane.command(`sy dynamic lease list --path ${DYN}`);
    expect(await list.status()).toBe(0);
    const row = list.output().split('\n').find((line) => line.includes(created.username));
    expect(row).toContain(paneLocal(created.expires_at));
    expect(row).toMatch(/\s(59m \d{1,2}s|1h)\s*$/);

    const lookup = pane.command(`sy dynamic lease lookup ${created.lease_id}`);
    expect(await lookup.status()).toBe(0);
    expect(keyValues(lookup.output()).expires_at).toBe(paneLocal(created.expires_at));
  });

  test('the table of `lease create` shows local times and a human duration too', async () => {
    const typed = pane.command(`sy dynamic lease create --path ${DYN} --ttl 1h`);
    expect(await typed.status()).toBe(0);
    const rows = keyValues(typed.output());
    const lease = JSON.parse((await syPlain(['dynamic', 'lease', 'lookup', rows.lease_id])).stdout);
    expect({ created_at: rows.created_at, expires_at: rows.expires_at }).toEqual({
      created_at: paneLocal(lease.created_at),
      expires_at: paneLocal(lease.expires_at),
    });
    expect(rows.lease_duration).toMatch(/^(1h|59m \d{1,2}s)$/);
  });
});

describe('prompts: cancel, confirm, passphrase', () => {
  test('Ctrl-C at a wizard prompt exits 130 and writes nothing', async () => {
    const path = `db:postgresql:cancelled${T}`;
    const typed = pane.command(`sy secret create ${path}`);
    await typed.waitFor('What kind of secret?');
    pane.press('Enter');
    await typed.waitFor('Description (optional):');
    pane.type('never saved');
    pane.press('Enter');
    await typed.waitFor('Database type:');
    pane.press('Enter');
    await typed.waitFor('Host:');
    pane.press('C-c');
    expect(await typed.status()).toBe(130);
    expect(typed.output()).toMatch(/^sy: Interrupted\.$/m);
    expect((await syPlain(['secret', 'describe', path])).exitCode).toBe(3);
    const search = JSON.parse((await syPlain(['secret', 'search', '--query', `cancelled${T}`])).stdout);
    expect(search.data).toEqual([]);
    const audit = readFileSync(join(sy.env.SY_HOME, 'audit.log'), 'utf8');
    expect(audit).not.toContain(`cancelled${T}`);
  });

  test('answering no at "Save this secret?" says nothing was saved, exits 130 and writes nothing', async () => {
    const path = `db:postgresql:declined${T}`;
    const typed = pane.command(`sy secret create ${path}`);
    await typed.waitFor('What kind of secret?');
    pane.press('Enter');
    await typed.waitFor('Description (optional):');
    pane.press('Enter');
    await typed.waitFor('Database type:');
    pane.press('Enter');
    for (const prompt of ['Host:', 'Port:', 'Admin user:']) {
      await typed.waitFor(prompt);
      pane.press('Enter');
    }
    await typed.waitFor('Admin password:');
    pane.type('whatever');
    pane.press('Enter');
    await typed.waitFor('Database: (postgres)');
    pane.press('Enter');
    await typed.waitFor('Test the connection to 127.0.0.1:5432 now?');
    pane.type('n');
    pane.press('Enter');
    await typed.waitFor('Save this secret?');
    pane.type('n');
    pane.press('Enter');
    expect(await typed.status()).toBe(130);
    expect(typed.output()).toMatch(/^sy: Nothing was saved\.$/m);
    expect(typed.output()).not.toContain('Interrupted');
    expect((await syPlain(['secret', 'describe', path])).exitCode).toBe(3);
  });

  test('`sy secret delete --force` asks first: no keeps the secret (and says so, exit 130), yes deletes it', async () => {
    const path = `app:doomed${T}`;
    expect((await syPlain(['secret', 'create', path, '--data', '{"k":"v"}'])).exitCode).toBe(0);

    // Without a terminal it needs --yes (exit 2, naming the flag).
    const plain = await syPlain(['secret', 'delete', path, '--force']);
    expect(plain.exitCode).toBe(2);
    expect(plain.stderr).toContain('--yes');

    const declined = pane.command(`sy secret delete --force ${path}`);
    await declined.waitFor(`Delete ${path} even if`);
    pane.type('n');
    pane.press('Enter');
    expect(await declined.status()).toBe(130);
    expect(declined.output()).toMatch(/^sy: Nothing was deleted\.$/m);
    expect(declined.output()).not.toContain('Interrupted');
    expect((await syPlain(['secret', 'describe', path])).exitCode).toBe(0);

    const accepted = pane.command(`sy secret delete --force ${path}`);
    await accepted.waitFor(`Delete ${path} even if`);
    pane.type('y');
    pane.press('Enter');
    expect(await accepted.status()).toBe(0);
    expect(accepted.output()).toContain(`Deleted ${path}`);
    expect((await syPlain(['secret', 'describe', path])).exitCode).toBe(3);
  });

  test('`sy dynamic lease revoke --prefix` asks first: no revokes nothing, yes revokes them all', async () => {
    await syPlain(['dynamic', 'lease', 'create', '--path', DYN, '--ttl', '10m']);
    const activeLeases = async () =>
      (JSON.parse((await syPlain(['dynamic', 'lease', 'list', '--path', DYN])).stdout).data as { username: string; state: string }[]).filter((l) => l.state === 'active');
    const active = await activeLeases();
    expect(active.length).toBeGreaterThanOrEqual(1);

    const plain = await syPlain(['dynamic', 'lease', 'revoke', '--prefix', DYN]);
    expect(plain.exitCode).toBe(2);
    expect(plain.stderr).toContain('--yes');

    const declined = pane.command(`sy dynamic lease revoke --prefix ${DYN}`);
    await declined.waitFor(`Revoke ${active.length} lease${active.length === 1 ? '' : 's'} under ${DYN}?`);
    pane.type('n');
    pane.press('Enter');
    expect(await declined.status()).toBe(130);
    expect(declined.output()).toMatch(/^sy: No lease was revoked\.$/m);
    expect(declined.output()).not.toContain('Interrupted');
    expect(await activeLeases()).toHaveLength(active.length);
    for (const { username } of active) expect(await roleExists(username)).toBe(true);

    const accepted = pane.command(`sy dynamic lease revoke --prefix ${DYN}`);
    await accepted.waitFor(`under ${DYN}?`);
    pane.type('y');
    pane.press('Enter');
    expect(await accepted.status()).toBe(0);
    expect(await activeLeases()).toEqual([]);
    for (const { username } of active) expect(await roleExists(username)).toBe(false);
  });

  test('Ctrl-C during `sy dynamic lease create` says `sy: Interrupted.` on one line, exits 130 and leaves no lease behind', async () => {
    const typed = pane.command(`sy dynamic lease create --path ${SLOW_DYN} --format json`);
    // The proxy holds the connection 1.5 s: the spinner says sy is connecting.
    await typed.waitFor('Connecting to PostgreSQL');
    pane.press('C-c');
    expect(await typed.status()).toBe(130);
    const lines = typed.output().split('\n').map((line) => line.replace(/^\^C/, '').trim()).filter((line) => line !== '');
    expect(lines).toEqual(['sy: Interrupted.']);
    const all = JSON.parse((await syPlain(['dynamic', 'lease', 'list', '--all', '--path', SLOW_DYN])).stdout).data as { state: string; username: string }[];
    expect(all.filter((l) => l.state !== 'revoked')).toEqual([]);
    for (const { username } of all) expect(await roleExists(username)).toBe(false);
    // The next command sweeps and has nothing to say.
    const next = pane.command(`SY_NO_SWEEP=0 sy dynamic lease list --path ${SLOW_DYN} --format json 2>&1 >/dev/null`);
    expect(await next.status()).toBe(0);
    expect(next.output().trim()).toBe('');
  });

  test('`sy init` asks for a passphrase twice (again after a mismatch); SY_PASSPHRASE then opens the store', async () => {
    const home = join(sy.home, 'passphrase-store');
    const first = `first-${T}-phrase`;
    const other = `other-${T}-phrase`;
    // No key variable, no D-Bus session: no keychain, so sy must ask.
    const typed = pane.command(`env -u SY_MASTER_KEY -u DBUS_SESSION_BUS_ADDRESS SY_HOME=${shq(home)} sy init`);
    await typed.waitFor('New passphrase for the sy store');
    pane.type(first);
    pane.press('Enter');
    await typed.waitFor('Repeat the passphrase:');
    pane.type(other);
    pane.press('Enter');
    await typed.waitFor('The two passphrases differ');
    await typed.waitFor(/The two passphrases differ[\s\S]*New passphrase for the sy store/);
    pane.type(first);
    pane.press('Enter');
    await typed.waitFor(/The two passphrases differ[\s\S]*Repeat the passphrase:/);
    pane.type(first);
    pane.press('Enter');
    expect(await typed.status()).toBe(0);
    const summary = keyValues(typed.output());
    expect(summary.home).toBe(home);
    expect(summary.key_source).toMatch(/passphrase/);
    const screen = pane.capture();
    expect(screen).not.toContain(first);
    expect(screen).not.toContain(other);

    // A normal process (no terminal) opens it with SY_PASSPHRASE.
    const env = { SY_HOME: home, HOME: sy.home, SY_NO_SWEEP: '1', SY_PASSPHRASE: first };
    expect((await runSy(['secret', 'create', 'app:pp', '--data', '{"k":"v"}'], env)).exitCode).toBe(0);
    const read = await runSy(['secret', 'read', 'app:pp', '--filter', 'data.k'], env);
    expect({ exitCode: read.exitCode, stdout: read.stdout }).toEqual({ exitCode: 0, stdout: 'v' });
    expect((await runSy(['secret', 'read', 'app:pp'], { ...env, SY_PASSPHRASE: other })).exitCode).toBe(4);
    // At a terminal a wrong passphrase gets three tries in all, then exit 4.
    const locked = `env -u SY_MASTER_KEY -u DBUS_SESSION_BUS_ADDRESS SY_HOME=${shq(home)} sy secret read app:pp --filter data.k`;
    const wrong = pane.command(locked);
    const prompts = (text: string) => text.split('Passphrase for the sy store:').length - 1;
    for (const [i, left] of ['2 tries left', '1 try left', undefined].entries()) {
      await wrong.waitFor((text) => prompts(text) === i + 1);
      pane.type(other);
      pane.press('Enter');
      if (left) await wrong.waitFor(`That passphrase does not open the store; ${left}.`);
    }
    expect(await wrong.status()).toBe(4);
    expect(wrong.output()).toMatch(/^sy: The key from the passphrase does not open the store/m);
    expect(wrong.output().match(/Passphrase for the sy store:/g)).toHaveLength(3);
    // A slip, then the right one: the command runs.
    const slip = pane.command(locked);
    await slip.waitFor('Passphrase for the sy store:');
    pane.type(other);
    pane.press('Enter');
    await slip.waitFor('That passphrase does not open the store; 2 tries left.');
    await slip.waitFor(/tries left\.[\s\S]*Passphrase for the sy store:/);
    pane.type(first);
    pane.press('Enter');
    expect(await slip.status()).toBe(0);
    expect(slip.output().trimEnd().split('\n').pop()).toBe('v');
    expect(pane.capture()).not.toContain(other);

    // Without a terminal and without the variable it fails at once, naming what to set.
    const none = await runSy(['secret', 'read', 'app:pp'], { SY_HOME: home, HOME: sy.home, SY_NO_SWEEP: '1' }, { timeout: 15_000 });
    expect(none.exitCode).toBe(4);
    expect(none.stderr).toMatch(/SY_PASSPHRASE|SY_MASTER_KEY/);
  });
});

describe('the passphrase on the controlling terminal, whatever stdout and stdin are', () => {
  const home = () => join(sy.home, 'tty-passphrase-store');
  const phrase = `tty-${T}-phrase`;
  const path = `db:postgresql:ttydyn${T}`;
  const locked = () => `env -u SY_MASTER_KEY -u DBUS_SESSION_BUS_ADDRESS SY_HOME=${shq(home())}`;
  const withPhrase = () => ({ SY_HOME: home(), HOME: sy.home, SY_NO_SWEEP: '1', SY_PASSPHRASE: phrase });

  beforeAll(async () => {
    for (const args of [
      ['init'],
      ['secret', 'create', `db:postgresql:ttybase${T}`, '--attributes', '{"type":"postgresql"}', '--data', JSON.stringify({ host: '127.0.0.1', port: 5432, username: 'postgres', password: 'x', database: DB })],
      ['secret', 'create', path, '--attributes', JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: `db:postgresql:ttybase${T}` }, grantPermissions: { what: 'SELECT', where: '*.*' }, ttl: 600, userPrefix: PREFIX })],
    ]) {
      const result = await runSy(args, withPhrase());
      if (result.exitCode !== 0) throw new Error(`sy ${args[0]}: ${result.stderr}`);
    }
  });

  afterAll(async () => {
    await runSy(['dynamic', 'lease', 'revoke', '--prefix', 'db', '--yes'], withPhrase()).catch(() => undefined);
  });

  const leaseIn = async (file: string) => {
    const lease = JSON.parse(readFileSync(join(sy.home, file), 'utf8'));
    expect(await roleExists(lease.username)).toBe(true);
    const rows = await pgConnect({ ...LOCAL_PG, user: lease.username, password: lease.password, database: DB }).then(async (client) => {
      try {
        return (await client.query('SELECT current_user AS u')).rows;
      } finally {
        await client.end();
      }
    });
    expect(rows).toEqual([{ u: lease.username }]);
    return lease;
  };

  for (const [label, redirect, file] of [
    ['piped: `| cat > out.json`', '| cat > pipe.json', 'pipe.json'],
    ['redirected: `> creds.json`', '> creds.json', 'creds.json'],
    ['stdin not a terminal either: `< /dev/null > in.json`', '< /dev/null > in.json', 'in.json'],
  ] as const) {
    test(`${label}: asks for the passphrase on the terminal (a wrong one again, three tries in all) and the lease works`, async () => {
      const typed = pane.command(`${locked()} sy dynamic lease create --path ${path} ${redirect}`);
      await typed.waitFor('Passphrase for the sy store:');
      pane.type('not-the-phrase');
      pane.press('Enter');
      await typed.waitFor('That passphrase does not open the store; 2 tries left.');
      await typed.waitFor(/tries left\.[\s\S]*Passphrase for the sy store:/);
      pane.type(phrase);
      pane.press('Enter');
      expect(await typed.status()).toBe(0);
      expect(pane.capture()).not.toContain(phrase);
      const lease = await leaseIn(file);
      expect(typed.output()).not.toContain(lease.password);
    });
  }

  test('a background job (`&`) is not asked (the terminal would stop it): it fails at once naming SY_PASSPHRASE', async () => {
    const typed = pane.command(`${locked()} sy dynamic lease create --path ${path} > bg.json 2> bg.err & wait $!`);
    expect(await typed.status()).toBe(4);
    expect(readFileSync(join(sy.home, 'bg.err'), 'utf8')).toMatch(/no terminal to ask for it[\s\S]*SY_PASSPHRASE/);
    expect(typed.output()).not.toContain('Passphrase for the sy store:');
  });

  test('with no controlling terminal (setsid) it asks nothing: it fails at once naming SY_PASSPHRASE', async () => {
    const typed = pane.command(`${locked()} setsid -w sy dynamic lease create --path ${path} < /dev/null > none.json`);
    expect(await typed.status()).toBe(4);
    expect(typed.output()).toMatch(/no terminal to ask for it[\s\S]*SY_PASSPHRASE/);
    expect(typed.output()).not.toContain('Passphrase for the sy store:');
    expect(readFileSync(join(sy.home, 'none.json'), 'utf8')).toBe('');
  });
});

describe('colour and spinners: only on a terminal', () => {
  const noColourCodes = (text: string) => expect(text).not.toContain(ESC);

  test('without a terminal (execa, pipes): JSON, no escape codes, no spinner frames', async () => {
    const result = await syPlain(['dynamic', 'lease', 'create', '--path', SLOW_DYN, '--ttl', '10m']);
    expect(result.exitCode).toBe(0);
    expect(JSON.parse(result.stdout).path).toBe(SLOW_DYN);
    noColourCodes(result.stdout + result.stderr);
    expect(hasSpinnerFrame(result.stdout + result.stderr)).toBe(false);
    const error = await syPlain(['secret', 'describe', `no:such${T}`]);
    expect(error.exitCode).toBe(3);
    expect(error.stderr).toMatch(/^sy: /);
    noColourCodes(error.stderr);
  });

  test('piped in the pane (`2>err | cat >out`): no escape codes, no spinner frames', async () => {
    const dir = join(sy.home, 'piped');
    mkdirSync(dir);
    const typed = pane.command(`sy dynamic lease create --path ${SLOW_DYN} --ttl 10m 2>${dir}/err | cat >${dir}/out`);
    expect(await typed.status()).toBe(0);
    const out = readFileSync(join(dir, 'out'), 'utf8');
    const err = readFileSync(join(dir, 'err'), 'utf8');
    expect(JSON.parse(out).path).toBe(SLOW_DYN);
    noColourCodes(out + err);
    expect(hasSpinnerFrame(out + err)).toBe(false);
  });

  test('on a terminal the spinner turns on stderr, never on stdout; --quiet removes it', async () => {
    const errTerminal = pane.splitTerminal();
    const recording = pane.record('spinner', errTerminal.target);
    const typed = pane.command(`sy dynamic lease create --path ${SLOW_DYN} --ttl 10m 2>${errTerminal.tty}`);
    expect(await typed.status(30_000)).toBe(0);
    const drawnOnStdout = typed.output({ escapes: true });
    expect(drawnOnStdout).toMatch(/\x1b\[1mKEY\s+VALUE/);
    expect(hasSpinnerFrame(drawnOnStdout)).toBe(false);
    await pane.waitForScreen(hasSpinnerFrame, 5_000, () => recording.text());
    expect(hasSpinnerFrame(recording.text())).toBe(true);

    recording.stop();
    const quietRecording = pane.record('quiet', errTerminal.target);
    const quiet = pane.command(`sy dynamic lease create --path ${SLOW_DYN} --ttl 10m --quiet 2>${errTerminal.tty}`);
    expect(await quiet.status(30_000)).toBe(0);
    expect(quiet.output()).toMatch(/^KEY\s+VALUE/m);
    expect(hasSpinnerFrame(quietRecording.text())).toBe(false);
    quietRecording.stop();
  });

  test('the table header is bold and `sy:` red on a terminal; NO_COLOR=1 and --no-color remove the colour', async () => {
    const coloured = pane.command(`sy dynamic lease list --path ${DYN}`);
    expect(await coloured.status()).toBe(0);
    expect(coloured.output({ escapes: true })).toMatch(/\x1b\[1mLEASE ID/);

    const error = pane.command(`sy secret describe no:such${T}`);
    expect(await error.status()).toBe(3);
    expect(error.output({ escapes: true })).toMatch(/\x1b\[31msy:/);

    const commands = [
      `NO_COLOR=1 sy dynamic lease list --path ${DYN}`,
      `sy --no-color dynamic lease list --path ${DYN}`,
      `sy dynamic lease list --path ${DYN} --no-color`,
      `NO_COLOR=1 sy secret describe no:such${T}`,
      `sy --no-color secret describe no:such${T}`,
      `sy secret describe no:such${T} --no-color`,
    ];
    const seen = [];
    for (const command of commands) {
      const typed = pane.command(command);
      const status = await typed.status();
      const drawn = typed.output({ escapes: true });
      const plain = typed.output();
      seen.push({ command, status, printed: /^(sy: |LEASE ID)/m.test(plain), colour: drawn.includes(ESC) });
    }
    // Every spelling, wherever the flag sits on the line, prints the same thing without colour.
    expect(seen).toEqual(commands.map((command) => ({ command, status: command.includes('describe') ? 3 : 0, printed: true, colour: false })));
  });
});
