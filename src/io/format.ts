import { usageError } from '../errors.js';
import { paint } from './color.js';

export const FORMATS = ['json', 'yaml', 'table', 'env', 'dotenv'] as const;
export type Format = (typeof FORMATS)[number];

/** Rows of a table: the first row is the header. */
export type Table = string[][];

/**
 * What a command returns for printing. `value` is the JSON shape (json, yaml, --filter);
 * `table` is how people read it, `env` the variables that shells (`env`) and env files
 * (`dotenv`) get.
 */
export interface Printable {
  value: unknown;
  table?: () => Table;
  env?: () => Record<string, string>;
}

export interface FormatOptions {
  format?: string;
  filter?: string;
  /** Where the output goes decides the default format. */
  toTerminal: boolean;
  /** Bold table headers (only on a terminal with colour on). */
  color?: boolean;
}

export function parseFormat(input: string | undefined, toTerminal: boolean): Format {
  if (input === undefined) return toTerminal ? 'table' : 'json';
  const format = input.toLowerCase();
  if (!(FORMATS as readonly string[]).includes(format)) {
    throw usageError('invalid_format', `--format must be one of ${FORMATS.join(', ')}.`);
  }
  return format as Format;
}

export async function render(printable: Printable, options: FormatOptions): Promise<string> {
  const format = parseFormat(options.format, options.toTerminal);
  if (options.filter !== undefined) return renderFiltered(pick(printable.value, options.filter), format);
  switch (format) {
    case 'json':
      return `${JSON.stringify(printable.value, null, 2)}\n`;
    case 'yaml': {
      const { stringify } = await import('yaml');
      return stringify(printable.value);
    }
    case 'table': {
      const text = renderTable(printable.table ? printable.table() : keyValueTable(printable.value));
      if (!options.color) return text;
      const { bold } = await paint(true);
      const newline = text.indexOf('\n');
      return bold(text.slice(0, newline)) + text.slice(newline);
    }
    case 'env':
      return renderEnv(printable.env ? printable.env() : flattenForEnv(printable.value));
    case 'dotenv':
      return renderDotenv(printable.env ? printable.env() : flattenForEnv(printable.value));
  }
}

async function renderFiltered(value: unknown, format: Format): Promise<string> {
  if (value === null || typeof value !== 'object') return `${String(value)}\n`;
  if (format === 'yaml') {
    const { stringify } = await import('yaml');
    return stringify(value);
  }
  return `${JSON.stringify(value, null, 2)}\n`;
}

/**
 * `data.password`, `password`, `data[0].path` or `data.0.path`. A lease is flat (its
 * password is `password`), but scripts written for secrets say `data.password`: on a value
 * with no `data` field, a leading `data.` is skipped, so the same filter serves both.
 */
export function pick(value: unknown, field: string): unknown {
  let steps = field.replace(/\[(\d+)\]/g, '.$1').split('.').filter((s) => s !== '');
  if (steps.length > 1 && steps[0] === 'data' && value !== null && typeof value === 'object' && !Object.hasOwn(value, 'data')) steps = steps.slice(1);
  let current: unknown = value;
  for (const step of steps) {
    if (current !== null && typeof current === 'object' && Object.hasOwn(current, step)) {
      current = (current as Record<string, unknown>)[step];
    } else {
      throw usageError('unknown_field', `The result has no field "${field.slice(0, 60)}".`);
    }
  }
  if (current === undefined) throw usageError('unknown_field', `The result has no field "${field.slice(0, 60)}".`);
  return current;
}

/** Flattens nested objects into `a.b` keys with scalar values: the table of one record. */
export function keyValueTable(value: unknown): Table {
  const rows: Table = [['KEY', 'VALUE']];
  const walk = (prefix: string, v: unknown): void => {
    if (v !== null && typeof v === 'object' && !(Array.isArray(v) && v.length === 0) && Object.keys(v).length > 0) {
      for (const [k, child] of Object.entries(v)) walk(prefix ? `${prefix}.${k}` : k, child);
    } else {
      rows.push([prefix, scalarText(v)]);
    }
  };
  walk('', value);
  return rows;
}

export function scalarText(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

export function renderTable(rows: Table): string {
  if (rows.length <= 1) return rows.length === 1 ? `${rows[0].join('  ')}\n(none)\n` : '';
  const clean = rows.map((row) => row.map((cell) => cell.replace(/[\r\n\t]/g, ' ')));
  const widths = clean[0].map((_, i) => Math.max(...clean.map((row) => (row[i] ?? '').length)));
  return clean
    .map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]))).join('  ').trimEnd())
    .join('\n')
    .concat('\n');
}

/**
 * `export KEY='value'` lines for `eval "$(sy ... --format env)"` or `source`: exported, so
 * that psql and the other programs the script runs next see them. Every value is
 * single-quoted, the one quoting in which sh, bash and zsh take every byte literally.
 */
export function renderEnv(vars: Record<string, string>): string {
  return Object.entries(vars)
    .map(([key, value]) => `export ${key}=${shellQuote(value)}`)
    .join('\n')
    .concat('\n');
}

/** The single-quoted shell word for `value`: a `'` inside ends the quote, adds `\'`, reopens. */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/**
 * Plain `KEY=value` lines for env files, as Docker's `--env-file` reads them: everything
 * after the first `=` is the value, byte for byte, so nothing is quoted or escaped (a quote
 * would become part of the value there). A line break cannot be written that way, so a
 * value holding one is refused rather than cut.
 */
export function renderDotenv(vars: Record<string, string>): string {
  return Object.entries(vars)
    .map(([key, value]) => {
      if (/[\r\n]/.test(value)) {
        throw usageError('dotenv_line_break', `The value of ${key} has a line break, which a KEY=value line cannot hold; use --format env or json.`);
      }
      return `${key}=${value}`;
    })
    .join('\n')
    .concat('\n');
}

export function envName(key: string): string {
  const name = key.replace(/[^A-Za-z0-9]+/g, '_').replace(/^_+|_+$/g, '').toUpperCase();
  return /^[0-9]/.test(name) ? `_${name}` : name;
}

function flattenForEnv(value: unknown): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const [key, v] of keyValueTable(value).slice(1)) vars[envName(key)] = v;
  return vars;
}
