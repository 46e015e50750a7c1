// `cage cluster runner`'s flags as the runner's options (clusterRun.ts `runnerOptions`): what
// reaches the runner, and the refusals (exit 2) before it starts.
import { Effect, Option } from "effect"
import { describe, expect, it } from "vitest"
import { runnerOptions } from "../src/commands/clusterRun.js"

const of = (maxSegments?: number, workers?: number) => ({ maxSegments: Option.fromNullishOr(maxSegments), workers: Option.fromNullishOr(workers) })

describe("cluster runner options", () => {
  it("passes --max-segments and --workers on as given, and nothing when absent (the runner's share of the cores)", async () => {
    expect(await Effect.runPromise(runnerOptions(of()))).toEqual({})
    expect(await Effect.runPromise(runnerOptions(of(3, 1)))).toEqual({ maxSegments: 3, workers: 1 })
    expect(await Effect.runPromise(runnerOptions(of(undefined, 256)))).toEqual({ workers: 256 })
  })
  it("refuses --max-segments below 1 and --workers outside 1 to 256 (exit 2)", async () => {
    for (const [flags, detail] of [[of(0), "--max-segments 0: at least 1"], [of(undefined, 0), "--workers 0: from 1 to 256"], [of(undefined, 257), "--workers 257: from 1 to 256"]] as const) {
      const e = await Effect.runPromise(Effect.flip(runnerOptions(flags)))
      expect([e.exitCode, e.detail]).toEqual([2, detail])
    }
  })
})
