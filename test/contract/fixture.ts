/**
 * What the store contract suite asks of an implementation's harness, and the helpers its
 * sections share. Nothing here knows which engine is under test: whatever is specific to
 * one (where its files or tables are, how a row is edited behind its back) is the harness's.
 */
import { randomUUID } from 'node:crypto';
import type { AuditEntry } from '../../src/audit/chain.js';
import { SyError } from '../../src/errors.js';
import type { ClientRecord } from '../../src/model/client.js';
import type { LeaseState, NewLease } from '../../src/model/lease.js';
import type { NewSecret, Secret } from '../../src/model/secret.js';
import type { Store } from '../../src/store/store.js';

/** What a store is opened with: who acts (named in audit lines) and where its warnings go. */
export interface OpenOptions {
  actor: string;
  warn: (text: string) => void;
}

/**
 * Edits made the way an attacker with write access to the store's database or files, but
 * without the key, would make them: straight into the rows or the log.
 */
export interface TamperHooks {
  /** Sets plain columns of a secret's row (its path; its current version number). */
  editSecret(id: string, change: { path?: string; currentVersion?: number }): Promise<void>;
  /** Sets plain columns of a lease's row. */
  editLease(id: string, change: { state?: LeaseState; path?: string }): Promise<void>;
  /**
   * Keeps a copy of a lease's whole row as it is now; the returned function writes that
   * copy back over the row (a rollback to an older, validly MACed state of it).
   */
  keepLeaseRow(id: string): Promise<() => Promise<void>>;
  /** Sets plain columns of a lease's row: its client (null: none). */
  setLeaseClient(id: string, client: string | null): Promise<void>;
  /** Sets plain columns of a client's row (`allow` as stored: a JSON array). */
  editClient(name: string, change: { allow?: string; maxLeases?: number }): Promise<void>;
  /** Deletes a client's row. */
  deleteClientRow(name: string): Promise<void>;
  /**
   * Keeps a copy of a client's whole row; the returned function writes it back (over the row,
   * or anew when the row is gone): a client set back, or brought back after its deletion.
   */
  keepClientRow(name: string): Promise<() => Promise<void>>;
  /** Removes the last `count` lines of the audit log. */
  cutAuditLog(count: number): Promise<void>;
  /** Replaces the whole audit log by these entries, each kept as the store keeps a line. */
  replaceAuditLog(entries: AuditEntry[]): Promise<void>;
}

/** One fresh, empty store and what the suite may do with it. */
export interface StoreUnderTest {
  store: Store;
  /** Another handle on the same store, as another process would open it (its own connection). */
  another(options: OpenOptions): Promise<Store>;
  tamper: TamperHooks;
  /** Closes every handle opened on this store and removes it. */
  cleanup(): Promise<void>;
}

export interface StoreHarness {
  /** Creates a fresh, empty store, opened with `options`. */
  open(options: OpenOptions): Promise<StoreUnderTest>;
}

export const ACTOR = 'contract-a';
export const OTHER_ACTOR = 'contract-b';

/** The store of the running test, its second handle, and the warnings either gave. */
export class Fixture {
  private current: StoreUnderTest | undefined;
  private second: Store | undefined;
  warnings: string[] = [];
  private count = 0;

  constructor(private readonly harness: StoreHarness) {}

  async open(): Promise<void> {
    this.warnings = [];
    this.second = undefined;
    this.current = await this.harness.open({ actor: ACTOR, warn: (text) => this.warnings.push(text) });
  }

  async close(): Promise<void> {
    const current = this.current;
    this.current = undefined;
    await current?.cleanup();
  }

  get store(): Store {
    if (!this.current) throw new Error('no store is open');
    return this.current.store;
  }

  get tamper(): TamperHooks {
    if (!this.current) throw new Error('no store is open');
    return this.current.tamper;
  }

  /** The second handle (opened on first use, as OTHER_ACTOR). */
  async other(): Promise<Store> {
    this.second ??= await this.another(OTHER_ACTOR);
    return this.second;
  }

  /** A new handle on the same store. */
  async another(actor = OTHER_ACTOR): Promise<Store> {
    if (!this.current) throw new Error('no store is open');
    return this.current.another({ actor, warn: (text) => this.warnings.push(text) });
  }

  /** A name not used before in this run. */
  unique(prefix: string): string {
    this.count++;
    return `${prefix}${this.count}`;
  }

  async staticSecret(path = this.unique('app:s'), data: Record<string, unknown> = { password: 'p' }): Promise<Secret> {
    return this.store.secrets.create(newSecret({ path, kind: 'static', data }));
  }

  /** A base secret and a dynamic secret linked to it, for leases to refer to. */
  async dynamicPair(): Promise<{ base: Secret; dynamic: Secret }> {
    const basePath = this.unique('db:base');
    const base = await this.store.secrets.create(newSecret({ path: basePath, kind: 'base', attributes: { type: 'postgresql' }, data: { host: '127.0.0.1', port: 5432 } }));
    const dynamic = await this.store.secrets.create(
      newSecret({ path: this.unique('db:dyn'), kind: 'dynamic', linkedPath: basePath, attributes: { linkConfig: { linkType: 'dynamic', linkedSecret: basePath } } }),
    );
    return { base, dynamic };
  }

  /** A lease of `dynamic`, created at `createdAt`, expiring a minute later unless told otherwise. */
  lease(pair: { base: Secret; dynamic: Secret }, overrides: Partial<NewLease> = {}): NewLease {
    const username = overrides.username ?? this.unique('sy_user_');
    const createdAt = overrides.createdAt ?? T0 + this.count;
    return {
      id: randomUUID(),
      secretId: pair.dynamic.id,
      baseId: pair.base.id,
      path: pair.dynamic.path,
      pool: 'default',
      engine: 'postgresql',
      target: '127.0.0.1:5432/postgres',
      username,
      createdAt,
      expiresAt: createdAt + 60_000,
      maxExpiresAt: createdAt + 600_000,
      // Another host: whether its process still runs cannot be known, so only age makes it stale.
      ownerPid: 4242,
      ownerHost: 'elsewhere.invalid',
      revocation: {
        connection: { engine: 'postgresql', host: '127.0.0.1', port: 5432, username: 'admin', password: 'admin-password', database: 'postgres' },
        username,
        revocationStatements: ['DROP ROLE IF EXISTS "{{name}}"'],
        reassignTo: 'owner',
      },
      ...overrides,
    };
  }

  /** A client record named `name` (fresh unless told), with made-up but well-formed values. */
  client(name = this.unique('client-'), overrides: Partial<ClientRecord> = {}): ClientRecord {
    return {
      name,
      publicKey: `-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA${name.padEnd(43, 'A').slice(0, 43)}=\n-----END PUBLIC KEY-----\n`,
      allow: ['db:postgresql:*'],
      maxLeases: 100,
      createdAt: T0,
      updatedAt: T0,
      ...overrides,
    };
  }

  /** Records an intent and moves it to `state` (through the states sy uses). */
  async leaseIn(pair: { base: Secret; dynamic: Secret }, state: LeaseState, overrides: Partial<NewLease> = {}): Promise<NewLease> {
    const lease = this.lease(pair, overrides);
    await this.store.leases.recordIntent(lease);
    if (state !== 'intent') expect(await this.store.leases.transition(lease.id, ['intent'], state)).toBeDefined();
    return lease;
  }
}

/** Instants the suite works with: leases are created around T0, and `now` is given to every query. */
export const T0 = Date.now();

export function newSecret(fields: Partial<NewSecret> & Pick<NewSecret, 'path' | 'kind'>): NewSecret {
  return { description: '', attributes: {}, data: {}, ...fields };
}

/** The SyError that `promise` rejects with; fails the test if it resolves or throws something else. */
export async function rejection(promise: Promise<unknown>): Promise<SyError> {
  let result: unknown;
  try {
    result = await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(SyError);
    return error as SyError;
  }
  throw new Error(`expected a SyError, got ${JSON.stringify(result)}`);
}

/** A store refusing what was edited without its key: exit 4. */
export async function expectTampered(promise: Promise<unknown>, code: RegExp = /^store_tampered$/): Promise<void> {
  const error = await rejection(promise);
  expect({ exitCode: error.exitCode, code: error.code }).toEqual({ exitCode: 4, code: expect.stringMatching(code) });
}
