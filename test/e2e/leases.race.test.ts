/**
 * Two processes acting on the same lease at once must end consistent: one revocation, the
 * user gone, the ledger and the target in agreement.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeHome, type SyHome } from '../helpers/cli.js';
import { createPgDatabase, dropPgDatabase, dropPgRoles, pgManagedRoles, pgRoleExists, scramCluster, tag } from '../helpers/db.js';

describe('races on one lease', () => {
  const database = `sy_race_${tag()}`;
  const prefix = `race${tag(4)}_`;
  let sy: SyHome;

  const auditLines = () =>
    readFileSync(join(sy.env.SY_HOME, 'audit.log'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));

  beforeAll(async () => {
    await createPgDatabase(database, ['CREATE TABLE t (id int)']);
    sy = await makeHome();
    const admin = scramCluster();
    await sy.json(['secret', 'create', 'race:base', '--attributes', '{"type":"postgresql"}', '--data', JSON.stringify({ host: admin.host, port: admin.port, username: admin.user, password: admin.password, database })]);
    await sy.json(['secret', 'create', 'race:dyn', '--attributes', JSON.stringify({
      linkConfig: { linkType: 'dynamic', linkedSecret: 'race:base' },
      grantPermissions: { what: 'SELECT', where: '*.*' },
      ttl: 600,
      userPrefix: prefix,
    })]);
  });

  afterAll(async () => {
    await dropPgRoles(await pgManagedRoles(prefix), [database]);
    await dropPgDatabase(database);
    sy.cleanup();
  });

  it('two concurrent revokes of the same lease both succeed and revoke it once', async () => {
    const lease = await sy.json(['dynamic', 'lease', 'create', '--path', 'race:dyn']);
    const [a, b] = await Promise.all([
      sy.run(['dynamic', 'lease', 'revoke', lease.lease_id]),
      sy.run(['dynamic', 'lease', 'revoke', lease.lease_id]),
    ]);
    expect([a.exitCode, b.exitCode]).toEqual([0, 0]);
    expect(JSON.parse(a.stdout).state).toBe('revoked');
    expect(JSON.parse(b.stdout).state).toBe('revoked');
    expect(await pgRoleExists(lease.username)).toBe(false);
    const revocations = auditLines().filter((l) => l.lease_id === lease.lease_id && l.action === 'lease.revoke' && l.outcome === 'success');
    expect(revocations).toHaveLength(1);
  });

  it('a renew racing a revoke ends with the lease revoked and the user gone', async () => {
    for (let round = 0; round < 3; round++) {
      const lease = await sy.json(['dynamic', 'lease', 'create', '--path', 'race:dyn']);
      const [renew, revoke] = await Promise.all([
        sy.run(['dynamic', 'lease', 'renew', lease.lease_id, '--increment', '20m']),
        sy.run(['dynamic', 'lease', 'revoke', lease.lease_id]),
      ]);
      expect(revoke.exitCode).toBe(0);
      // The renew either finished first (and the revoke then ended the lease) or lost and said so.
      if (renew.exitCode !== 0) expect(renew.stderr).toMatch(/revoked|revoking|cannot be renewed|no longer exists/);
      const after = await sy.json(['dynamic', 'lease', 'lookup', lease.lease_id]);
      expect(after.state).toBe('revoked');
      expect(await pgRoleExists(lease.username)).toBe(false);
      const live = await sy.json(['dynamic', 'lease', 'list', '--path', 'race:dyn']);
      expect(live.data.map((l: { lease_id: string }) => l.lease_id)).not.toContain(lease.lease_id);
    }
  });
});
