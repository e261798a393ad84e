/**
 * The unit tier alone (`npm run test:unit`): no server, no PostgreSQL cluster to start, so
 * no global setup. It is the default config narrowed to test/unit and test/contract; the
 * default config (`npm test`) still runs these files too, once, with everything else.
 */
import base from './jest.config.js';

const { globalSetup: _setup, globalTeardown: _teardown, ...rest } = base;

export default {
  ...rest,
  testMatch: ['<rootDir>/test/unit/**/*.test.ts', '<rootDir>/test/contract/**/*.test.ts'],
  // The contract against PostgreSQL needs the machine's server and a database per test: `npm test` runs it.
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/test/contract/postgres.test.ts'],
  testTimeout: 30000,
};
