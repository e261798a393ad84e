/**
 * End-to-end tests of the audit log through the built bin/sy, against the machine's
 * PostgreSQL (127.0.0.1:5432) and the local MariaDB: what a varied session writes, `sy audit
 * verify` on the untouched log and after each kind of tampering (naming the right line),
 * the filters of `sy audit list`, SY_CLIENT_ID as the actor, and no password anywhere.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { makeHome, type SyHome } from '../helpers/cli.js';
import { myAdminQuery, tag } from '../helpers/db.js';
import {
  type AuditLine,
  auditFile,
  auditLines,
  createLease,
  dropMyPrefix,
  dropPgPrefix,
  type IssuedLease,
  mustJson,
  PG5432,
  sleep,
} from '../helpers/revocation.js';

const T = tag(4);
const PREFIX = `au${T}_`;
const MY_DB = `sy_au_${T}`;
const BASE_PW_1 = `Base-One-${tag(10)}!`;
const BASE_PW_2 = `Base-Two-${tag(10)}#`;
const STATIC_PW = `Static-${tag(10)}%`;
const PG_BASE = 'db:postgresql:root';
const MY_BASE = 'db:mariadb:root';
const PG_DYN = 'db:postgresql:dyn1';
const MY_DYN = 'db:mariadb:dyn1';

let sy: SyHome;
let original: string;
const leases: IssuedLease[] = [];
let midSession: string;

beforeAll(async () => {
  await myAdminQuery(`CREATE DATABASE IF NOT EXISTS \`${MY_DB}\``);
  await myAdminQuery(`CREATE TABLE IF NOT EXISTS \`${MY_DB}\`.t (id INT)`);
  sy = await makeHome();

  // A varied session: secrets created, updated, rolled back and deleted; leases created,
  // renewed and revoked on both servers; failed commands; one command as ci-bot.
  await mustJson(sy, ['secret', 'create', PG_BASE, '--attributes', '{"type": "postgresql"}', '--data', '-'], {
    input: JSON.stringify({ host: PG5432.host, port: PG5432.port, username: PG5432.user, password: BASE_PW_1, database: 'postgres' }),
  });
  await mustJson(sy, ['secret', 'update', PG_BASE, '--data', '-'], { input: JSON.stringify({ password: BASE_PW_2 }) });
  await mustJson(sy, ['secret', 'update', PG_BASE, '--desc', 'admin of the local PostgreSQL']);
  await mustJson(sy, ['secret', 'rollback', PG_BASE]);
  await mustJson(sy, ['secret', 'create', MY_BASE, '--attributes', '{"type": "mariadb"}', '--data', '-'], {
    input: JSON.stringify({ host: '127.0.0.1', port: 3306, username: 'root', password: '', database: MY_DB }),
  });
  await mustJson(sy, ['secret', 'create', PG_DYN, '--attributes', '-'], {
    input: JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: PG_BASE }, grantPermissions: { what: 'SELECT', where: '*.*' }, userPrefix: PREFIX, ttl: 60, maxTtl: 600 }),
  });
  await mustJson(sy, ['secret', 'create', MY_DYN, '--attributes', '-'], {
    input: JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: MY_BASE }, grantPermissions: { what: 'SELECT', where: `${MY_DB}.*` }, userPrefix: PREFIX, ttl: 60 }),
  });
  await mustJson(sy, ['secret', 'create', 'app:static', '--data', '-'], { input: JSON.stringify({ password: STATIC_PW }) });
  expect((await sy.run(['secret', 'delete', 'app:static'])).exitCode).toBe(0);
  midSession = new Date().toISOString();
  await sleep(20);

  leases.push(await createLease(sy, PG_DYN));
  await mustJson(sy, ['dynamic', 'lease', 'renew', leases[0].lease_id, '--increment', '120']);
  await mustJson(sy, ['dynamic', 'lease', 'revoke', leases[0].lease_id]);
  leases.push(await createLease(sy, MY_DYN));
  await mustJson(sy, ['dynamic', 'lease', 'revoke', leases[1].lease_id]);
  leases.push(await mustJson<IssuedLease>(sy, ['dynamic', 'lease', 'create', '--path', PG_DYN], { env: { SY_CLIENT_ID: 'ci-bot' } }));
  // A lease issued through `secret read`.
  leases.push(await mustJson<IssuedLease>(sy, ['secret', 'read', MY_DYN]));

  // Failed commands: a delete refused (links), a lease on an unreachable server.
  expect((await sy.run(['secret', 'delete', PG_BASE])).exitCode).toBe(2);
  await mustJson(sy, ['secret', 'update', MY_BASE, '--data', '{"port": 1}']);
  expect((await sy.run(['dynamic', 'lease', 'create', '--path', MY_DYN])).exitCode).toBe(1);
  await mustJson(sy, ['secret', 'update', MY_BASE, '--data', '{"port": 3306}']);
  // Clean up the last two leases (as the sweep would).
  for (const lease of leases.slice(2)) await mustJson(sy, ['dynamic', 'lease', 'revoke', lease.lease_id]);

  original = readFileSync(auditFile(sy), 'utf8');
});

afterAll(async () => {
  await dropPgPrefix(PREFIX);
  await dropMyPrefix(PREFIX);
  await myAdminQuery(`DROP DATABASE IF EXISTS \`${MY_DB}\``);
  sy?.cleanup();
});

describe('what the session wrote', () => {
  let lines: AuditLine[];
  beforeAll(() => {
    lines = auditLines(sy);
  });

  test('every kind of event, in order, with outcomes', () => {
    expect(lines.map((l) => `${l.action}:${l.outcome}`)).toEqual([
      'secret.create:success',
      'secret.update:success',
      'secret.update:success',
      'secret.rollback:success',
      'secret.create:success',
      'secret.create:success',
      'secret.create:success',
      'secret.create:success',
      'secret.delete:success',
      'lease.create:success',
      'lease.renew:success',
      'lease.revoke:success',
      'lease.create:success',
      'lease.revoke:success',
      'lease.create:success',
      'lease.create:success',
      'secret.delete:failure',
      'secret.update:success',
      'lease.create:failure',
      'secret.update:success',
      'lease.revoke:success',
      'lease.revoke:success',
    ]);
  });

  test('lease lines carry the lease, user, target and ttl; failures carry an error', () => {
    const [create, renew, revoke] = lines.filter((l) => l.lease_id === leases[0].lease_id);
    expect(create).toMatchObject({ action: 'lease.create', path: PG_DYN, db_user: leases[0].username, target: '127.0.0.1:5432/postgres', ttl: 60 });
    expect(renew).toMatchObject({ action: 'lease.renew', db_user: leases[0].username, ttl: 120 });
    expect(revoke).toMatchObject({ action: 'lease.revoke', db_user: leases[0].username, outcome: 'success' });
    expect(lines.find((l) => l.action === 'secret.delete' && l.outcome === 'failure')).toMatchObject({ path: PG_BASE, error: expect.stringMatching(/dynamic secrets/) });
    expect(lines.find((l) => l.action === 'lease.create' && l.outcome === 'failure')).toMatchObject({
      path: MY_DYN,
      target: `127.0.0.1:1/${MY_DB}`,
      error: expect.stringMatching(/127\.0\.0\.1:1.*refused/),
    });
  });

  test('SY_CLIENT_ID is the actor; the default is user@host', () => {
    const byBot = lines.filter((l) => l.actor === 'ci-bot');
    expect(byBot.map((l) => [l.action, l.lease_id])).toEqual([['lease.create', leases[2].lease_id]]);
    const others = new Set(lines.filter((l) => l.actor !== 'ci-bot').map((l) => l.actor));
    expect(others.size).toBe(1);
    expect([...others][0]).toMatch(/^[^@\s]+@[^@\s]+$/);
  });

  test('no password of a lease, a base secret or any secret, and not the key, appears anywhere in the log', () => {
    const secrets = [...leases.map((l) => l.password), BASE_PW_1, BASE_PW_2, STATIC_PW, sy.env.SY_MASTER_KEY];
    expect(secrets).toHaveLength(leases.length + 4);
    for (const secret of secrets) {
      expect(original).not.toContain(secret);
      expect(original).not.toContain(encodeURIComponent(secret));
      expect(original).not.toContain(JSON.stringify(secret).slice(1, -1));
    }
    // Nor a connection string (which would carry one).
    expect(original).not.toMatch(/(postgresql|mysql):\/\/[^"]*:[^"]*@/);
  });
});

describe('sy audit list', () => {
  const list = async (args: string[]): Promise<AuditLine[]> => (await mustJson<{ data: AuditLine[] }>(sy, ['audit', 'list', ...args])).data;

  test('--lease ID: exactly that lease\'s lines', async () => {
    const data = await list(['--lease', leases[0].lease_id]);
    expect(data.map((l) => l.action)).toEqual(['lease.create', 'lease.renew', 'lease.revoke']);
    expect(data.every((l) => l.lease_id === leases[0].lease_id)).toBe(true);
  });

  test('--path P (either separator): exactly that path\'s lines', async () => {
    const data = await list(['--path', 'db/postgresql/root']);
    expect(data.map((l) => `${l.action}:${l.outcome}`)).toEqual([
      'secret.create:success',
      'secret.update:success',
      'secret.update:success',
      'secret.rollback:success',
      'secret.delete:failure',
    ]);
    const dyn = await list(['--path', MY_DYN]);
    expect(dyn.length).toBe(auditLines(sy).filter((l) => l.path === MY_DYN).length);
    expect(dyn.every((l) => l.path === MY_DYN)).toBe(true);
  });

  test('--since: a duration, a past time, a future time', async () => {
    const all = auditLines(sy);
    expect(await list(['--since', '1h'])).toEqual(all);
    const after = await list(['--since', midSession]);
    expect(after).toEqual(all.filter((l) => Date.parse(l.time) >= Date.parse(midSession)));
    expect(after[0]).toMatchObject({ action: 'lease.create', lease_id: leases[0].lease_id });
    expect(after.length).toBeLessThan(all.length);
    expect(await list(['--since', new Date(Date.now() + 3600_000).toISOString()])).toEqual([]);
    const bad = await sy.run(['audit', 'list', '--since', 'yesterday-ish']);
    expect(bad.exitCode).toBe(2);
  });

  test('--limit N: the last N lines; filters combine', async () => {
    const all = auditLines(sy);
    expect(await list(['--limit', '2'])).toEqual(all.slice(-2));
    expect((await list(['--path', PG_DYN, '--since', midSession, '--limit', '1'])).map((l) => l.lease_id)).toEqual([leases[2].lease_id]);
  });
});

describe('sy audit verify', () => {
  const lines = (): string[] => original.split('\n').filter((l) => l !== '');
  const write = (text: string): void => writeFileSync(auditFile(sy), text);
  afterEach(() => write(original));

  async function verify(): Promise<{ exitCode: number; stderr: string; summary: { ok: boolean; lines: number; first_bad_line: number | null } }> {
    const result = await sy.run(['audit', 'verify']);
    return { exitCode: result.exitCode, stderr: result.stderr, summary: JSON.parse(result.stdout) };
  }

  async function expectBadLine(line: number): Promise<void> {
    const result = await verify();
    expect({ exitCode: result.exitCode, ok: result.summary.ok, first_bad_line: result.summary.first_bad_line }).toEqual({ exitCode: 1, ok: false, first_bad_line: line });
    expect(result.stderr).toMatch(new RegExp(`line ${line}\\b`));
  }

  test('passes on the untouched log', async () => {
    const result = await verify();
    expect({ exitCode: result.exitCode, stderr: result.stderr }).toEqual({ exitCode: 0, stderr: '' });
    expect(result.summary).toMatchObject({ ok: true, lines: lines().length, first_bad_line: null });
  });

  test('a line edited (one field changed) is named', async () => {
    const l = lines();
    const edited = JSON.parse(l[16]);
    expect(edited.outcome).toBe('failure');
    edited.outcome = 'success';
    l[16] = JSON.stringify(edited);
    write(`${l.join('\n')}\n`);
    await expectBadLine(17);
  });

  test('a line edited keeping its hash and prev (the actor) is named', async () => {
    const l = lines();
    l[4] = l[4].replace(/"actor":"[^"]*"/, '"actor":"someone-else"');
    write(`${l.join('\n')}\n`);
    await expectBadLine(5);
  });

  test('a line removed: the line after it is named', async () => {
    const l = lines();
    l.splice(9, 1);
    write(`${l.join('\n')}\n`);
    await expectBadLine(10);
  });

  test('the first line removed is found', async () => {
    write(`${lines().slice(1).join('\n')}\n`);
    await expectBadLine(1);
  });

  test('two lines swapped: the first of them is named', async () => {
    const l = lines();
    [l[11], l[12]] = [l[12], l[11]];
    write(`${l.join('\n')}\n`);
    await expectBadLine(12);
  });

  test('a line inserted (a copy of another) is named', async () => {
    const l = lines();
    l.splice(6, 0, l[2]);
    write(`${l.join('\n')}\n`);
    await expectBadLine(7);
  });

  test('a line duplicated in place is named', async () => {
    const l = lines();
    l.splice(8, 0, l[7]);
    write(`${l.join('\n')}\n`);
    await expectBadLine(9);
  });

  test('the last line truncated is named', async () => {
    const l = lines();
    l[l.length - 1] = l[l.length - 1].slice(0, 60);
    write(l.join('\n'));
    await expectBadLine(l.length);
  });

  test.each([
    ['the last line removed', () => `${lines().slice(0, -1).join('\n')}\n`],
    ['the last three lines removed', () => `${lines().slice(0, -3).join('\n')}\n`],
    ['the whole log emptied', () => ''],
  ])('%s is found', async (_what, tampered) => {
    // Nothing after the cut is left to break the chain: only an anchor outside the log (in the
    // store, which is sealed) can tell. The README promises removed lines are found.
    write(tampered());
    const result = await verify();
    expect({ exitCode: result.exitCode, ok: result.summary.ok }).toEqual({ exitCode: 1, ok: false });
    expect(result.stderr).toMatch(/audit log is not intact/);
  });

  test('a log rewritten consistently without the store key (plain SHA-256 chain) fails at line 1', async () => {
    const { createHash } = await import('node:crypto');
    let prev = '0'.repeat(64);
    const forged = lines().map((text) => {
      const { hash: _hash, ...body } = JSON.parse(text);
      const entry = { ...body, prev };
      const hash = createHash('sha256').update(JSON.stringify(entry)).digest('hex');
      prev = hash;
      return JSON.stringify({ ...entry, hash });
    });
    write(`${forged.join('\n')}\n`);
    await expectBadLine(1);
  });

  test('after the tampering is undone, it passes again and new lines chain on', async () => {
    await mustJson(sy, ['secret', 'update', PG_BASE, '--desc', 'after the tampering tests']);
    const result = await verify();
    expect(result.exitCode).toBe(0);
    expect(result.summary.lines).toBe(lines().length + 1);
    write(original);
  });
});
