/**
 * Database servers in memory, behind sy's `Target` interface: what the lease code needs
 * from PostgreSQL or MariaDB (create, renew, revoke, list sy's users), with failures to
 * order. A `FakeServers` stands for every server a test's base secrets name; its
 * `connect` is the `connect` of LeaseDeps. Each server keeps its users across
 * connections, as a real one does, and answers by the fake clock.
 */
import { type SyError, failed } from '../../src/errors.js';
import type { BaseConnection } from '../../src/model/secret.js';
import { parseManagedName } from '../../src/targets/names.js';
import type { ConnectOptions, ManagedUsers, NewUser, RevokeOptions, RevokeResult, Target } from '../../src/targets/target.js';

export interface FakeUser {
  username: string;
  password: string;
  /** VALID UNTIL on PostgreSQL; MySQL has none. */
  validUntil?: Date;
  grants: NewUser['grants'];
}

export type Call =
  | { op: 'connect'; server: string; admin: string }
  | { op: 'create'; server: string; username: string }
  | { op: 'renew'; server: string; username: string; expiresAt: number }
  | { op: 'revoke'; server: string; usernames: string[]; options?: RevokeOptions }
  | { op: 'list'; server: string }
  | { op: 'close'; server: string };

/** Failures to inject, each used up as it strikes. */
interface Faults {
  connect: number;
  create: number;
  /** revokeUsers throws (the connection is lost), failing the whole batch. */
  revoke: number;
  renew: number;
}

const unreachableError = (address: string): SyError => failed('target_unreachable', `Could not connect to ${address}: connection refused.`);

export class FakeServer {
  readonly users = new Map<string, FakeUser>();
  /** Users that survive every drop (a user with dependent objects, say): revokeUsers reports them failed. */
  readonly undroppable = new Map<string, string>();
  /** Admins that may connect; empty: any. */
  readonly admins = new Set<string>();
  unreachable = false;
  /** connect() never answers until its signal aborts (a server that hangs). */
  hanging = false;
  /** When a failed create leaves its half-made user behind (and the drop of it also fails). */
  createLeavesUser = false;
  /** Added to the fake clock for the server's own `now()` (clock skew). */
  skewMs = 0;
  readonly faults: Faults = { connect: 0, create: 0, revoke: 0, renew: 0 };
  /** Run inside the call, before the server acts: what another process does meanwhile. */
  beforeRevoke?: (usernames: string[]) => unknown;
  beforeRenew?: (username: string) => unknown;
  private createGate?: Promise<void>;

  constructor(
    readonly address: string,
    readonly engine: BaseConnection['engine'],
    private readonly servers: FakeServers,
  ) {}

  /** Makes the next `n` connections fail as an unreachable server does. */
  failConnect(n = 1): this {
    this.faults.connect += n;
    return this;
  }

  /** Makes the next `n` createUser calls fail (after dropping what they made, as the contract says). */
  failCreate(n = 1): this {
    this.faults.create += n;
    return this;
  }

  /** Makes the next `n` revokeUsers calls throw, as a connection lost mid-revocation does. */
  failRevoke(n = 1): this {
    this.faults.revoke += n;
    return this;
  }

  failRenew(n = 1): this {
    this.faults.renew += n;
    return this;
  }

  /** The user stays on the server whatever a revocation does, and is reported failed with `reason`. */
  keepAfterDrop(username: string, reason = `role "${username}" cannot be dropped because some objects depend on it`): this {
    this.undroppable.set(username, reason);
    return this;
  }

  /** createUser waits until the returned function is called: a create in flight. */
  holdCreates(): () => void {
    let release!: () => void;
    this.createGate = new Promise((resolve) => (release = resolve));
    return () => {
      this.createGate = undefined;
      release();
    };
  }

  /** A user that some other store (or no store) made, straight on the server. */
  addUser(username: string, validUntil?: Date): void {
    this.users.set(username, { username, password: 'x', validUntil, grants: [] });
  }

  has(username: string): boolean {
    return this.users.has(username);
  }

  serverNow(): Date {
    return new Date(this.servers.now() + this.skewMs);
  }

  async connect(connection: BaseConnection, options: ConnectOptions): Promise<Target> {
    this.servers.calls.push({ op: 'connect', server: this.address, admin: connection.username });
    if (options.signal?.aborted) throw failed('target_unreachable', `The connection to ${this.address} was abandoned.`);
    if (this.hanging) {
      await new Promise<never>((_resolve, reject) => {
        options.signal?.addEventListener('abort', () => reject(failed('target_unreachable', `The connection to ${this.address} was abandoned.`)), { once: true });
      });
    }
    if (this.unreachable || this.faults.connect > 0) {
      if (this.faults.connect > 0) this.faults.connect--;
      throw unreachableError(this.address);
    }
    if (this.admins.size > 0 && !this.admins.has(connection.username)) {
      throw failed('target_refused', `${connection.username} cannot log in to ${this.address}.`);
    }
    this.servers.open++;
    return new FakeTarget(this, this.servers);
  }

  async createUser(user: NewUser): Promise<void> {
    await this.createGate;
    this.servers.calls.push({ op: 'create', server: this.address, username: user.username });
    if (this.faults.create > 0) {
      this.faults.create--;
      if (this.createLeavesUser) {
        this.addUser(user.username, user.expiresAt);
        this.keepAfterDrop(user.username, `role "${user.username}" could not be dropped after a failed create`);
      }
      throw failed('target_failed', `Could not create ${user.username} on ${this.address}: permission denied.`);
    }
    if (this.users.has(user.username)) throw failed('target_failed', `role "${user.username}" already exists`);
    this.users.set(user.username, {
      username: user.username,
      password: user.password,
      validUntil: this.engine === 'postgresql' ? user.expiresAt : undefined,
      grants: user.grants,
    });
  }

  async renewUser(username: string, expiresAt: Date): Promise<void> {
    this.servers.calls.push({ op: 'renew', server: this.address, username, expiresAt: expiresAt.getTime() });
    await this.beforeRenew?.(username);
    if (this.faults.renew > 0) {
      this.faults.renew--;
      throw failed('target_failed', `Could not renew ${username} on ${this.address}.`);
    }
    const user = this.users.get(username);
    if (user && this.engine === 'postgresql') user.validUntil = expiresAt;
  }

  async revokeUsers(usernames: string[], options?: RevokeOptions): Promise<RevokeResult> {
    this.servers.calls.push({ op: 'revoke', server: this.address, usernames: [...usernames], options });
    await this.beforeRevoke?.(usernames);
    if (this.faults.revoke > 0) {
      this.faults.revoke--;
      throw unreachableError(this.address);
    }
    const result: RevokeResult = { dropped: [], absent: [], failed: [] };
    for (const username of usernames) {
      const reason = this.undroppable.get(username);
      if (reason !== undefined && this.users.has(username)) {
        result.failed.push({ username, error: failed('revoke_failed', `${reason} (on ${this.address})`) });
      } else if (this.users.delete(username)) {
        result.dropped.push(username);
      } else {
        result.absent.push(username);
      }
    }
    return result;
  }

  async listManagedUsers(): Promise<ManagedUsers> {
    this.servers.calls.push({ op: 'list', server: this.address });
    const users = [...this.users.values()].flatMap((user) => {
      const managed = parseManagedName(user.username);
      return managed ? [{ username: user.username, reapAfter: managed.reapAfter, validUntil: user.validUntil }] : [];
    });
    return { serverNow: this.serverNow(), users };
  }
}

/** One admin connection to a FakeServer; closing it makes later calls fail, as a closed client does. */
class FakeTarget implements Target {
  private closed = false;

  constructor(
    private readonly server: FakeServer,
    private readonly servers: FakeServers,
  ) {}

  get address(): string {
    return this.server.address;
  }

  private open(): FakeServer {
    if (this.closed) throw new Error(`the connection to ${this.server.address} is closed`);
    return this.server;
  }

  async checkRecipe(): Promise<string[]> {
    this.open();
    return [];
  }

  createUser(user: NewUser): Promise<void> {
    return this.open().createUser(user);
  }

  renewUser(username: string, expiresAt: Date): Promise<void> {
    return this.open().renewUser(username, expiresAt);
  }

  revokeUsers(usernames: string[], options?: RevokeOptions): Promise<RevokeResult> {
    return this.open().revokeUsers(usernames, options);
  }

  listManagedUsers(): Promise<ManagedUsers> {
    return this.open().listManagedUsers();
  }

  async serverNow(): Promise<Date> {
    return this.open().serverNow();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.servers.open--;
    this.servers.calls.push({ op: 'close', server: this.server.address });
  }
}

/** Every fake server of a test, by `host:port`; made on first use. */
export class FakeServers {
  readonly calls: Call[] = [];
  /** Connections opened and not yet closed: every code path must close what it opened. */
  open = 0;
  private readonly byAddress = new Map<string, FakeServer>();

  constructor(readonly now: () => number) {}

  server(host: string, port: number, engine: BaseConnection['engine'] = 'postgresql'): FakeServer {
    const address = `${host}:${port}`;
    let server = this.byAddress.get(address);
    if (!server) {
      server = new FakeServer(address, engine, this);
      this.byAddress.set(address, server);
    }
    return server;
  }

  /** LeaseDeps' `connect`. */
  readonly connect = (connection: BaseConnection, options: ConnectOptions): Promise<Target> =>
    this.server(connection.host, connection.port, connection.engine).connect(connection, options);

  /** The calls of one kind, for asserting what reached the servers. */
  callsOf<K extends Call['op']>(op: K): Extract<Call, { op: K }>[] {
    return this.calls.filter((c): c is Extract<Call, { op: K }> => c.op === op);
  }
}
