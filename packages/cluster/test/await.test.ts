// How a job waits for its segments (Shared.awaitSegments), on a virtual clock: it sees the
// last segment done within one head interval (25 ms) of its end, whenever that is, reading
// little while nothing ends; a failed segment fails it at the next full scan.
import { Effect, Exit, Fiber, Option } from "effect"
import { TestClock } from "effect/testing"
import { describe, expect, it } from "vitest"
import { awaitSegments } from "../src/Shared.js"

/** Segment `i` ends at `endsAt[i]` ms of the virtual clock, with `i` or (when `fails` says so) a failure. */
const segments = (endsAt: ReadonlyArray<number>, fails: (i: number) => boolean = () => false) => {
  let reads = 0
  const poll = (id: string) =>
    Effect.clockWith((clock) =>
      Effect.sync(() => {
        reads++
        const i = Number(id)
        if (clock.currentTimeMillisUnsafe() < endsAt[i]) return Option.none()
        const exit = fails(i) ? Exit.fail({ message: `segment ${i}: damaged`, exitCode: 3 }) : Exit.succeed(i)
        return Option.some({ _tag: "Complete", exit } as never)
      })
    )
  return { ids: endsAt.map((_, i) => String(i)), poll, reads: () => reads }
}

/** Runs `awaitSegments` on a virtual clock moved 1 ms at a time; its exit and the virtual time it ended at. */
const run = (s: ReturnType<typeof segments>) =>
  Effect.runPromise(Effect.gen(function*() {
    const fiber = yield* Effect.forkChild(Effect.exit(awaitSegments<number, never, never>(s.ids, s.poll)))
    let t = 0
    while (fiber.pollUnsafe() === undefined) {
      yield* TestClock.adjust(1)
      t++
      if (t > 60_000) throw new Error("awaitSegments did not end")
    }
    return { exit: yield* Fiber.join(fiber), at: t }
  }).pipe(Effect.provide(TestClock.layer())))

describe("awaitSegments", () => {
  // As a 1 GiB job on two runners: the first segment done 320 ms after the job started, the
  // last 400 ms later. At the second full scan (500 ms) 9 are still running.
  it("17 segments ending from 320 to 720 ms, out of order: done within 25 ms of the last, in order", async () => {
    const ends = Array.from({ length: 17 }, (_, i) => 320 + 25 * ((i * 7) % 17))
    const s = segments(ends)
    const { exit, at } = await run(s)
    expect(Exit.isSuccess(exit) && exit.value).toEqual(Array.from({ length: 17 }, (_, i) => i))
    const last = Math.max(...ends)
    expect(at).toBeGreaterThanOrEqual(last)
    expect(at).toBeLessThanOrEqual(last + 25)
    // Between full scans (every 500 ms: 2 here, 17 reads at most each) one read per 25 ms
    // when nothing ended, plus one per segment found done.
    expect(s.reads()).toBeLessThanOrEqual(2 * 17 + Math.ceil(last / 25) + 17)
  })

  it("a segment ending hours after the others: one read per 25 ms meanwhile, and a full scan every 500 ms", async () => {
    const ends = [10, 20, 30, 3000, 40, 50]
    const s = segments(ends)
    const { exit, at } = await run(s)
    expect(Exit.isSuccess(exit)).toBe(true)
    expect(at).toBeLessThanOrEqual(3000 + 25)
    // 3000 ms: 120 head reads, 6 full scans of at most 6 reads.
    expect(s.reads()).toBeLessThanOrEqual(Math.ceil(3000 / 25) + 7 * 6 + 6)
  })

  it("a failed segment behind a running one fails the job at the next full scan, with its failure", async () => {
    const ends = [5000, 100, 200]
    const { exit, at } = await run(segments(ends, (i) => i === 2))
    expect(Exit.isFailure(exit)).toBe(true)
    if (Exit.isFailure(exit)) expect(exit.cause.reasons.find((r) => r._tag === "Fail")).toMatchObject({ error: { message: "segment 2: damaged", exitCode: 3 } })
    expect(at).toBeGreaterThanOrEqual(200)
    expect(at).toBeLessThanOrEqual(500)
  })
})
