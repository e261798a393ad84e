/**
 * Starts the throwaway PostgreSQL cluster once per jest run. Jest runs this in its parent
 * process, so the variables set here reach every test worker.
 */
import { createRequire } from 'node:module';
import type * as PgClusterModule from './helpers/pg-cluster.js';

// Jest transpiles only files loaded through require(): a plain import of a sibling .ts file
// from a global setup module would reach Node's ESM loader, which cannot read TypeScript.
const { startCluster } = createRequire(import.meta.url)('./helpers/pg-cluster.ts') as typeof PgClusterModule;

export default async function globalSetup(): Promise<void> {
  const cluster = await startCluster();
  process.env.SY_TEST_PG_DIR = cluster.dir;
  process.env.SY_TEST_PG_PORT = String(cluster.port);
  process.env.SY_TEST_PG_PASSWORD = cluster.password;
  process.env.SY_TEST_PG_CERT_FILE = cluster.certFile;
}
