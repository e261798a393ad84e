import type { SecretColumns, VersionColumns } from './rows.js';
import { randomUUID } from 'node:crypto';
import type BetterSqlite3 from 'better-sqlite3';
import { usageError } from '../errors.js';
import { open, seal } from '../keys/crypto.js';
import type { NewSecret, Secret, SecretContent, SecretKind, SecretMetadata, SecretRef } from '../model/secret.js';
import { nowIso } from '../util/time.js';
import { Census, type RecordMac, shown, tampered } from './records.js';
import { type AuthenticatedMeta, runSnapshot, statementCache } from './sqlite-db.js';
import type { DeleteOptions, SecretRepository, SecretSearch } from './store.js';

type Database = BetterSqlite3.Database;

type SecretRow = SecretColumns & { mac: Buffer | null };

type VersionRow = VersionColumns & { mac: Buffer | null };

/** The columns each MAC covers, in order (a version's sealed payload follows its columns). */
export const SECRET_COLUMNS = ['id', 'path', 'kind', 'linked_path', 'current_version', 'created', 'last_modified'] as const;
export const VERSION_COLUMNS = ['secret_id', 'version', 'created'] as const;
export const SECRET_CENSUS = 'secret_census';
const CENSUS_WHAT = 'its secrets';
/** How often a long-lived handle recounts the secrets before it issues from one (as the lease ledger recounts). */
const CENSUS_EVERY_MS = 60_000;

export const secretMac = (macs: RecordMac, row: Omit<SecretRow, 'mac'>): Buffer => macs.of('secret', SECRET_COLUMNS.map((c) => row[c]));
export const versionMac = (macs: RecordMac, row: Omit<VersionRow, 'mac'>): Buffer => macs.of('secret_version', VERSION_COLUMNS.map((c) => row[c]), row.sealed);

interface SealedPayload extends SecretContent {
  path: string;
  kind: SecretKind;
  linkedPath?: string;
  created: string;
}

const secretAad = (id: string, version: number): string => `sy/secret/v1/${id}/${version}`;

/**
 * Secrets and their versions. A secret's row (path, kind, link, current version) and each
 * version row are checked against their MACs when read; the current version must be the
 * newest version row, so a version moved back, or a newest version deleted, is found by a
 * read of that secret. A whole row replayed from an older copy of the store together with
 * the removal of the versions after it is consistent on its own; the census of secrets
 * (count and sum of row MACs) finds it in any scan of every secret.
 */
export class SqliteSecretRepository implements SecretRepository {
  constructor(
    private readonly db: Database,
    private readonly dataKey: Buffer,
    private readonly macs: RecordMac,
    private readonly meta: AuthenticatedMeta,
    /** Live leases of a secret, each checked (the ledger's). */
    private readonly liveLeasesOf: (secretId: string) => number,
  ) {
    this.sql = statementCache(db);
  }

  private readonly sql: (text: string) => BetterSqlite3.Statement;

  async get(ref: SecretRef, version?: number): Promise<Secret | undefined> {
    return runSnapshot(this.db, () => {
      // A secret put back to an older version with the census of its time: the roots no longer agree.
      this.meta.readRoots();
      const row = this.findRow(ref);
      if (!row) return undefined;
      // Put back with the newer census, only a count finds it: done before a recipe or an admin is used.
      if (row.kind !== 'static' && this.censusStale()) this.recount();
      const wanted = version ?? row.current_version;
      if (wanted < 1 || wanted > row.current_version) return undefined;
      return this.toSecret(row, wanted, this.unseal(row, wanted));
    });
  }

  async create(secret: NewSecret): Promise<Secret> {
    const id = randomUUID();
    const now = nowIso();
    const payload: SealedPayload = { ...pickContent(secret), path: secret.path, kind: secret.kind, linkedPath: secret.linkedPath, created: now };
    const sealed = seal(this.dataKey, Buffer.from(JSON.stringify(payload)), secretAad(id, 1));
    const row: Omit<SecretRow, 'mac'> = { id, path: secret.path, kind: secret.kind, linked_path: secret.linkedPath ?? null, current_version: 1, created: now, last_modified: now };
    const mac = secretMac(this.macs, row);
    this.withCensus((census) => {
      if (this.sql('SELECT 1 FROM secrets WHERE path = ?').get(secret.path)) {
        throw usageError('secret_exists', `A secret already exists at ${secret.path}.`, 'Use `sy secret update` to change it.');
      }
      this.sql('INSERT INTO secrets (id, path, kind, linked_path, current_version, created, last_modified, mac) VALUES (?, ?, ?, ?, 1, ?, ?, ?)')
        .run(id, secret.path, secret.kind, secret.linkedPath ?? null, now, now, mac);
      this.insertVersion({ secret_id: id, version: 1, created: now, sealed });
      census.add(mac);
    });
    return { id, path: secret.path, version: 1, ...pickContent(secret), created: now, lastModified: now };
  }

  async addVersion(id: string, expectedVersion: number, content: SecretContent & { linkedPath?: string }): Promise<Secret | undefined> {
    const now = nowIso();
    const version = expectedVersion + 1;
    return this.withCensus((census) => {
      const found = this.sql('SELECT * FROM secrets WHERE id = ?').get(id) as SecretRow | undefined;
      if (!found) return undefined;
      const row = this.verified(found);
      if (row.current_version !== expectedVersion) return undefined;
      const previous = this.unseal(row, row.current_version);
      const payload: SealedPayload = { ...pickContent(content), path: row.path, kind: row.kind, linkedPath: content.linkedPath, created: previous.created };
      const sealed = seal(this.dataKey, Buffer.from(JSON.stringify(payload)), secretAad(id, version));
      this.insertVersion({ secret_id: id, version, created: now, sealed });
      const next: SecretRow = { ...row, current_version: version, last_modified: now, linked_path: content.linkedPath ?? null };
      next.mac = secretMac(this.macs, next);
      this.sql('UPDATE secrets SET current_version = ?, last_modified = ?, linked_path = ?, mac = ? WHERE id = ?')
        .run(version, now, next.linked_path, next.mac, id);
      census.remove(row.mac!);
      census.add(next.mac);
      return { id, path: row.path, version, ...pickContent(content), created: previous.created, lastModified: now };
    });
  }

  async delete(id: string, options: DeleteOptions): Promise<void> {
    this.withCensus((census) => {
      const found = this.sql('SELECT * FROM secrets WHERE id = ?').get(id) as SecretRow | undefined;
      if (!found) return;
      const row = this.verified(found);
      if (!options.force) {
        const links = (this.sql('SELECT * FROM secrets WHERE linked_path = ? ORDER BY path LIMIT 4').all(row.path) as SecretRow[]).map((l) => this.verified(l));
        if (links.length > 0) {
          const named = links.slice(0, 3).map((l) => l.path).join(', ') + (links.length > 3 ? ', ...' : '');
          throw usageError('secret_in_use', `${row.path} is the base of dynamic secrets (${named}).`, 'Delete those first, or pass --force.');
        }
        const live = this.liveLeasesOf(id);
        if (live > 0) {
          throw usageError('secret_in_use', `${row.path} has ${live} active lease${live === 1 ? '' : 's'}.`, 'Revoke them first, or pass --force.');
        }
      }
      this.sql('DELETE FROM secrets WHERE id = ?').run(id);
      census.remove(row.mac!);
    });
  }

  async search(search: SecretSearch): Promise<SecretMetadata[]> {
    return runSnapshot(this.db, () => {
      let rows: SecretRow[];
      if (search.linkedTo !== undefined) {
        rows = this.sql("SELECT * FROM secrets WHERE linked_path = ? AND kind = 'dynamic' ORDER BY path LIMIT ?")
          .all(search.linkedTo, search.limit) as SecretRow[];
      } else {
        const pattern = `%${(search.query ?? '').replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
        rows = this.sql("SELECT * FROM secrets WHERE path LIKE ? ESCAPE '\\' ORDER BY path LIMIT ?")
          .all(pattern, search.limit) as SecretRow[];
      }
      const checked = rows.map((row) => this.verified(row));
      // Every secret on one page: compare them with the census.
      if (search.linkedTo === undefined && !search.query && checked.length < search.limit) {
        const found = new Census();
        for (const row of checked) found.add(row.mac!);
        if (!found.equals(this.meta.readCensus(SECRET_CENSUS))) throw tampered(CENSUS_WHAT);
      }
      return checked.map((row) => {
        const { data: _data, ...metadata } = this.toSecret(row, row.current_version, this.unseal(row, row.current_version));
        return metadata;
      });
    });
  }

  private lastCensus: number | undefined;

  private censusStale(): boolean {
    return this.lastCensus === undefined || Date.now() - this.lastCensus >= CENSUS_EVERY_MS;
  }

  /** Every secret's row against its MAC, and all of them against the census: an older row of one is found. */
  private recount(): void {
    const found = new Census();
    for (const row of this.sql('SELECT * FROM secrets').iterate() as IterableIterator<SecretRow>) {
      if (!this.macs.check(row.mac, 'secret', SECRET_COLUMNS.map((c) => row[c]))) throw tampered(`secret ${shown(row.path)}`);
      found.add(row.mac!);
    }
    if (!found.equals(this.meta.readCensus(SECRET_CENSUS))) throw tampered(CENSUS_WHAT);
    this.lastCensus = Date.now();
  }

  private findRow(ref: SecretRef): SecretRow | undefined {
    const row = ('id' in ref
      ? this.sql('SELECT * FROM secrets WHERE id = ?').get(ref.id)
      : this.sql('SELECT * FROM secrets WHERE path = ?').get(ref.path)) as SecretRow | undefined;
    return row && this.verified(row);
  }

  /** Checks the row's MAC, and that its current version is the newest version there is. */
  private verified(row: SecretRow): SecretRow {
    if (!this.macs.check(row.mac, 'secret', SECRET_COLUMNS.map((c) => row[c]))) throw tampered(`secret ${shown(row.path)}`);
    const newest = (this.sql('SELECT max(version) AS v FROM secret_versions WHERE secret_id = ?').get(row.id) as { v: number | null }).v;
    if (newest !== row.current_version) throw tampered(`secret ${shown(row.path)}`);
    return row;
  }

  private insertVersion(version: Omit<VersionRow, 'mac'>): void {
    this.sql('INSERT INTO secret_versions (secret_id, version, created, sealed, mac) VALUES (?, ?, ?, ?, ?)')
      .run(version.secret_id, version.version, version.created, version.sealed, versionMac(this.macs, version));
  }

  /**
   * Opens a version of a checked row. Versions are never deleted one by one, so one that is
   * missing at or below the current version was removed; its payload must name the row's path and kind.
   */
  private unseal(row: SecretRow, version: number): SealedPayload {
    const found = this.sql('SELECT * FROM secret_versions WHERE secret_id = ? AND version = ?').get(row.id, version) as VersionRow | undefined;
    if (!found || !this.macs.check(found.mac, 'secret_version', VERSION_COLUMNS.map((c) => found[c]), found.sealed)) {
      throw tampered(`secret ${shown(row.path)}`);
    }
    const payload = JSON.parse(open(this.dataKey, found.sealed, secretAad(row.id, version)).toString('utf8')) as SealedPayload;
    if (payload.path !== row.path || payload.kind !== row.kind) throw tampered(`secret ${shown(row.path)}`);
    return payload;
  }

  /** A write transaction with the census of secrets loaded, updated by `fn` and saved. */
  private withCensus<T>(fn: (census: Census) => T): T {
    return this.meta.withCensus(SECRET_CENSUS, fn);
  }

  private toSecret(row: SecretRow, version: number, payload: SealedPayload): Secret {
    return {
      id: row.id,
      path: row.path,
      version,
      ...pickContent(payload),
      created: payload.created,
      lastModified: row.last_modified,
    };
  }
}

function pickContent(content: SecretContent): SecretContent {
  return { description: content.description, attributes: content.attributes, data: content.data };
}
