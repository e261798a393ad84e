/**
 * Group commit of the SQLite store (WalSync in src/store/sqlite-db.ts), as `sy daemon` opens
 * it: a write resolves only once a sync of the WAL that began after its commit has finished;
 * writers waiting at once share one sync; a read does not wait; a failing sync is the
 * store's I/O error.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase, runWrite, WalSync, durableMethods } from '../../src/store/sqlite-db.js';

/** A sync that the test finishes by hand, counting how often it was started. */
function manualSync() {
  const pending: (() => void)[] = [];
  let started = 0;
  return {
    sync: () => {
      started++;
      return new Promise<void>((resolve) => pending.push(resolve));
    },
    started: () => started,
    finishAll: () => pending.splice(0).forEach((resolve) => resolve()),
  };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('WalSync', () => {
  test('nothing committed: durable() resolves without a sync', async () => {
    const disk = manualSync();
    await new WalSync(disk.sync).durable();
    expect(disk.started()).toBe(0);
  });

  test('a commit is durable only after a sync that began after it; waiting writers share one sync', async () => {
    const disk = manualSync();
    const wal = new WalSync(disk.sync);
    wal.committed();
    wal.committed();
    let done = 0;
    const waits = [wal.durable(), wal.durable(), wal.durable()].map((p) => p.then(() => done++));
    await tick();
    expect(disk.started()).toBe(1);
    expect(done).toBe(0);
    // A commit while that sync runs is not covered by it: its writer waits for the next one.
    wal.committed();
    const later = wal.durable().then(() => done++);
    disk.finishAll();
    await Promise.all(waits);
    await tick();
    expect(done).toBe(3);
    expect(disk.started()).toBe(2);
    disk.finishAll();
    await later;
    expect(done).toBe(4);
  });

  test('a sync that fails is the store I/O error, and the next wait tries again', async () => {
    let fail = true;
    let syncs = 0;
    const wal = new WalSync(async () => {
      syncs++;
      if (fail) throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
    });
    wal.committed();
    await expect(wal.durable()).rejects.toMatchObject({ code: 'store_io' });
    fail = false;
    await wal.durable();
    expect(syncs).toBe(2);
  });

  test('on a real store file: the connection commits without syncing, and a write through durableMethods waits for the WAL sync', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sy-group-commit-'));
    const db = await openDatabase(join(dir, 'sy.db'), { create: true });
    let enabled: WalSync | undefined;
    try {
      expect(db.pragma('synchronous', { simple: true })).toBe(2); // FULL, the default of every sy process
      enabled = WalSync.enable(db);
      expect(db.pragma('synchronous', { simple: true })).toBe(1); // NORMAL: the sync is WalSync's
      db.exec('CREATE TABLE t (v TEXT)');
      // runWrite counts its commits for the WalSync of its database, which syncs sy.db-wal.
      runWrite(db, () => db.prepare('INSERT INTO t (v) VALUES (?)').run('first'));
      await expect(enabled.durable()).resolves.toBeUndefined();
      // The same WalSync as enable() registered, with a sync the test holds back.
      const disk = manualSync();
      const wal = new WalSync(disk.sync);
      const repository = durableMethods(
        {
          async put(v: string) {
            runWrite(db, () => db.prepare('INSERT INTO t (v) VALUES (?)').run(v));
            wal.committed();
            return v;
          },
          count: () => (db.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n,
          async read() {
            return (db.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n;
          },
        },
        wal,
      );
      let resolved = false;
      const put = repository.put('a').then((v) => {
        resolved = true;
        return v;
      });
      await tick();
      expect(repository.count()).toBe(2); // committed
      expect(resolved).toBe(false); // but not told so before the sync
      // A read meanwhile does not wait for that sync: it committed nothing.
      await expect(repository.read()).resolves.toBe(2);
      expect(resolved).toBe(false);
      disk.finishAll();
      await expect(put).resolves.toBe('a');
    } finally {
      await enabled?.close();
      db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
