/**
 * A whole store in memory, as `sy store copy` moves it from one kind of store to another:
 * every row as the source keeps it (sealed payloads as they are, under the same data key),
 * the audit chain's lines verbatim with where it ends, and the key slot. Rows carry no MACs:
 * the source checked them on the way out, and the destination computes them again (the same
 * values, since both stores MAC the same columns). The data key never leaves the process.
 */
import type { AuditPosition } from '../audit/chain.js';
import { LIVE_LEASE_STATES } from '../model/lease.js';
import type { ClientColumns, LeaseColumns, SecretColumns, VersionColumns } from './rows.js';
import type { KeySlot } from './key-slot.js';
import { usageError } from '../errors.js';
import { Census, RecordMac, recordKey, shown, tampered as recordTampered } from './records.js';
import { CLIENT_CENSUS_WHAT, CLIENT_COLUMNS, LEASE_COLUMNS, clientMac, leaseMac, leaseMacHolds } from './rows.js';
import { SECRET_COLUMNS, VERSION_COLUMNS, secretMac, versionMac } from './sqlite-secrets.js';

export interface StoreDump {
  slot: KeySlot;
  dataKey: Buffer;
  /** Ordered by path; each with every version, oldest first. */
  secrets: { row: SecretColumns; versions: VersionColumns[] }[];
  /** In creation order. */
  leases: LeaseColumns[];
  /** By name. */
  clients: ClientColumns[];
  audit: { lines: string[]; head: AuditPosition };
}

/** What a copy moved, as the destination counts it once written. */
export interface CopyReport {
  from: string;
  to: string;
  kind: string;
  secrets: number;
  secretVersions: number;
  leases: Record<string, number>;
  auditLines: number;
  clients: number;
}

type WithMac<T> = T & { mac: Buffer | null };

/** Every row of a store as its engine read them, MACs included, and its censuses, read in one snapshot. */
export interface RawStore {
  slot: KeySlot;
  dataKey: Buffer;
  secrets: WithMac<SecretColumns>[];
  versions: WithMac<VersionColumns>[];
  leases: WithMac<LeaseColumns>[];
  clients: WithMac<ClientColumns>[];
  secretCensus: Census;
  leaseCensus: Census;
  clientCensus: Census;
  audit: StoreDump['audit'];
}

const isLive = (state: string): boolean => (LIVE_LEASE_STATES as readonly string[]).includes(state);
const pick = <R extends object, C extends keyof R>(row: R, names: readonly C[]): Pick<R, C> =>
  Object.fromEntries(names.map((name) => [name, row[name]])) as Pick<R, C>;

/**
 * The dump of a store, once every row has passed its MAC, every secret has its versions
 * 1..current, and the secrets and live leases are what their censuses say: a tampered store
 * is refused (exit 4) rather than copied, since the copy would make its rows valid again.
 */
export function checkedDump(raw: RawStore, restore = 'SY_HOME'): StoreDump {
  const tampered = (record: string) => recordTampered(record, restore);
  const macs = new RecordMac(recordKey(raw.dataKey), raw.slot.storeId);
  const secretCensus = new Census();
  const secrets = new Map<string, StoreDump['secrets'][number]>();
  for (const row of raw.secrets) {
    if (!macs.check(row.mac, 'secret', SECRET_COLUMNS.map((c) => row[c]))) throw tampered(`secret ${shown(row.path)}`);
    secretCensus.add(row.mac!);
    secrets.set(row.id, { row: pick(row, SECRET_COLUMNS), versions: [] });
  }
  if (!secretCensus.equals(raw.secretCensus)) throw tampered('its secrets');
  for (const row of raw.versions) {
    const owner = secrets.get(row.secret_id);
    if (!owner || !macs.check(row.mac, 'secret_version', VERSION_COLUMNS.map((c) => row[c]), row.sealed)) throw tampered(`secret ${shown(owner?.row.path ?? row.secret_id)}`);
    owner.versions.push({ ...pick(row, VERSION_COLUMNS), sealed: row.sealed });
  }
  for (const { row, versions } of secrets.values()) {
    versions.sort((a, b) => a.version - b.version);
    if (versions.length !== row.current_version || versions.some((v, i) => v.version !== i + 1)) throw tampered(`secret ${shown(row.path)}`);
  }
  const leaseCensus = new Census();
  const leases = raw.leases.map((row) => {
    if (!leaseMacHolds(macs, row)) throw tampered(`lease ${shown(row.id)}`);
    if (isLive(row.state)) leaseCensus.add(row.mac!);
    return { ...pick(row, LEASE_COLUMNS), client: row.client ?? null, sealed: row.sealed };
  });
  if (!leaseCensus.equals(raw.leaseCensus)) throw tampered('its live leases');
  const clientCensus = new Census();
  const clients = raw.clients.map((row) => {
    if (!macs.check(row.mac, 'client', CLIENT_COLUMNS.map((c) => row[c]))) throw tampered(`client ${shown(row.name)}`);
    clientCensus.add(row.mac!);
    return pick(row, CLIENT_COLUMNS);
  });
  if (!clientCensus.equals(raw.clientCensus)) throw tampered(CLIENT_CENSUS_WHAT);
  return { slot: raw.slot, dataKey: raw.dataKey, secrets: [...secrets.values()], leases, clients, audit: raw.audit };
}

/** The dump's rows with their MACs for the destination, and its censuses (the same store id and key: the same values). */
export function sealedRows(dump: StoreDump) {
  const macs = new RecordMac(recordKey(dump.dataKey), dump.slot.storeId);
  const secretCensus = new Census();
  const leaseCensus = new Census();
  const secrets = dump.secrets.map(({ row }) => {
    const mac = secretMac(macs, row);
    secretCensus.add(mac);
    return { ...row, mac };
  });
  const versions = dump.secrets.flatMap(({ versions: all }) => all.map((v) => ({ ...v, mac: versionMac(macs, v) })));
  const leases = dump.leases.map((lease) => {
    const mac = leaseMac(macs, lease);
    if (isLive(lease.state)) leaseCensus.add(mac);
    return { ...lease, mac };
  });
  const clientCensus = new Census();
  const clients = dump.clients.map((client) => {
    const mac = clientMac(macs, client);
    clientCensus.add(mac);
    return { ...client, mac };
  });
  return { secrets, versions, leases, clients, secretCensus, leaseCensus, clientCensus };
}

export const storeNotEmpty = (location: string, what: string) =>
  usageError('store_not_empty', `${location} is not empty (${what}): sy store copy only fills an empty one.`);
