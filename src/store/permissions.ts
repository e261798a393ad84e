import { chmodSync, lstatSync, type Stats, statSync } from 'node:fs';
import { join } from 'node:path';
import { storeError } from '../errors.js';

/** The files sy keeps in SY_HOME: the store, SQLite's WAL and shared memory, the audit log. */
const STORE_FILES = ['sy.db', 'sy.db-wal', 'sy.db-shm', 'audit.log'];

/**
 * Checks SY_HOME before the store is opened, as OpenSSH checks ~/.ssh: what others can
 * write, others can tamper with. A directory or file of ours that is too open is tightened
 * (0700, 0600), with a notice when others could write it; one that belongs to another user
 * is refused, since we could not tighten it and its owner can change it at will. A link
 * where a store file should be is refused: sy would read or write whatever it points to.
 * SY_HOME itself may be a link; its target is what is checked. Without POSIX owners
 * (Windows) there is nothing to check.
 */
export function secureHome(home: string, notice: (text: string) => void): void {
  const uid = process.getuid?.();
  if (uid === undefined) return;
  const dir = statOrUndefined(() => statSync(home));
  if (!dir) return;
  if (!dir.isDirectory()) throw storeError('home_not_directory', `SY_HOME ${home} is not a directory.`, 'Set SY_HOME to a directory.');
  const fix = `Create a directory of your own for the store (mkdir -m 700 ${join(home, 'sy')}) and set SY_HOME to it.`;
  if (dir.uid !== uid) throw storeError('home_not_owned', `SY_HOME ${home} belongs to another user (uid ${dir.uid}), so sy will not use it.`, fix);
  tighten(home, dir, 0o700, notice);
  for (const name of STORE_FILES) {
    const file = join(home, name);
    const stats = statOrUndefined(() => lstatSync(file));
    if (!stats) continue;
    if (stats.isSymbolicLink()) throw storeError('store_file_link', `${file} is a symbolic link, which sy does not follow.`, 'Replace it with the real file, or restore SY_HOME from a backup.');
    if (!stats.isFile()) throw storeError('store_file_kind', `${file} is not a regular file.`, 'Restore SY_HOME from a backup.');
    if (stats.uid !== uid) throw storeError('store_file_not_owned', `${file} belongs to another user (uid ${stats.uid}), so sy will not use it.`, fix);
    tighten(file, stats, 0o600, notice);
  }
}

/**
 * Read bits for others are dropped quietly (a store copied from a 0444 Secret mount is
 * normal); write bits for others are worth saying: someone may already have used them.
 */
function tighten(path: string, stats: Stats, mode: number, notice: (text: string) => void): void {
  if ((stats.mode & 0o777) === mode) return;
  chmodSync(path, mode);
  if (stats.mode & 0o022) notice(`${path} could be written by other users; sy made it ${mode.toString(8).padStart(4, '0')}.`);
}

function statOrUndefined(fn: () => Stats): Stats | undefined {
  try {
    return fn();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}
