/**
 * The unit tier: tests that need no server, run without the global setup (which starts
 * PostgreSQL clusters for the end-to-end tests). `npm run test:unit`.
 */
import base from './jest.config.js';

const { globalSetup: _setup, globalTeardown: _teardown, ...rest } = base;

export default {
  ...rest,
  testMatch: ['<rootDir>/test/unit/**/*.test.ts', '<rootDir>/test/contract/**/*.test.ts'],
};
