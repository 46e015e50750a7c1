// Messages several commands share (Io.ts): counted nouns, a backup's skipped entries and the
// files it could not store because they changed while read (cage backup create and cage
// cluster submit backup print the same).
import { Effect } from "effect"
import { describe, expect, it, vi } from "vitest"
import { changedNotStored, counted, skippedNotes } from "../src/Io.js"

describe("shared messages", () => {
  it("counted: singular for 1 only", () => {
    expect([counted(0, "file"), counted(1, "file"), counted(2, "file")]).toEqual(["0 files", "1 file", "2 files"])
  })

  it("changedNotStored: nothing when none changed; else exit 4 naming the first 10 under the source, was/were by count", async () => {
    await Effect.runPromise(changedNotStored(3, "/data", []))
    const one = await Effect.runPromise(Effect.flip(changedNotStored(3, "/data", ["a.log"])))
    expect([one.exitCode, one.detail]).toEqual([4, "generation 3 is stored, but 1 file changed while being read and was not stored: /data/a.log (back them up again once they no longer change)"])
    const many = await Effect.runPromise(Effect.flip(changedNotStored(4, "/data", Array.from({ length: 12 }, (_, i) => `d/f${i}`))))
    expect(many.detail).toBe(`generation 4 is stored, but 12 files changed while being read and were not stored: ${Array.from({ length: 10 }, (_, i) => `/data/d/f${i}`).join(", ")}, … (back them up again once they no longer change)`)
  })

  it("skippedNotes: one line each on stderr, none when quiet", async () => {
    const write = vi.spyOn(process.stderr, "write").mockImplementation(() => true)
    try {
      await Effect.runPromise(skippedNotes(false, "/data", ["fifo", "sub/sock"]))
      await Effect.runPromise(skippedNotes(true, "/data", ["quiet"]))
      expect(write.mock.calls.map((c) => c[0])).toEqual([
        "cage: skipped /data/fifo: not a regular file, directory or symlink (or gone)\n",
        "cage: skipped /data/sub/sock: not a regular file, directory or symlink (or gone)\n"
      ])
    } finally {
      write.mockRestore()
    }
  })
})
