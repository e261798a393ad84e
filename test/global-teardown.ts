import { createRequire } from 'node:module';
import type * as PgClusterModule from './helpers/pg-cluster.js';

// See global-setup.ts for why the helper is loaded through require().
const { stopCluster } = createRequire(import.meta.url)('./helpers/pg-cluster.ts') as typeof PgClusterModule;

export default async function globalTeardown(): Promise<void> {
  const dir = process.env.SY_TEST_PG_DIR;
  if (dir) stopCluster(dir);
  for (const { dir: matrixDir } of JSON.parse(process.env.SY_TEST_PG_MATRIX ?? '[]') as PgClusterModule.MatrixCluster[]) stopCluster(matrixDir);
}
