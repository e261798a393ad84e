/**
 * A throwaway PostgreSQL 15 cluster for the target tests. The machine's own PostgreSQL trusts
 * every local login, so it cannot show that a created user's password works (or that a wrong
 * one fails); this cluster checks SCRAM passwords and speaks TLS with a self-signed
 * certificate for `localhost`. It listens on 127.0.0.1 only, lives in its own temp directory,
 * and runs as the `postgres` OS user because the tests run as root.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import { join } from 'node:path';

export const PG_BIN = process.env.SY_TEST_PG_BIN ?? '/usr/lib/postgresql/15/bin';
const DIR_PREFIX = 'sy-test-pg-';
const FIRST_PORT = 55432;
const PORT_ATTEMPTS = 40;
const OWNER_FILE = 'owner.pid';

export interface PgCluster {
  dir: string;
  port: number;
  /** Password of the superuser `postgres`. */
  password: string;
  /** Path of the server's self-signed certificate (CN and SAN: localhost). */
  certFile: string;
}

/** The server log, where every statement is written (log_statement = all). */
export const serverLogOf = (dir: string): string => join(dir, 'server.log');

function asPostgres(command: string, args: string[]): string {
  return execFileSync('runuser', ['-u', 'postgres', '--', command, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
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
    try {
      asPostgres(join(PG_BIN, 'pg_ctl'), ['stop', '-D', data, '-m', 'immediate', '-w', '-t', '30']);
    } catch {
      // Already stopped: nothing to do but delete the directory.
    }
  }
  rmSync(dir, { recursive: true, force: true });
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

export async function startCluster(): Promise<PgCluster> {
  for (const binary of ['initdb', 'pg_ctl', 'postgres']) {
    if (!existsSync(join(PG_BIN, binary))) {
      throw new Error(
        `The target tests need PostgreSQL 15 server binaries in ${PG_BIN} (missing ${binary}): ` +
          'install postgresql-15 or set SY_TEST_PG_BIN.',
      );
    }
  }
  reapAbandonedClusters();

  const dir = mkdtempSync(join(tmpdir(), DIR_PREFIX));
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
    const data = join(dir, 'data');
    const password = randomBytes(18).toString('base64url');
    const pwfile = join(dir, 'pwfile');
    writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
    chownSync(pwfile, uid, gid);

    asPostgres(join(PG_BIN, 'initdb'), [
      '-D', data, '-U', 'postgres', '--pwfile', pwfile, '-E', 'UTF8', '--locale', 'C',
      '--auth-local', 'trust', '--auth-host', 'scram-sha-256', '--no-sync', '--no-instructions',
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
# Every statement is logged so tests can show that no password ever reaches the server.
log_statement = 'all'
`,
      );
      try {
        asPostgres(join(PG_BIN, 'pg_ctl'), ['start', '-D', data, '-l', join(dir, 'server.log'), '-w', '-t', '60']);
        return { dir, port, password, certFile };
      } catch (error) {
        const log = existsSync(join(dir, 'server.log')) ? readFileSync(join(dir, 'server.log'), 'utf8') : '';
        // Another process took the port between the check and the start: try the next one.
        if (/could not bind|Address already in use/i.test(log)) continue;
        throw new Error(`The throwaway PostgreSQL cluster did not start: ${log.slice(-2000) || String(error)}`);
      }
    }
    throw new Error(`No free port for the throwaway PostgreSQL cluster from ${FIRST_PORT}.`);
  } catch (error) {
    stopCluster(dir);
    throw error;
  }
}
