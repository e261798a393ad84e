/**
 * What a MySQL/MariaDB account may hand out, read from the lines of its SHOW GRANTS. The
 * information_schema privilege tables would be simpler to read, but they leave out the
 * privileges of the account's roles, which count when it grants. Pure functions, no
 * driver: MysqlTarget.checkRecipe feeds them the server's lines, the unit tests plain text.
 */

/** One SHOW GRANTS line that grants privileges (role memberships and PROXY lines are not). */
export interface HeldGrant {
  /**
   * `*.*`; a database pattern as stored (`_` and `%` are wildcards, `\` escapes one); or
   * one table, named literally.
   */
  on: { kind: 'global' } | { kind: 'database'; pattern: string } | { kind: 'table'; database: string; table: string };
  /** Upper case, single spaces; `ALL PRIVILEGES` stands for every privilege of its level. Column grants are left out. */
  privileges: Set<string>;
  /** WITH GRANT OPTION: the account may hand out what it holds at this level. */
  grantable: boolean;
}

/** Calls `visit` with each index of `text` outside quotes and parentheses until it returns true. */
function scanOutside(text: string, visit: (index: number) => boolean | void): void {
  let quote: string | undefined;
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote !== undefined) {
      if (c === '\\' && quote !== '`') i++;
      else if (c === quote && text[i + 1] === quote) i++;
      else if (c === quote) quote = undefined;
      continue;
    }
    if (c === '`' || c === "'" || c === '"') quote = c;
    else if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (depth === 0 && visit(i) === true) return;
  }
}

function indexOutside(text: string, needle: string): number {
  let found = -1;
  scanOutside(text, (i) => {
    if (!text.startsWith(needle, i)) return false;
    found = i;
    return true;
  });
  return found;
}

function splitOutside(text: string, separator: string): string[] {
  const parts: string[] = [];
  let start = 0;
  scanOutside(text, (i) => {
    if (text[i] !== separator) return;
    parts.push(text.slice(start, i));
    start = i + 1;
  });
  parts.push(text.slice(start));
  return parts;
}

/** `*`, a `quoted` name (`` is one backtick) or a bare one, at `from`; undefined if none is there. */
function readName(text: string, from: number): { name: string; next: number } | undefined {
  if (text[from] === '*') return { name: '*', next: from + 1 };
  if (text[from] === '`') {
    let name = '';
    for (let i = from + 1; i < text.length; i++) {
      if (text[i] !== '`') name += text[i];
      else if (text[i + 1] === '`') name += text[++i];
      else return { name, next: i + 1 };
    }
    return undefined;
  }
  const bare = /^[A-Za-z0-9_$]+/.exec(text.slice(from));
  return bare ? { name: bare[0], next: from + bare[0].length } : undefined;
}

/** One line of SHOW GRANTS, or undefined when it grants no privilege on a database or table. */
export function parseGrantLine(line: string): HeldGrant | undefined {
  if (!line.startsWith('GRANT ')) return undefined;
  const onAt = indexOutside(line, ' ON ');
  if (onAt < 0) return undefined; // a role membership: GRANT `role` TO ...
  let at = onAt + ' ON '.length;
  const objectType = /^(TABLE|PROCEDURE|FUNCTION|PACKAGE BODY|PACKAGE) /.exec(line.slice(at));
  if (objectType) {
    if (objectType[1] !== 'TABLE') return undefined; // routines are not what a recipe grants
    at += objectType[0].length;
  }
  const first = readName(line, at);
  if (!first || line[first.next] !== '.') return undefined; // PROXY ON ''@'%', or nothing sy knows
  const second = readName(line, first.next + 1);
  if (!second || !line.startsWith(' TO ', second.next)) return undefined;
  let on: HeldGrant['on'];
  if (first.name === '*' && second.name === '*') on = { kind: 'global' };
  else if (first.name === '*') return undefined;
  else if (second.name === '*') on = { kind: 'database', pattern: first.name };
  else on = { kind: 'table', database: first.name, table: second.name };

  const privileges = new Set<string>();
  for (const part of splitOutside(line.slice('GRANT '.length, onAt), ',')) {
    const privilege = part.trim().replace(/\s+/g, ' ').toUpperCase();
    if (privilege === '' || privilege.includes('(')) continue; // SELECT (col): on columns only
    privileges.add(privilege === 'ALL' ? 'ALL PRIVILEGES' : privilege);
  }
  // The grantee and any IDENTIFIED BY are quoted: without them, GRANT OPTION can only be WITH GRANT OPTION.
  const tail = line.slice(second.next).replace(/`(?:[^`]|``)*`|'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"/g, '');
  return { on, privileges, grantable: /\bGRANT OPTION\b/.test(tail) };
}

/** Whether a database-level grant's pattern covers `database`, as the server matches it. */
export function databasePatternMatches(pattern: string, database: string, ignoreCase: boolean): boolean {
  let source = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\' && i + 1 < pattern.length) source += escapeRegExp(pattern[++i]);
    else if (c === '%') source += '.*';
    else if (c === '_') source += '.';
    else source += escapeRegExp(c);
  }
  return new RegExp(`^${source}$`, ignoreCase ? 'is' : 's').test(database);
}

const escapeRegExp = (c: string): string => c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Which of `wanted` the account cannot grant on `database`.* (or on `database`.`table`):
 * the server adds up what the account holds globally, on the matching database patterns and
 * (for a table) on the table, and needs GRANT OPTION among the same.
 */
export function notGrantable(held: HeldGrant[], wanted: string[], database: string, table: string | undefined, ignoreCase: boolean): string[] {
  const same = (a: string, b: string) => (ignoreCase ? a.toLowerCase() === b.toLowerCase() : a === b);
  const applicable = held.filter(
    ({ on }) =>
      on.kind === 'global' ||
      (on.kind === 'database' && databasePatternMatches(on.pattern, database, ignoreCase)) ||
      (on.kind === 'table' && table !== undefined && same(on.database, database) && same(on.table, table)),
  );
  if (!applicable.some((g) => g.grantable)) return [...wanted];
  return wanted.filter((p) => !applicable.some((g) => g.privileges.has(p) || g.privileges.has('ALL PRIVILEGES')));
}
