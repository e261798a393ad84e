import type { SecretColumns, VersionColumns } from '../rows.js';
import { randomUUID } from 'node:crypto';
import { usageError } from '../../errors.js';
import { open, seal } from '../../keys/crypto.js';
import type { NewSecret, Secret, SecretContent, SecretKind, SecretMetadata, SecretRef } from '../../model/secret.js';
import { nowIso } from '../../util/time.js';
import { Census, type RecordMac, shown } from '../records.js';
import { SECRET_COLUMNS, VERSION_COLUMNS, secretMac, versionMac } from '../sqlite-secrets.js';
import type { DeleteOptions, SecretRepository, SecretSearch } from '../store.js';
import type { Sql, StoreConnection } from './connection.js';
import { type PgMeta, SECRET_CENSUS, tampered } from './meta.js';

export type SecretRow = SecretColumns & { mac: Buffer };

export type VersionRow = VersionColumns & { mac: Buffer };

/** A secret's row with the newest version number there is and one version (`v_*`), read in one statement. */
interface JoinedRow extends SecretRow {
  newest: number | null;
  v_version: number | null;
  v_created: string | null;
  v_sealed: Buffer | null;
  v_mac: Buffer | null;
}

interface SealedPayload extends SecretContent {
  path: string;
  kind: SecretKind;
  linkedPath?: string;
  created: string;
}

const CENSUS_WHAT = 'its secrets';
const secretAad = (id: string, version: number): string => `sy/secret/v1/${id}/${version}`;

/** One statement: a consistent view of the row, its newest version number and the version asked for (default: the current one). */
const JOINED = `SELECT s.*, (SELECT max(version) FROM sy.secret_versions n WHERE n.secret_id = s.id) AS newest,
         v.version AS v_version, v.created AS v_created, v.sealed AS v_sealed, v.mac AS v_mac
    FROM sy.secrets s LEFT JOIN sy.secret_versions v ON v.secret_id = s.id AND v.version = COALESCE($2::integer, s.current_version)`;

/**
 * Secrets and their versions, checked as in SQLite (see SqliteSecretRepository): each row
 * against its MAC, the current version against the newest version row, and every scan of all
 * secrets against the census. Writes are compare-and-set on the row as read and checked
 * (`mac = $old`): a row changed by anyone in between, sy or not, makes the write a no-op.
 */
export class PostgresSecretRepository implements SecretRepository {
  constructor(
    private readonly db: StoreConnection,
    private readonly dataKey: Buffer,
    private readonly macs: RecordMac,
    private readonly meta: PgMeta,
    /** Live leases of a secret, each checked (the ledger's), in the caller's transaction. */
    private readonly liveLeasesOf: (sql: Sql, secretId: string) => Promise<number>,
  ) {}

  async get(ref: SecretRef, version?: number): Promise<Secret | undefined> {
    if (version !== undefined && version < 1) return undefined;
    const rows = await this.db.use(async (sql) => {
      // A secret put back to an older version with the census of its time: the roots no longer agree.
      await this.meta.readRoots(sql);
      return sql<JoinedRow>(`${JOINED} WHERE ${'id' in ref ? 's.id' : 's.path'} = $1`, ['id' in ref ? ref.id : ref.path, version ?? null]);
    });
    if (rows.length === 0) return undefined;
    const row = this.verified(rows[0]);
    if (version !== undefined && version > row.current_version) return undefined;
    return this.toSecret(row, this.unseal(row));
  }

  async create(secret: NewSecret): Promise<Secret> {
    const id = randomUUID();
    const now = nowIso();
    const payload: SealedPayload = { ...pickContent(secret), path: secret.path, kind: secret.kind, linkedPath: secret.linkedPath, created: now };
    const sealed = seal(this.dataKey, Buffer.from(JSON.stringify(payload)), secretAad(id, 1));
    const row: Omit<SecretRow, 'mac'> = { id, path: secret.path, kind: secret.kind, linked_path: secret.linkedPath ?? null, current_version: 1, created: now, last_modified: now };
    const mac = secretMac(this.macs, row);
    await this.db.tx(async (sql) => {
      const inserted = await sql(
        `INSERT INTO sy.secrets (id, path, kind, linked_path, current_version, created, last_modified, mac)
         VALUES ($1, $2, $3, $4, 1, $5, $6, $7) ON CONFLICT (path) DO NOTHING RETURNING id`,
        [id, row.path, row.kind, row.linked_path, now, now, mac],
      );
      if (inserted.length === 0) throw usageError('secret_exists', `A secret already exists at ${secret.path}.`, 'Use `sy secret update` to change it.');
      await this.insertVersion(sql, { secret_id: id, version: 1, created: now, sealed });
      await this.meta.updateCensus(sql, SECRET_CENSUS, (census) => census.add(mac));
    });
    return { id, path: secret.path, version: 1, ...pickContent(secret), created: now, lastModified: now };
  }

  async addVersion(id: string, expectedVersion: number, content: SecretContent & { linkedPath?: string }): Promise<Secret | undefined> {
    const now = nowIso();
    const version = expectedVersion + 1;
    return this.db.tx(async (sql) => {
      const rows = await sql<JoinedRow>(`${JOINED} WHERE s.id = $1`, [id, null]);
      if (rows.length === 0) return undefined;
      const row = this.verified(rows[0]);
      if (row.current_version !== expectedVersion) return undefined;
      const previous = this.unseal(row);
      const payload: SealedPayload = { ...pickContent(content), path: row.path, kind: row.kind, linkedPath: content.linkedPath, created: previous.created };
      const sealed = seal(this.dataKey, Buffer.from(JSON.stringify(payload)), secretAad(id, version));
      const next: Omit<SecretRow, 'mac'> = { ...plainSecret(row), current_version: version, last_modified: now, linked_path: content.linkedPath ?? null };
      const mac = secretMac(this.macs, next);
      const updated = await sql(
        `UPDATE sy.secrets SET current_version = $3, last_modified = $4, linked_path = $5, mac = $6
          WHERE id = $1 AND current_version = $2 AND mac = $7 RETURNING id`,
        [id, expectedVersion, version, now, next.linked_path, mac, row.mac],
      );
      if (updated.length === 0) return undefined; // another writer got there first
      await this.insertVersion(sql, { secret_id: id, version, created: now, sealed });
      await this.meta.updateCensus(sql, SECRET_CENSUS, (census) => {
        census.remove(row.mac);
        census.add(mac);
      });
      return { id, path: row.path, version, ...pickContent(content), created: previous.created, lastModified: now };
    });
  }

  async delete(id: string, options: DeleteOptions): Promise<void> {
    await this.db.tx(async (sql) => {
      for (;;) {
        const rows = await sql<JoinedRow>(`${JOINED} WHERE s.id = $1`, [id, null]);
        if (rows.length === 0) return;
        const row = this.verified(rows[0]);
        if (!options.force) {
          const links = (await sql<JoinedRow>(`${JOINED} WHERE s.linked_path = $1 ORDER BY s.path COLLATE "C" LIMIT 4`, [row.path, null])).map((l) => this.verified(l));
          if (links.length > 0) {
            const named = links.slice(0, 3).map((l) => l.path).join(', ') + (links.length > 3 ? ', ...' : '');
            throw usageError('secret_in_use', `${row.path} is the base of dynamic secrets (${named}).`, 'Delete those first, or pass --force.');
          }
          const live = await this.liveLeasesOf(sql, id);
          if (live > 0) throw usageError('secret_in_use', `${row.path} has ${live} active lease${live === 1 ? '' : 's'}.`, 'Revoke them first, or pass --force.');
        }
        const deleted = await sql('DELETE FROM sy.secrets WHERE id = $1 AND mac = $2 RETURNING id', [id, row.mac]);
        if (deleted.length === 0) continue; // changed since it was read: look again
        await this.meta.updateCensus(sql, SECRET_CENSUS, (census) => census.remove(row.mac));
        return;
      }
    });
  }

  async search(search: SecretSearch): Promise<SecretMetadata[]> {
    return this.db.tx(async (sql) => {
      let rows: JoinedRow[];
      if (search.linkedTo !== undefined) {
        rows = await sql<JoinedRow>(`${JOINED} WHERE s.linked_path = $1 AND s.kind = 'dynamic' ORDER BY s.path COLLATE "C" LIMIT $3`, [search.linkedTo, null, search.limit]);
      } else {
        // Paths are ASCII, so ILIKE is SQLite's case-insensitive LIKE.
        const pattern = `%${(search.query ?? '').replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
        rows = await sql<JoinedRow>(`${JOINED} WHERE s.path ILIKE $1 ESCAPE '\\' ORDER BY s.path COLLATE "C" LIMIT $3`, [pattern, null, search.limit]);
      }
      const checked = rows.map((row) => this.verified(row));
      // Every secret on one page: compare them with the census, read in the same snapshot.
      if (search.linkedTo === undefined && !search.query && checked.length < search.limit) {
        const found = new Census();
        for (const row of checked) found.add(row.mac);
        if (!found.equals(await this.meta.readCensus(sql, SECRET_CENSUS))) throw tampered(CENSUS_WHAT);
      }
      return checked.map((row) => {
        const { data: _data, ...metadata } = this.toSecret(row, this.unseal(row));
        return metadata;
      });
    }, 'snapshot');
  }

  /** Checks the row's MAC, and that its current version is the newest version there is. */
  private verified(row: JoinedRow): JoinedRow {
    if (!this.macs.check(row.mac, 'secret', SECRET_COLUMNS.map((c) => row[c]))) throw tampered(`secret ${shown(row.path)}`);
    if (row.newest !== row.current_version) throw tampered(`secret ${shown(row.path)}`);
    return row;
  }

  private async insertVersion(sql: Sql, version: Omit<VersionRow, 'mac'>): Promise<void> {
    await sql('INSERT INTO sy.secret_versions (secret_id, version, created, sealed, mac) VALUES ($1, $2, $3, $4, $5)',
      [version.secret_id, version.version, version.created, version.sealed, versionMac(this.macs, version)]);
  }

  /**
   * Opens the version joined to a checked row. Versions are never deleted one by one, so one
   * missing at or below the current version was removed; its payload must name the row's path and kind.
   */
  private unseal(row: JoinedRow): SealedPayload & { version: number } {
    if (row.v_version === null || row.v_sealed === null) throw tampered(`secret ${shown(row.path)}`);
    const version: Omit<VersionRow, 'mac'> = { secret_id: row.id, version: row.v_version, created: row.v_created!, sealed: row.v_sealed };
    if (!this.macs.check(row.v_mac, 'secret_version', VERSION_COLUMNS.map((c) => version[c]), version.sealed)) throw tampered(`secret ${shown(row.path)}`);
    const payload = JSON.parse(open(this.dataKey, version.sealed, secretAad(row.id, version.version)).toString('utf8')) as SealedPayload;
    if (payload.path !== row.path || payload.kind !== row.kind) throw tampered(`secret ${shown(row.path)}`);
    return { ...payload, version: version.version };
  }

  private toSecret(row: SecretRow, payload: SealedPayload & { version: number }): Secret {
    return {
      id: row.id,
      path: row.path,
      version: payload.version,
      ...pickContent(payload),
      created: payload.created,
      lastModified: row.last_modified,
    };
  }
}

function plainSecret(row: SecretRow): Omit<SecretRow, 'mac'> {
  const { id, path, kind, linked_path, current_version, created, last_modified } = row;
  return { id, path, kind, linked_path, current_version, created, last_modified };
}

function pickContent(content: SecretContent): SecretContent {
  return { description: content.description, attributes: content.attributes, data: content.data };
}
