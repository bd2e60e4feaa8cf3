import { defineConfig } from 'vitest/config';

// Three projects by what a test needs:
//   unit         *.test.ts       pure logic, no servers
//   integration  *.int.test.ts   the run's throwaway redis-server and PostgreSQL (testkit global setup)
//   e2e          *.e2e.test.ts   those plus a real Directus and the built services
// Workspace packages resolve to their TypeScript sources (condition @pitwall/source), so unit tests
// need no build; tests that spawn services run their build (make test builds first).
const sourceConditions = ['@pitwall/source'];

export default defineConfig({
  resolve: { conditions: sourceConditions },
  ssr: { resolve: { conditions: sourceConditions } },
  test: {
    reporters: ['default', ['junit', { outputFile: 'test-results/junit.xml' }]],
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['services/*/test/**/*.test.ts', 'load-tests/test/**/*.test.ts', 'charts/*/tests/**/*.test.ts'],
          exclude: ['**/*.int.test.ts', '**/*.e2e.test.ts', '**/node_modules/**'],
          testTimeout: 30_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['services/*/test/**/*.int.test.ts', 'load-tests/test/**/*.int.test.ts', 'charts/*/tests/**/*.int.test.ts'],
          globalSetup: ['services/testkit/src/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'e2e',
          include: ['services/*/test/**/*.e2e.test.ts', 'load-tests/test/**/*.e2e.test.ts'],
          // testkit's servers first: the business plane's setup puts the shared Directus on its PostgreSQL.
          globalSetup: ['services/testkit/src/global-setup.ts', 'services/business-plane/src/testing/global-setup.ts'],
          testTimeout: 180_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
