import base from "@cage/vitest-config"
import { mergeConfig } from "vitest/config"

// The worker pool runs dist/worker.js, also under test: refuse a stale build (test/builtWorker.ts).
export default mergeConfig(base, { test: { globalSetup: ["test/builtWorker.ts"] } })
