import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests share the kernel (netns names, ports): files run one at a time.
    fileParallelism: false,
    reporters: ['default'],
  },
});
