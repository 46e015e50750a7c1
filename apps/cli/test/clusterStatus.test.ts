// `cage cluster status JOB`'s lines for failed segments (clusterRun.ts `failures`), from a
// job's status as `Job.status` returns it.
import type * as Cluster from "@cage/cluster"
import { describe, expect, it } from "vitest"
import { failures, waiting } from "../src/commands/clusterRun.js"

const base: Cluster.Job.JobStatus = {
  id: "0123456789abcdef",
  kind: "file",
  source: "/data/a.bin",
  output: "/data/a.bin.agcm",
  files: [{ source: "/data/a.bin", output: "/data/a.bin.agcm" }],
  bytes: 100,
  runners: [],
  running: 0,
  bytesPerSecond: 0,
  etaSeconds: undefined,
  segments: 30,
  done: 0,
  doneBytes: 0,
  failed: [],
  failedCount: 0,
  stoppedCount: 0,
  cancelRequested: false,
  result: undefined,
  snapshot: null
}
const failed = (segment: number, error: string) => ({ segment, part: `/data/a.bin, chunks ${segment * 16}..${segment * 16 + 15}`, error })

describe("cluster status: failed segments", () => {
  it("none: no line", () => {
    expect(failures(base)).toEqual([])
  })
  it("each failed segment once, as its error names it; past the 20 listed, how many more", () => {
    const s = {
      ...base,
      result: { ok: false, error: "segment 2 …", exitCode: 3 },
      failed: [failed(2, "segment 2 (/data/a.bin, chunks 32..47) on runner 10.0.0.2:7001: chunk 37 failed authentication"), failed(3, "internal error: boom")],
      failedCount: 25
    } as const
    expect(failures(s)).toEqual([
      "  failed: segment 2 (/data/a.bin, chunks 32..47) on runner 10.0.0.2:7001: chunk 37 failed authentication",
      "  failed: segment 3 (/data/a.bin, chunks 48..63): internal error: boom",
      "  … and 23 more failed"
    ])
  })
  it("segments stopped by a cancel, or by the job's end: one line, after any real failure, which a cancel does not hide", () => {
    const line = ["  3 segments stopped by the cancel, or started after it and wrote nothing"]
    expect(failures({ ...base, cancelRequested: true, stoppedCount: 3 })).toEqual(line)
    expect(failures({ ...base, cancelRequested: true, result: { ok: false, error: "cancelled", exitCode: 130 }, stoppedCount: 3 })).toEqual(line)
    expect(failures({ ...base, cancelRequested: true, stoppedCount: 1 })).toEqual(["  1 segment stopped by the cancel, or started after it and wrote nothing"])
    const damaged = failed(2, "segment 2 (/data/a.bin, chunks 32..47) on runner r: chunk 37 failed authentication")
    expect(failures({ ...base, cancelRequested: true, failed: [damaged], failedCount: 1, stoppedCount: 2 })).toEqual([
      `  failed: ${damaged.error}`,
      "  2 segments stopped by the cancel, or started after it and wrote nothing"
    ])
    // A job that failed on its own: the others stopped once it had ended.
    expect(failures({ ...base, result: { ok: false, error: damaged.error, exitCode: 3 }, failed: [damaged], failedCount: 1, stoppedCount: 4 })).toEqual([
      `  failed: ${damaged.error}`,
      "  4 segments stopped once the job had ended, or wrote nothing"
    ])
  })

  it("a running job's segments neither done, running, failed nor stopped are waiting; with none running, why; none waiting: nothing said; cancelled: they never start", () => {
    expect(waiting({ ...base, done: 10, running: 4, failedCount: 1 })).toBe(", 15 waiting")
    expect(waiting({ ...base, done: 10, running: 4, failedCount: 1, stoppedCount: 2 })).toBe(", 13 waiting")
    expect(waiting({ ...base, done: 10, running: 0, cancelRequested: true, stoppedCount: 5 })).toBe(", 15 not started (cancelled: they write nothing)")
    expect(waiting({ ...base, done: 10, running: 0 })).toBe(", 20 waiting for a runner (a dead runner's segments move to the others within about 5 s; with none up, they wait for one)")
    expect(waiting({ ...base, done: 26, running: 4 })).toBe("")
  })
})
