// The shared settings, with two test files at once: these tests mostly wait on runner
// processes and PostgreSQL, so on a 2-core machine one file's waits overlap another's work
// (the default on 2 cores is one file at a time). No test here depends on timing.
import { base } from "@cage/vitest-config"
import { defineConfig, mergeConfig } from "vitest/config"

export default mergeConfig(base, defineConfig({ test: { maxWorkers: 2 } }))
