/**
 * The SQLite store's audit log is checked without the store's lock (before a command, by
 * `lease list`): a daemon may append and commit between the check's read of the head and its
 * read of the file. That is a race, not someone without the key putting back the head; a
 * head that stays put while the file runs ahead of it still is.
 */
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { auditMac } from '../../../src/audit/chain.js';
import { type AuditHead, FileAuditLog, isAheadOfHead } from '../../../src/audit/file-log.js';

type Head = ReturnType<AuditHead['read']>;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sy-audit-race-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const mac = auditMac(randomBytes(32));

/** A log whose head lives in memory, as the store's meta rows would hold it. */
function logWith(head: { current: Head; reads?: () => Head }) {
  const store: AuditHead = {
    read: () => (head.reads ? head.reads() : head.current),
    write: (position) => {
      head.current = { ...head.current, ...position, generation: head.current.generation + 1 };
    },
  };
  return new FileAuditLog({ home: dir, actor: 'test', exclusive: (fn) => fn(), mac, head: store, warn: () => undefined });
}

const start = (): Head => ({ lines: 0, bytes: 0, hash: '0'.repeat(64), generation: 0 });

test("a daemon's appends between the head's read and the file's are a race: the check reads the head again", async () => {
  const head = { current: start() } as { current: Head; reads?: () => Head };
  const writer = logWith(head);
  await writer.append([{ action: 'lease.create', outcome: 'success' }]);
  const seen = { ...head.current };
  // Meanwhile the daemon records an intent (the generation moves without a line) and appends.
  head.current = { ...head.current, generation: head.current.generation + 1 };
  await writer.append([{ action: 'lease.create', outcome: 'success' }]);
  // The reader's first look at the head is from before both; its next is the committed one.
  let reads = 0;
  head.reads = () => (reads++ === 0 ? seen : head.current);
  const reader = logWith(head);
  await expect(reader.check()).resolves.toBeUndefined();
  expect(reads).toBeGreaterThan(1);
});

test('a head that stays put behind lines of later generations is still refused (exit 4)', async () => {
  const head = { current: start() } as { current: Head; reads?: () => Head };
  const writer = logWith(head);
  await writer.append([{ action: 'lease.create', outcome: 'success' }]);
  const putBack = { ...head.current };
  head.current = { ...head.current, generation: head.current.generation + 1 };
  await writer.append([{ action: 'lease.create', outcome: 'success' }]);
  head.reads = () => putBack;
  const refused = await logWith(head).check().then(() => undefined, (error: unknown) => error as { exitCode: number; message: string });
  expect(refused?.message).toMatch(/written after it/);
  expect(refused?.exitCode).toBe(4);
});

test("inside the store's read transaction (the recount), a head commits old says so in a way the store retries with a new snapshot; lines that do not chain do not", async () => {
  const head = { current: start() } as { current: Head; reads?: () => Head };
  const writer = logWith(head);
  await writer.append([{ action: 'lease.create', outcome: 'success' }]);
  const snapshot = { ...head.current };
  for (let i = 0; i < 3; i++) {
    head.current = { ...head.current, generation: head.current.generation + 1 };
    await writer.append([{ action: 'lease.create', outcome: 'success' }]);
  }
  head.reads = () => snapshot;
  const behind = (() => {
    try {
      logWith(head).checkEnd();
    } catch (error) {
      return error;
    }
  })();
  expect(isAheadOfHead(behind)).toBe(true);
  // With the snapshot's head current again, the same log passes.
  head.reads = undefined;
  expect(() => logWith(head).checkEnd()).not.toThrow();
  appendFileSync(join(dir, 'audit.log'), '{"not":"sy"}\n');
  const foreign = (() => {
    try {
      logWith(head).checkEnd();
    } catch (error) {
      return error;
    }
  })();
  expect((foreign as Error).message).toMatch(/not sy's/);
  expect(isAheadOfHead(foreign)).toBe(false);
});
