/**
 * Starts the throwaway PostgreSQL clusters once per jest run: the machine's PostgreSQL 15,
 * which most tests use, and one cluster per other version of the matrix (13, 14, 16, 17, 18).
 * Jest runs this in its parent process, so the variables set here reach every test worker.
 */
import { createRequire } from 'node:module';
import type * as PgClusterModule from './helpers/pg-cluster.js';

// Jest transpiles only files loaded through require(): a plain import of a sibling .ts file
// from a global setup module would reach Node's ESM loader, which cannot read TypeScript.
const { MATRIX_PACKAGES, matrixBin, startCluster, stopCluster } = createRequire(import.meta.url)('./helpers/pg-cluster.ts') as typeof PgClusterModule;

export default async function globalSetup(): Promise<void> {
  // Every binary is found before any cluster starts, so a missing one leaves nothing behind.
  const bins = MATRIX_PACKAGES.map(({ major, alias }) => ({ bin: matrixBin(alias, import.meta.url), label: `PostgreSQL ${major}` }));
  // Side by side: initdb and the server start wait mostly on the disk, not on the CPU.
  const started = await Promise.allSettled([startCluster(), ...bins.map((options) => startCluster(options))]);
  const failure = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure) {
    for (const r of started) if (r.status === 'fulfilled') stopCluster(r.value.dir);
    throw failure.reason;
  }
  const [cluster, ...matrix] = started.map((r) => (r as PromiseFulfilledResult<PgClusterModule.PgCluster>).value);
  process.env.SY_TEST_PG_DIR = cluster.dir;
  process.env.SY_TEST_PG_PORT = String(cluster.port);
  process.env.SY_TEST_PG_PASSWORD = cluster.password;
  process.env.SY_TEST_PG_CERT_FILE = cluster.certFile;
  process.env.SY_TEST_PG_VERSION = cluster.version;
  const entries: PgClusterModule.MatrixCluster[] = matrix.map(({ version, major, port, password, certFile, dir }) => ({ version, major, port, password, certFile, dir }));
  process.env.SY_TEST_PG_MATRIX = JSON.stringify(entries);
  const versions = [cluster, ...matrix].sort((a, b) => a.major - b.major).map((c) => c.version);
  console.log(`\nPostgreSQL matrix: ${versions.join(' ')}`);
}
