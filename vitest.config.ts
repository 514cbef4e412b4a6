import { defineConfig } from 'vitest/config'

// Workspace packages resolve to their TypeScript sources through this export
// condition, so tests run without a build.
// The rest are Vite's default server conditions.
const conditions = ['@herald/source', 'module', 'node', 'development|production']

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions } },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    globalSetup: ['packages/testing/src/global-setup.ts'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores: more workers only make the fault tests' timing noisier.
    maxWorkers: 2,
  },
})
