import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    // forks: test/outside.test.ts spawns pnpm, node and cage.
    pool: "forks",
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 180_000
  }
})
