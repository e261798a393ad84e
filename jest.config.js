/**
 * Tests are TypeScript run by ts-jest as native ESM, which needs Node's
 * --experimental-vm-modules (set by `npm test`). Imports keep their `.js` suffix as in
 * the sources; the mapper points them at the `.ts` files.
 */
export default {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: { '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: 'tsconfig.test.json' }] },
  testMatch: ['<rootDir>/test/**/*.test.ts'],
  globalSetup: '<rootDir>/test/global-setup.ts',
  globalTeardown: '<rootDir>/test/global-teardown.ts',
  testTimeout: 120000,
  slowTestThreshold: 30,
  reporters: ['default', '<rootDir>/test/summary-reporter.cjs'],
};
