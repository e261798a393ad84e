/**
 * A throwaway MariaDB server that speaks TLS, for the tests of a base secret's `ssl`
 * settings on MySQL/MariaDB: the machine's own MariaDB has TLS off. It runs as the `mysql`
 * OS user on 127.0.0.1 only, in its own temp directory, with a self-signed certificate for
 * `localhost`, and an admin that must use TLS (`REQUIRE SSL`), so a working admin
 * connection proves the connection was encrypted.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { localhostCertificate, portIsFree, processAlive } from './pg-cluster.js';

const MARIADBD = '/usr/sbin/mariadbd';
const DIR_PREFIX = 'sy-test-my-';
const OWNER_FILE = 'owner.pid';
const FIRST_PORT = 53306;
const PORT_ATTEMPTS = 40;

export interface TlsMariadb {
  port: number;
  /** An admin with every privilege WITH GRANT OPTION, allowed in over TLS only. */
  admin: { user: string; password: string };
  /** The server's self-signed certificate (CN and SAN: localhost), PEM. */
  certPem: string;
  /** Runs SQL as root over the server's socket. */
  query(sql: string): string;
  stop(): void;
}

async function waitFor(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return check();
}

/** Stops the server (SIGKILL: it is throwaway) and deletes its directory. */
function stopServer(dir: string): void {
  const pidFile = join(dir, 'mysqld.pid');
  if (existsSync(pidFile)) {
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    if (Number.isInteger(pid) && pid > 0 && processAlive(pid)) process.kill(pid, 'SIGKILL');
  }
  rmSync(dir, { recursive: true, force: true });
}

/** Servers left behind by test runs that died before their teardown. */
function reapAbandoned(): void {
  for (const entry of readdirSync(tmpdir())) {
    if (!entry.startsWith(DIR_PREFIX)) continue;
    const dir = join(tmpdir(), entry);
    const owner = existsSync(join(dir, OWNER_FILE)) ? Number(readFileSync(join(dir, OWNER_FILE), 'utf8')) : NaN;
    if (Number.isInteger(owner) && owner > 0 && !processAlive(owner)) stopServer(dir);
  }
}

export async function startTlsMariadb(): Promise<TlsMariadb> {
  if (!existsSync(MARIADBD)) throw new Error(`The MariaDB TLS tests need ${MARIADBD}: install mariadb-server.`);
  reapAbandoned();
  const dir = mkdtempSync(join(tmpdir(), DIR_PREFIX));
  writeFileSync(join(dir, OWNER_FILE), String(process.pid));
  const uid = Number(execFileSync('id', ['-u', 'mysql'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'mysql'], { encoding: 'utf8' }).trim());
  chownSync(dir, uid, gid);
  const data = join(dir, 'data');
  const socket = join(dir, 'mysqld.sock');
  const pidFile = join(dir, 'mysqld.pid');

  const stop = (): void => stopServer(dir);

  try {
    execFileSync('mariadb-install-db', ['--no-defaults', `--datadir=${data}`, '--user=mysql', '--auth-root-authentication-method=normal', '--skip-test-db'], {
      stdio: 'ignore',
    });
    const { certFile, keyFile } = localhostCertificate(dir, uid, gid);

    for (let attempt = 0, port = FIRST_PORT + Math.floor(Math.random() * 20); attempt < PORT_ATTEMPTS; attempt++, port++) {
      if (!(await portIsFree(port))) continue;
      const server = spawn(MARIADBD, [
        '--no-defaults', `--datadir=${data}`, '--user=mysql', `--port=${port}`, '--bind-address=127.0.0.1',
        `--socket=${socket}`, `--pid-file=${pidFile}`, `--ssl-cert=${certFile}`, `--ssl-key=${keyFile}`,
        '--skip-log-bin', '--innodb-buffer-pool-size=16M', '--skip-name-resolve', `--log-error=${join(dir, 'error.log')}`,
      ], { detached: true, stdio: 'ignore' });
      server.unref();
      let exited = false;
      server.once('exit', () => (exited = true));
      const up = await waitFor(() => exited || (existsSync(socket) && existsSync(pidFile)), 30_000);
      if (!up || exited) continue; // most likely the port was taken in between
      const query = (sql: string): string =>
        execFileSync('mariadb', [`--socket=${socket}`, '-uroot', '-N', '-B', '-e', sql], { encoding: 'utf8' }).trim();
      const admin = { user: 'sy_tls_admin', password: randomBytes(18).toString('base64url') };
      query(
        `CREATE USER '${admin.user}'@'%' IDENTIFIED BY '${admin.password}' REQUIRE SSL; ` +
          `GRANT ALL PRIVILEGES ON *.* TO '${admin.user}'@'%' WITH GRANT OPTION`,
      );
      return { port, admin, certPem: readFileSync(certFile, 'utf8'), query, stop };
    }
    throw new Error(`MariaDB with TLS did not start on any port from ${FIRST_PORT}: ${readFileSync(join(dir, 'error.log'), 'utf8').slice(-2000)}`);
  } catch (error) {
    stop();
    throw error;
  }
}
