// Shared vitest settings for every Cage package: forks (node-pty and worker_threads
// misbehave in vitest's thread pool), long timeouts for real-process tests.
import { defineConfig } from "vitest/config"

export const base = defineConfig({
  test: {
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 60_000,
    include: ["test/**/*.test.ts"],
    reporters: ["default"]
  }
})
export default base
