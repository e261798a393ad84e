import type { Context } from '../../cli/context.js';
import { seconds, wholeNumber } from '../../cli/flags.js';
import type { ClientSettings, ClientView } from '../../clients/service.js';
import { MAX_LEASES_CAP } from '../../clients/service.js';
import { keyValueTable, type Printable, type Table } from '../../io/format.js';
import { readTextValue } from '../../io/input.js';
import { localTime } from '../../util/time.js';

/** The flags `client create` and `client update` share, as commander gives them. */
export interface ClientFlags {
  allow?: string[];
  maxTtl?: string;
  maxLeases?: string;
  publicKey?: string;
}

/** Flag text into the settings the service takes: seconds, a number, a checked PEM. */
export async function clientSettings(ctx: Context, flags: ClientFlags): Promise<ClientSettings> {
  const { parseClientPublicKey } = await import('../../clients/keys.js');
  return {
    allow: flags.allow,
    maxTtl: seconds(flags.maxTtl, '--max-ttl'),
    maxLeases: wholeNumber(flags.maxLeases, '--max-leases', { min: 1, max: MAX_LEASES_CAP, code: 'invalid_max_leases' }),
    publicKey: flags.publicKey === undefined ? undefined : parseClientPublicKey(await readTextValue(flags.publicKey, '--public-key', ctx.io.stdin)),
  };
}

const ttlCell = (ttl: number | null) => (ttl === null ? "recipe's" : `${ttl}s`);

/** One client: key/value rows for people, PRODUCT.md's field names for scripts. */
export function clientPrintable(client: ClientView & { private_key?: string; private_key_file?: string }): Printable {
  return {
    value: client,
    table: (): Table => {
      const { private_key: privateKey, ...rest } = client;
      const rows = keyValueTable({
        ...rest,
        allow: client.allow.join(', '),
        max_ttl: ttlCell(client.max_ttl),
        created_at: localTime(client.created_at),
        updated_at: localTime(client.updated_at),
        ...(privateKey === undefined ? {} : { private_key: '(below, shown once)' }),
      });
      // The PEM's lines start at the first column, unindented, so that it can be copied as it is.
      if (privateKey !== undefined) rows.push(['', ''], ...privateKey.trimEnd().split('\n').map((line) => [line, '']));
      return rows;
    },
    env: () => ({
      SY_CLIENT_ID: client.name,
      ...(client.private_key === undefined ? {} : { SY_PRIVATE_KEY: client.private_key }),
      ...(client.private_key_file === undefined ? {} : { SY_PRIVATE_KEY_FILE: client.private_key_file }),
    }),
  };
}

export function clientListPrintable(clients: ClientView[]): Printable {
  return {
    value: { data: clients },
    table: (): Table => [
      ['NAME', 'ALLOW', 'MAX TTL', 'ACTIVE / MAX LEASES', 'KEY', 'UPDATED'],
      ...clients.map((c) => [c.name, c.allow.join(', '), ttlCell(c.max_ttl), `${c.active_leases} / ${c.max_leases}`, c.key_fingerprint, localTime(c.updated_at)]),
    ],
  };
}
