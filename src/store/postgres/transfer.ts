/**
 * `sy store copy` in and out of a PostgreSQL store. Out: one REPEATABLE READ snapshot of
 * every row, the censuses and the audit chain, checked (checkedDump) before anything is
 * written elsewhere. In: into a database without a store, in one transaction under the
 * migration lock like `sy init`: a copy that fails leaves nothing behind.
 */
import { auditMac, verifyChain } from '../../audit/chain.js';
import { storeError } from '../../errors.js';
import { parseSlot } from '../key-slot.js';
import type { StoreOptions } from '../store.js';
import { type StoreDump, checkedDump, sealedRows, storeNotEmpty } from '../transfer.js';
import { type Sql, StoreConnection } from './connection.js';
import { writeNewStore } from './init.js';
import type { LeaseRow } from './leases.js';
import type { ClientRow } from './clients.js';
import { CLIENT_CENSUS, KEYSLOT, LEASE_CENSUS, SECRET_CENSUS } from './meta.js';
import { migrate } from './schema.js';
import type { SecretRow, VersionRow } from './secrets.js';
import { HAS_RECORDS, PostgresStore, SLOT_HINT } from './store.js';
import type { StoreUrl } from './url.js';

export async function dumpPostgres(store: PostgresStore): Promise<StoreDump> {
  const raw = await store.db.tx(async (sql) => {
    const [slot] = await sql<{ value: string }>('SELECT value FROM sy.meta WHERE key = $1', [KEYSLOT]);
    const head = await store.audit.readHead(sql, false);
    const lines = (await sql<{ line: string }>('SELECT line FROM sy.audit_lines ORDER BY seq')).map((r) => r.line);
    return {
      slot: parseSlot(slot?.value, SLOT_HINT),
      dataKey: store.dataKey,
      secrets: await sql<SecretRow>('SELECT * FROM sy.secrets ORDER BY path COLLATE "C"'),
      versions: await sql<VersionRow>('SELECT * FROM sy.secret_versions ORDER BY secret_id, version'),
      leases: await sql<LeaseRow>('SELECT * FROM sy.leases ORDER BY created_at, id COLLATE "C"'),
      clients: await sql<ClientRow>('SELECT * FROM sy.clients ORDER BY name COLLATE "C"'),
      secretCensus: await store.meta.readCensus(sql, SECRET_CENSUS, 'its secrets'),
      leaseCensus: await store.meta.readCensus(sql, LEASE_CENSUS, 'its live leases'),
      clientCensus: await store.meta.readCensus(sql, CLIENT_CENSUS, 'its clients'),
      audit: { lines, head },
    };
  }, 'snapshot');
  const verified = verifyChain(raw.audit.lines, auditMac(store.dataKey), raw.audit.head);
  if (!verified.ok) throw auditNotIntact(store.location, verified.firstBad!);
  return checkedDump(raw, 'the store database');
}

export const auditNotIntact = (location: string, bad: { line: number; reason: string }) =>
  storeError('audit_log_tampered', `The audit log of ${location} is not intact (line ${bad.line} ${bad.reason}), so the store was not copied.`,
    'Run `sy audit verify` there.');

/**
 * Writes `dump` into the database `url` names, which must hold no store: no key slot and no
 * row of sy's. Returns the new store, opened with the dump's data key.
 */
export async function loadPostgres(url: StoreUrl, dump: StoreDump, options: StoreOptions): Promise<PostgresStore> {
  const db = new StoreConnection(url);
  try {
    await db.tx(async (sql) => {
      await migrate(sql, url.location);
      const [state] = await sql<{ records: boolean }>(`SELECT ${HAS_RECORDS} AS records`);
      if (state.records) throw storeNotEmpty(url.location, 'it holds a store');
      const rows = sealedRows(dump);
      await insertRows(sql, 'sy.secrets', SECRET_TYPES, rows.secrets);
      await insertRows(sql, 'sy.secret_versions', VERSION_TYPES, rows.versions);
      await insertRows(sql, 'sy.leases', LEASE_TYPES, rows.leases);
      await insertRows(sql, 'sy.clients', CLIENT_TYPES, rows.clients);
      for (let start = 0; start < dump.audit.lines.length; start += BATCH) {
        await sql('INSERT INTO sy.audit_lines (seq, line) SELECT $1::bigint + n, line FROM unnest($2::text[]) WITH ORDINALITY AS t(line, n)',
          [start, dump.audit.lines.slice(start, start + BATCH)]);
      }
      await writeNewStore(sql, dump.slot, dump.dataKey, { secrets: rows.secretCensus, leases: rows.leaseCensus, clients: rows.clientCensus, audit: dump.audit.head });
    });
    return new PostgresStore(db, dump.dataKey, dump.slot.storeId, options);
  } catch (error) {
    await db.close();
    throw error;
  }
}

const BATCH = 1000;

const SECRET_TYPES: Record<string, string> = {
  id: 'text', path: 'text', kind: 'text', linked_path: 'text', current_version: 'integer', created: 'text', last_modified: 'text', mac: 'bytea',
};
const VERSION_TYPES: Record<string, string> = { secret_id: 'text', version: 'integer', created: 'text', sealed: 'bytea', mac: 'bytea' };
const LEASE_TYPES: Record<string, string> = {
  id: 'text', secret_id: 'text', base_id: 'text', path: 'text', pool: 'text', engine: 'text', target: 'text', username: 'text', state: 'text',
  created_at: 'bigint', expires_at: 'bigint', max_expires_at: 'bigint', attempts: 'integer', next_attempt_at: 'bigint', last_error: 'text',
  ended_at: 'bigint', owner_pid: 'integer', owner_host: 'text', claimant: 'text', claimed_until: 'bigint', client: 'text', sealed: 'bytea', mac: 'bytea',
};
const CLIENT_TYPES: Record<string, string> = {
  name: 'text', public_key: 'text', allow: 'text', max_ttl: 'bigint', max_leases: 'integer', created_at: 'bigint', updated_at: 'bigint', mac: 'bytea',
};

/** Inserts rows a thousand at a time, one array parameter per column. */
async function insertRows(sql: Sql, table: string, types: Record<string, string>, rows: object[]): Promise<void> {
  const names = Object.keys(types);
  const text = `INSERT INTO ${table} (${names.join(', ')}) SELECT * FROM unnest(${names.map((name, i) => `$${i + 1}::${types[name]}[]`).join(', ')})`;
  for (let start = 0; start < rows.length; start += BATCH) {
    const batch = rows.slice(start, start + BATCH) as Record<string, unknown>[];
    await sql(text, names.map((name) => batch.map((row) => row[name])));
  }
}
