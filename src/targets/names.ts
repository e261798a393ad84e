import { randomInt } from 'node:crypto';
import { DEFAULT_USER_PREFIX, ENGINES, type Engine, RANDOM_PART_LENGTH } from '../model/engines.js';

const NAME_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
const BOUND_DIGITS = 7;
/** `<prefix><10 random>_sy<reap-after, base 36, 7 chars>`: see engines.ts. */
const MANAGED_NAME = /^(.*?)([a-z0-9]{10})_sy([0-9a-z]{7})$/;

function randomString(alphabet: string, length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) out += alphabet[randomInt(alphabet.length)];
  return out;
}

/** A fresh user name that carries, on the target, the instant after which it may be reaped. */
export function newUserName(engine: Engine, reapAfter: Date, prefix: string = DEFAULT_USER_PREFIX): string {
  const bound = Math.ceil(reapAfter.getTime() / 1000).toString(36).padStart(BOUND_DIGITS, '0');
  const name = `${prefix}${randomString(NAME_ALPHABET, RANDOM_PART_LENGTH)}_sy${bound}`;
  if (name.length > ENGINES[engine].maxUserName) {
    throw new Error(`user prefix too long for ${engine}`);
  }
  return name;
}

/** The reap-after bound of a user sy created, or undefined for any other user. */
export function parseManagedName(name: string): { reapAfter: Date } | undefined {
  const match = MANAGED_NAME.exec(name);
  if (!match) return undefined;
  return { reapAfter: new Date(parseInt(match[3], 36) * 1000) };
}

/** The SQL regular expression (PostgreSQL `~`, MySQL `REGEXP`) that finds sy's users. */
export const MANAGED_NAME_SQL_PATTERN = '[a-z0-9]{10}_sy[0-9a-z]{7}$';

const LOWER = 'abcdefghijkmnopqrstuvwxyz';
const UPPER = 'ABCDEFGHJKLMNPQRSTUVWXYZ';
const DIGITS = '23456789';
// URL-special characters on purpose: the connection string must percent-encode them.
// No quotes, backslash, backtick, dollar or space, so shells and SQL literals stay simple.
const SYMBOLS = '!#%*+-.:=?@^_~';
const PASSWORD_ALPHABET = LOWER + UPPER + DIGITS + SYMBOLS;
export const PASSWORD_LENGTH = 32;

/** 32 characters from a CSPRNG, with at least one of each class for password policies. */
export function newPassword(length = PASSWORD_LENGTH): string {
  for (;;) {
    const candidate = randomString(PASSWORD_ALPHABET, length);
    if ([LOWER, UPPER, DIGITS, SYMBOLS].every((set) => [...candidate].some((c) => set.includes(c)))) return candidate;
  }
}
