import { defineConfig } from 'vitest/config';

// vCPUs run in worker threads that may sit inside KVM_RUN: only the forks pool exits
// cleanly around them (DESIGN.md §2). Tests import the built JavaScript's sources
// through TypeScript directly; the native addon comes from build/.
export default defineConfig({
  test: {
    pool: 'forks',
    include: ['test/unit/**/*.test.ts', 'test/native/**/*.test.ts', 'test/guest/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    execArgv: ['--expose-gc'],
  },
});
