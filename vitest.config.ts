import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    // Model tests are CPU-heavy on a 2-core machine: run files one at a time, in forks so
    // native addons and wasm heaps never share a process across files.
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
