import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    // forks: the tests spawn npm, node and gzip processes.
    pool: "forks",
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000
  }
})
