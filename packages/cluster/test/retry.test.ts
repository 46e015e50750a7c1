// Segment retries (issue 16: "after a bounded number of retries"): an I/O error runs the
// segment's work again, up to three runs in all; any other failure is final at once.
import { IoError } from "@cage/core"
import { Effect, Exit } from "effect"
import { describe, expect, it } from "vitest"
import { retryIo } from "../src/Shared.js"

/** Work that fails with `errors` in turn, then succeeds; counts its runs. */
const flaky = (errors: ReadonlyArray<unknown>) => {
  let runs = 0
  const work = Effect.suspend(() => {
    const e = errors[runs++]
    return e === undefined ? Effect.succeed("done") : Effect.fail(e)
  })
  return { work, runs: () => runs }
}

const io = () => new IoError({ reason: "Unknown", operation: "write", path: "/mnt/nfs/out.partial", detail: "EIO: i/o error" })

describe("retryIo", () => {
  it("runs the work again after an I/O error, and succeeds when a later run does", async () => {
    const f = flaky([io(), io()])
    expect(await Effect.runPromise(retryIo(f.work, { delayMs: 1 }))).toBe("done")
    expect(f.runs()).toBe(3)
  })

  it("gives up after three runs, saying so, with the I/O error's exit code", async () => {
    const f = flaky([io(), io(), io(), io()])
    const exit = await Effect.runPromiseExit(retryIo(f.work, { delayMs: 1 }))
    expect(f.runs()).toBe(3)
    expect(Exit.isFailure(exit)).toBe(true)
    const error = (exit as Exit.Failure<unknown, { message: string; exitCode: number }>).cause.reasons.find((r) => r._tag === "Fail") as unknown as { error: { _tag: string; message: string; exitCode: number } }
    expect(error.error).toMatchObject({ _tag: "IoError", exitCode: 4 })
    expect(error.error.message).toMatch(/^\/mnt\/nfs\/out\.partial: write failed: .*\(3 attempts\)$/)
  })

  it("never reruns what cannot pass: a changed source, a damaged chunk, a missing file, a permission", async () => {
    const notFound = new IoError({ reason: "NotFound", operation: "open", path: "/mnt/nfs/in.bin", detail: "ENOENT" })
    const denied = new IoError({ reason: "PermissionDenied", operation: "open", path: "/mnt/nfs/out.partial", detail: "EACCES" })
    for (const e of [{ _tag: "InputChanged", message: "changed" }, { _tag: "ChunkAuthFailed", message: "chunk 3" }, notFound, denied]) {
      const f = flaky([e])
      const exit = await Effect.runPromiseExit(retryIo(f.work, { delayMs: 1 }))
      expect(f.runs()).toBe(1)
      expect(Exit.isFailure(exit)).toBe(true)
    }
  })
})
