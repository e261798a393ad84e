import { closeSync, fsyncSync, lstatSync, openSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { failed, usageError } from '../errors.js';

/**
 * Refuses an `--output` path that is a symbolic link, a directory, or in a directory that
 * does not exist. Commands that create something check it first, so a bad path never
 * leaves behind a credential nobody received.
 */
export function checkOutputPath(file: string): void {
  let existing;
  try {
    existing = lstatSync(file);
  } catch {
    existing = undefined;
  }
  if (existing?.isSymbolicLink()) {
    throw usageError('output_is_symlink', `Refusing to write ${file}: it is a symbolic link.`);
  }
  if (existing?.isDirectory()) {
    throw usageError('output_is_directory', `Refusing to write ${file}: it is a directory.`);
  }
  if (!existing && !isDirectory(dirname(file))) {
    throw usageError('output_no_directory', `Cannot write ${file}: its directory does not exist.`);
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Writes `--output` files: mode 0600 from the first byte, atomically (a temporary file in
 * the same directory, fsynced, then renamed), and never through a symlink, which could
 * point the credentials somewhere an attacker reads.
 */
export function writeFileAtomic(file: string, content: string): void {
  checkOutputPath(file);
  const temporary = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number | undefined;
  try {
    fd = openSync(temporary, 'wx', 0o600);
    writeSync(fd, content);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(temporary, file);
  } catch (error) {
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(temporary);
    } catch {
      // The temporary file was never created or is already renamed.
    }
    const reason = (error as NodeJS.ErrnoException).code ?? 'an I/O error';
    throw failed('output_failed', `Could not write ${file} (${reason}).`);
  }
}
