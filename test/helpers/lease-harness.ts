/**
 * The lease state machine on a real SQLite store in a temporary SY_HOME, with fake servers
 * (fake-target.ts) and a fake clock (fake-clock.ts) in LeaseDeps. This file is the one place
 * that knows how LeaseDeps and the lease functions are called (the store's audit log, TTLs
 * in seconds): the unit tests go through it, so only it changes with them.
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { AuditEntry } from '../../src/audit/chain.js';
import { AUDIT_FILE } from '../../src/audit/file-log.js';
import type { LeaseDeps } from '../../src/leases/deps.js';
import { issueLease } from '../../src/leases/issue.js';
import { type RenewResult, renewLease } from '../../src/leases/renew.js';
import { type IssuedLease, issuedLease } from '../../src/io/lease-view.js';
import { REAP_GRACE_MS } from '../../src/leases/deps.js';
import type { LeaseRecord } from '../../src/model/lease.js';
import type { Engine } from '../../src/model/engines.js';
import type { Secret } from '../../src/model/secret.js';
import { createSecret } from '../../src/secrets/service.js';
import { openStore } from '../../src/store/open.js';
import type { Store } from '../../src/store/store.js';
import { newUserName } from '../../src/targets/names.js';
import { initHome, testHome, type TestHome } from './context.js';
import { FakeClock } from './fake-clock.js';
import { type FakeServer, FakeServers } from './fake-target.js';

/** A host no test ever dials: the fake servers answer for it. */
export const FAKE_HOST = 'db.sy.invalid';

export interface HarnessProcess {
  deps: LeaseDeps;
  store: Store;
  /** What deps.warn and deps.progress were given. */
  warnings: string[];
  progress: string[];
}

export interface LeaseHarness extends HarnessProcess {
  clock: FakeClock;
  servers: FakeServers;
  /** The PostgreSQL server of the default base secret `db:pg:root`. */
  pg: FakeServer;
  home: TestHome;
  /** A base secret on a fake server (PostgreSQL unless said). */
  base(path: string, options?: { engine?: Engine; port?: number; username?: string; database?: string }): Promise<Secret>;
  /** A dynamic secret on `base` (default db:pg:root), ttl 600 s and maxTtl 3600 s unless given. */
  dynamic(path: string, attributes?: Record<string, unknown>, base?: string): Promise<Secret>;
  /** `lease create`: a lease of the dynamic secret at `path`, for `ttlSeconds` or the recipe's ttl. */
  issue(path: string, ttlSeconds?: number, signal?: AbortSignal): Promise<IssuedLease>;
  /** `lease renew`, by `incrementSeconds` or the recipe's ttl. */
  renew(leaseId: string, incrementSeconds?: number, on?: HarnessProcess): Promise<RenewResult>;
  /**
   * An intent written straight into the ledger, as `lease create` writes it before it makes
   * the user, by a process that may since have died (`ownerPid`) and perhaps on another host.
   */
  intent(path: string, options: { ownerPid: number; ownerHost?: string; createdAt?: number; userOnServer?: boolean }): Promise<LeaseRecord>;
  lease(id: string): Promise<LeaseRecord>;
  /** Another sy process on the same store file: its own database handle and claimant, the same servers and clock. */
  otherProcess(): Promise<HarnessProcess>;
  /** The audit log's lines of lease operations, oldest first. */
  audit(): AuditEntry[];
  cleanup(): Promise<void>;
}

export async function leaseHarness(): Promise<LeaseHarness> {
  const home = testHome();
  await initHome(home);
  const clock = new FakeClock();
  const servers = new FakeServers(clock.now);
  const processes: HarnessProcess[] = [];

  const open = async (): Promise<HarnessProcess> => {
    const warnings: string[] = [];
    const progress: string[] = [];
    const store = await openStore(home.env.SY_HOME, home.env, { actor: 'unit@test', warn: (text) => warnings.push(text) });
    const deps: LeaseDeps = {
      store,
      connect: servers.connect,
      now: clock.now,
      progress: (text) => progress.push(text),
      warn: (text) => warnings.push(text),
      claimant: `${process.pid}:${randomUUID()}`,
    };
    const opened = { deps, store, warnings, progress };
    processes.push(opened);
    return opened;
  };

  const main = await open();
  const secretAt = async (path: string): Promise<Secret> => {
    const secret = await main.store.secrets.get({ path });
    if (!secret) throw new Error(`no secret ${path}`);
    return secret;
  };

  const harness: LeaseHarness = {
    ...main,
    clock,
    servers,
    pg: servers.server(FAKE_HOST, 5432, 'postgresql'),
    home,
    async base(path, options = {}) {
      const engine = options.engine ?? 'postgresql';
      const data: Record<string, unknown> = {
        host: FAKE_HOST,
        port: options.port ?? (engine === 'postgresql' ? 5432 : 3306),
        username: options.username ?? (engine === 'postgresql' ? 'postgres' : 'root'),
        password: 'admin-password',
      };
      if (options.database !== undefined) data.database = options.database;
      servers.server(FAKE_HOST, data.port as number, engine);
      const written = await createSecret(main.store, path, { description: '', attributes: { type: engine === 'postgresql' ? 'postgresql' : 'mariadb' }, data });
      return written.secret;
    },
    async dynamic(path, attributes = {}, base = 'db:pg:root') {
      const written = await createSecret(main.store, path, {
        description: '',
        attributes: { linkConfig: { linkType: 'dynamic', linkedSecret: base }, grantPermissions: { what: 'SELECT', where: '*.*' }, ttl: 600, maxTtl: 3600, ...attributes },
        data: {},
      });
      return written.secret;
    },
    async issue(path, ttlSeconds, signal) {
      return issuedLease(await issueLease(main.deps, { path }, { ttlSeconds, signal }));
    },
    async renew(leaseId, incrementSeconds, on = main) {
      return renewLease(on.deps, leaseId, incrementSeconds);
    },
    async intent(path, options) {
      const secret = await secretAt(path);
      const base = await secretAt(String((secret.attributes.linkConfig as { linkedSecret: string }).linkedSecret));
      const createdAt = options.createdAt ?? clock.peek();
      const maxExpiresAt = createdAt + 3600_000;
      const username = newUserName('postgresql', new Date(maxExpiresAt + REAP_GRACE_MS));
      const id = randomUUID();
      const connection = { engine: 'postgresql', ...base.data };
      await main.store.leases.recordIntent({
        id,
        secretId: secret.id,
        baseId: base.id,
        path: secret.path,
        pool: 'default',
        engine: 'postgresql',
        target: `${FAKE_HOST}:5432/postgres`,
        username,
        createdAt,
        expiresAt: createdAt + 600_000,
        maxExpiresAt,
        ownerPid: options.ownerPid,
        ownerHost: options.ownerHost ?? hostname(),
        revocation: { connection, username },
      });
      if (options.userOnServer) harness.pg.addUser(username, new Date(createdAt + 600_000));
      return harness.lease(id);
    },
    async lease(id) {
      const lease = await main.store.leases.get(id);
      if (!lease) throw new Error(`no lease ${id}`);
      return lease;
    },
    otherProcess: open,
    audit() {
      let text: string;
      try {
        text = readFileSync(join(home.env.SY_HOME, AUDIT_FILE), 'utf8');
      } catch {
        return [];
      }
      // The secrets service audits the harness's own set-up (secret.create): only the lease
      // lines are the state machine's.
      return text
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as AuditEntry)
        .filter((entry) => !entry.action.startsWith('secret.'));
    },
    async cleanup() {
      for (const p of processes) await p.store.close();
      home.cleanup();
    },
  };
  await harness.base('db:pg:root');
  return harness;
}

/** The pid of a process that has just exited: nothing runs under it. */
export function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', ''], { stdio: 'ignore' });
  if (child.pid === undefined) throw new Error('could not start a child process');
  return child.pid;
}

