import base from "@cage/vitest-config"
import { mergeConfig } from "vitest/config"

// The worker pool runs dist/worker.js, also under test: refuse a stale build (test/builtWorker.ts).
// test/setup.ts: the pool's tests route segments to it before its workers are online.
export default mergeConfig(base, { test: { globalSetup: ["test/builtWorker.ts"], setupFiles: ["test/setup.ts"] } })
