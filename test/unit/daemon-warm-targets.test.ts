/**
 * The daemon's warm admin connections (src/daemon/warm-targets.ts), with a fake Target that
 * counts connections: a connection goes back for the next create only when it did nothing but
 * issue a lease; a stale one is replaced before anything is sent; creates on one database take
 * turns, and a turn held too long is not waited for.
 */
import { Turns, warmTargets } from '../../src/daemon/warm-targets.js';
import type { BaseConnection } from '../../src/model/secret.js';
import type { NewUser, Target } from '../../src/targets/target.js';

interface Conn extends Target {
  id: number;
  closed: boolean;
  dead: boolean;
}

function fakeServer() {
  const opened: Conn[] = [];
  let creating = 0;
  let mostAtOnce = 0;
  let preparing = 0;
  let mostPreparing = 0;
  let createMs = 0;
  let failCreate = false;
  const connect = async (): Promise<Target> => {
    const conn: Conn = {
      id: opened.length + 1,
      closed: false,
      dead: false,
      address: 'db:5432',
      async serverNow() {
        if (conn.dead || conn.closed) throw new Error('Connection terminated unexpectedly');
        return new Date();
      },
      // As the PostgreSQL target: some work outside the turn (the role), then the grants in it.
      async createUser(user: NewUser) {
        if (conn.dead || conn.closed) throw new Error('Connection terminated unexpectedly');
        preparing++;
        mostPreparing = Math.max(mostPreparing, preparing);
        await new Promise((resolve) => setTimeout(resolve, createMs));
        preparing--;
        const done = await user.turn?.();
        try {
          creating++;
          mostAtOnce = Math.max(mostAtOnce, creating);
          await new Promise((resolve) => setTimeout(resolve, createMs));
          creating--;
        } finally {
          done?.();
        }
        if (failCreate) throw new Error('permission denied');
      },
      renewUser: async () => undefined,
      revokeUsers: async () => ({ dropped: [], absent: [], failed: [] }),
      listManagedUsers: async () => ({ serverNow: new Date(), users: [] }),
      checkRecipe: async () => [],
      async close() {
        conn.closed = true;
      },
    };
    opened.push(conn);
    return conn;
  };
  return {
    connect,
    opened,
    mostAtOnce: () => mostAtOnce,
    mostPreparing: () => mostPreparing,
    set createMs(ms: number) {
      createMs = ms;
    },
    set failCreate(on: boolean) {
      failCreate = on;
    },
  };
}

const BASE: BaseConnection = { engine: 'postgresql', host: 'db', port: 5432, username: 'admin', password: 'pw', database: 'app' } as BaseConnection;
const OPTIONS = { connectTimeoutMs: 10_000 };
const user = (extra: Partial<NewUser> = {}): NewUser => ({ username: 'u', password: 'p', expiresAt: new Date(), grants: [], ...extra });

/** What issueLease does with a target: read the clock, create, close (twice: after the create and in its finally). */
async function issue(connect: (c: BaseConnection, o: typeof OPTIONS) => Promise<Target>, extra?: Partial<NewUser>, base = BASE): Promise<void> {
  const target = await connect(base, OPTIONS);
  try {
    await target.serverNow();
    await target.createUser(user(extra));
  } finally {
    await target.close();
    await target.close();
  }
}

describe('warm admin connections', () => {
  test('a connection that issued a lease is reused by the next create; closing the pool closes it', async () => {
    const server = fakeServer();
    const warm = warmTargets(server.connect);
    await issue(warm.connect);
    await issue(warm.connect);
    await issue(warm.connect);
    expect(server.opened).toHaveLength(1);
    expect(warm.idle()).toBe(1);
    await warm.close();
    expect(server.opened[0].closed).toBe(true);
    expect(warm.idle()).toBe(0);
    // After close, nothing is kept.
    await issue(warm.connect);
    expect(server.opened.at(-1)!.closed).toBe(true);
  });

  test('a failed create, custom creation statements, or any other verb close the connection instead', async () => {
    const server = fakeServer();
    const warm = warmTargets(server.connect);
    server.failCreate = true;
    await expect(issue(warm.connect)).rejects.toThrow('permission denied');
    server.failCreate = false;
    expect(server.opened[0].closed).toBe(true);

    await issue(warm.connect, { creationStatements: ['SET ROLE someone'] });
    expect(server.opened[1].closed).toBe(true);

    const revoking = await warm.connect(BASE, OPTIONS);
    await revoking.revokeUsers(['u']);
    await revoking.close();
    const renewing = await warm.connect(BASE, OPTIONS);
    await renewing.renewUser('u', new Date());
    await renewing.close();
    expect(server.opened.slice(2).every((c) => c.closed)).toBe(true);
    expect(warm.idle()).toBe(0);
    await warm.close();
  });

  test('other credentials or another server never get a connection made with these', async () => {
    const server = fakeServer();
    const warm = warmTargets(server.connect);
    await issue(warm.connect);
    await issue(warm.connect, {}, { ...BASE, password: 'rotated' } as BaseConnection);
    await issue(warm.connect, {}, { ...BASE, database: 'other' } as BaseConnection);
    expect(server.opened).toHaveLength(3);
    expect(warm.idle()).toBe(3);
    await warm.close();
  });

  test('an idle connection the server ended meanwhile is replaced before anything is sent', async () => {
    const server = fakeServer();
    const warm = warmTargets(server.connect);
    await issue(warm.connect);
    server.opened[0].dead = true;
    await issue(warm.connect);
    expect(server.opened).toHaveLength(2);
    expect(server.opened[0].closed).toBe(true);
    await warm.close();
  });

  test('when the replacement of a dead idle connection cannot be made either, nothing dead goes back', async () => {
    const server = fakeServer();
    let refuse = false;
    const warm = warmTargets(async () => {
      if (refuse) throw new Error('connection refused');
      return server.connect();
    });
    await issue(warm.connect);
    server.opened[0].dead = true;
    refuse = true;
    await expect(issue(warm.connect)).rejects.toThrow('connection refused');
    expect(warm.idle()).toBe(0);
    refuse = false;
    await issue(warm.connect);
    expect(server.opened).toHaveLength(2);
    await warm.close();
  });

  test('idle connections are closed after idleMs', async () => {
    const server = fakeServer();
    const warm = warmTargets(server.connect, { idleMs: 100 });
    await issue(warm.connect);
    expect(warm.idle()).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(warm.idle()).toBe(0);
    expect(server.opened[0].closed).toBe(true);
    await warm.close();
  });

  test('at most maxIdle connections wait; the rest are closed', async () => {
    const server = fakeServer();
    server.createMs = 20;
    const warm = warmTargets(server.connect, { maxIdle: 2, turnWaitMs: 0 });
    await Promise.all([1, 2, 3, 4].map(() => issue(warm.connect)));
    expect(server.opened).toHaveLength(4);
    expect(warm.idle()).toBe(2);
    expect(server.opened.filter((c) => c.closed)).toHaveLength(2);
    await warm.close();
  });

  test('a server that refuses a new connection while idle ones sit on it: they are closed and the connection tried again (revocations first)', async () => {
    const server = fakeServer();
    server.createMs = 10;
    // The admin's CONNECTION LIMIT is 3: a new connection is refused while three are open.
    let refusals = 0;
    const limited = async () => {
      if (server.opened.filter((x) => !x.closed).length >= 3) {
        refusals++;
        throw new Error('too many connections for role "admin"');
      }
      return server.connect();
    };
    const warm = warmTargets(limited, { turnWaitMs: 0 });
    await Promise.all([1, 2, 3].map(() => issue(warm.connect)));
    expect(warm.idle()).toBe(3);
    // The revocation loop's connection: refused once, the idle ones closed, then it gets in.
    const revoking = await warm.plain(BASE, OPTIONS);
    expect(refusals).toBe(1);
    expect(warm.idle()).toBe(0);
    await revoking.revokeUsers(['u']);
    await revoking.close();
    // Refused with nothing idle to give back: the refusal stands.
    const others = await Promise.all([1, 2, 3].map(() => warm.plain(BASE, OPTIONS)));
    await expect(warm.plain(BASE, OPTIONS)).rejects.toThrow('too many connections');
    await Promise.all(others.map((t) => t.close()));
    await warm.close();
  });

  test('creates on one database take turns for their grants only; on another they do not wait', async () => {
    const server = fakeServer();
    server.createMs = 30;
    const warm = warmTargets(server.connect);
    await Promise.all([1, 2, 3, 4, 5].map(() => issue(warm.connect)));
    expect(server.mostAtOnce()).toBe(1);
    expect(server.mostPreparing()).toBe(5);
    const elsewhere = { ...BASE, database: 'other' } as BaseConnection;
    await Promise.all([issue(warm.connect, {}, BASE), issue(warm.connect, {}, elsewhere)]);
    expect(server.mostAtOnce()).toBe(2);
    await warm.close();
  });
});

describe('Turns', () => {
  test('each taker waits for the one before it', async () => {
    const turns = new Turns();
    const order: string[] = [];
    const first = await turns.take('k', 10_000);
    const second = turns.take('k', 10_000).then((done) => {
      order.push('second');
      done();
    });
    await new Promise((resolve) => setTimeout(resolve, 30));
    order.push('first done');
    first();
    await second;
    expect(order).toEqual(['first done', 'second']);
  });

  test('a turn held longer than maxWaitMs is not waited for', async () => {
    const turns = new Turns();
    await turns.take('k', 10_000); // never given back: a target that hangs
    const started = Date.now();
    const done = await turns.take('k', 100);
    done();
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});
