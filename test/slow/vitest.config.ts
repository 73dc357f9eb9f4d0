import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// The slow tests live outside the default suite's include globs (vitest.config.ts), so
// `vitest run test/slow` alone finds nothing: run them with this config, e.g.
//   node scripts/fetch-linux.mjs && VMMAPI_SLOW=1 vitest run --config test/slow/vitest.config.ts
// Same pool as the main suite (forks: vCPU workers may sit in KVM_RUN).
export default defineConfig({
  root: fileURLToPath(new URL('../..', import.meta.url)),
  test: {
    pool: 'forks',
    include: ['test/slow/**/*.test.ts'],
    testTimeout: 600_000,
    hookTimeout: 60_000,
  },
});
