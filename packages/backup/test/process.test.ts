import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { Effect } from "effect"
import { list, LOCK_FILE, resume, verify, withLock } from "../src/index.js"
import { cipher, CHUNK, expectIntact, KEY, makeSource, run, tempDir } from "./helpers.js"

const CHILD = fileURLToPath(new URL("./fixtures/child.mjs", import.meta.url))

const child = (mode: "create" | "resume" | "hold-lock", source: string, dir: string, options: object) => {
  const p = spawn(process.execPath, [CHILD, mode, source, dir, JSON.stringify(options)], { stdio: ["pipe", "pipe", "pipe"] })
  p.stdin.end(KEY.toString("hex"))
  let out = ""
  let err = ""
  p.stdout.on("data", (d) => (out += d))
  p.stderr.on("data", (d) => (err += d))
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string; err: string }>((resolve) =>
    p.on("close", (code, signal) => resolve({ code, signal, out, err }))
  )
  return { process: p, done }
}

describe("real processes", () => {
  it("four processes creating backups against one registry lose no entry", async () => {
    const dir = tempDir()
    const a = makeSource(dir, 3 * CHUNK + 1, "a")
    const b = makeSource(dir, 100, "bsrc")
    const bdir = nodePath.join(dir, "backups")
    const opts = { chunkSize: CHUNK, runs: 3, create: { hashWorkers: 0, lock: { pollMs: 2 } } }
    const kids = [child("create", a.path, bdir, opts), child("create", a.path, bdir, opts), child("create", a.path, bdir, opts), child("create", b.path, bdir, opts)]
    const results = await Promise.all(kids.map((k) => k.done))
    for (const r of results) expect(r.code, r.err).toBe(0)
    const all = await run(list({ dir: bdir }))
    expect(all.filter((g) => g.source === a.path).map((g) => g.generation)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9])
    expect(all.filter((g) => g.source === b.path).map((g) => g.generation)).toEqual([1, 2, 3])
    expect(all.every((g) => g.status === "complete")).toBe(true)
    for (const g of all) {
      expect((await run(verify({ dir: bdir, source: g.source, generation: g.generation, hashWorkers: 0 }))).ok).toBe(true)
    }
    expect(fs.existsSync(nodePath.join(bdir, ".cage_backups.lock"))).toBe(false)
  })

  it("a lock holder killed with -9 does not leave the lock stuck", async () => {
    const dir = tempDir()
    const holder = child("hold-lock", "-", dir, {})
    await new Promise<void>((resolve) => holder.process.stdout.on("data", (d) => String(d).includes("locked") && resolve()))
    expect(fs.existsSync(nodePath.join(dir, LOCK_FILE))).toBe(true)
    // While the holder lives, we wait and time out.
    const busy = await Effect.runPromise(Effect.flip(withLock(dir, Effect.void, { waitMs: 100 })))
    expect(busy._tag).toBe("LockTimeout")
    holder.process.kill("SIGKILL")
    await holder.done
    // Its pid is gone: the lock is broken at once (long before the 30 s age limit).
    expect(await run(withLock(dir, Effect.succeed("taken"), { waitMs: 5000 }))).toBe("taken")
  })

  it("resume refuses a generation that a live process is still writing", async () => {
    const dir = tempDir()
    const src = makeSource(dir, 16 << 20)
    const bdir = nodePath.join(dir, "backups")
    const k = child("create", src.path, bdir, { chunkSize: CHUNK, create: { hashWorkers: 0, segmentBytes: 4 * CHUNK, inFlight: 1, checkpointIntervalMs: 0 } })
    const mdir = nodePath.join(bdir, ".cage_backups.d")
    while (!(fs.existsSync(mdir) && fs.readdirSync(mdir).some((n) => n.endsWith(".checkpoint.json")))) {
      await new Promise((r) => setTimeout(r, 2))
    }
    const err = await Effect.runPromise(Effect.flip(resume({ source: src.path, dir: bdir, cipher, hashWorkers: 0 })))
    expect(err._tag).toBe("LockTimeout")
    expect(err.message).toContain(".g1.cage.lock")
    const r = await k.done
    expect(r.code, r.err).toBe(0)
    expect((await run(list({ dir: bdir }))).map((g) => g.status)).toEqual(["complete"])
    expect((await run(verify({ dir: bdir, source: src.path, deep: true, cipher, hashWorkers: 0 }))).ok).toBe(true)
  })

  it("kill -9 during create, then resume: the backup verifies and restores byte-identical", async () => {
    const dir = tempDir()
    const src = makeSource(dir, 24 << 20)
    const bdir = nodePath.join(dir, "backups")
    // A checkpoint after every 64 KiB segment keeps the run slow enough to be killed midway.
    const k = child("create", src.path, bdir, { chunkSize: CHUNK, create: { hashWorkers: 0, chunkManifest: true, segmentBytes: 4 * CHUNK, inFlight: 1, checkpointIntervalMs: 0 } })
    const mdir = nodePath.join(bdir, ".cage_backups.d")
    while (!(fs.existsSync(mdir) && fs.readdirSync(mdir).some((n) => n.endsWith(".checkpoint.json")))) {
      await new Promise((r) => setTimeout(r, 2))
    }
    k.process.kill("SIGKILL")
    const killed = await k.done
    expect(killed.signal).toBe("SIGKILL")
    const partial = await run(list({ dir: bdir }))
    expect(partial.map((g) => g.status)).toEqual(["partial"])
    const done = await run(resume({ source: src.path, dir: bdir, cipher, chunkManifest: true, hashWorkers: 2 }))
    expect(done.summary.resumedFrom).toBeGreaterThan(0)
    await expectIntact(bdir, src, 2)
  })

  it("kill -9 once the backup file is committed (while hashing), then resume: only the hashing is redone", async () => {
    // The engine publishes the backup file under its final name, then the hashing starts
    // (64 MiB on one thread: tens of ms). Should a run still finish before the kill lands,
    // it is tried again; one of three must be caught while hashing.
    let caught: { src: ReturnType<typeof makeSource>; bdir: string } | undefined
    for (let attempt = 0; attempt < 3 && caught === undefined; attempt++) {
      const dir = tempDir()
      const src = makeSource(dir, 64 << 20)
      const bdir = nodePath.join(dir, "backups")
      const k = child("create", src.path, bdir, { chunkSize: CHUNK, create: { hashWorkers: 0, chunkManifest: true } })
      while (!(fs.existsSync(bdir) && fs.readdirSync(bdir).some((n) => n.endsWith(".g1.cage")))) {
        await new Promise((r) => setTimeout(r, 1))
      }
      k.process.kill("SIGKILL")
      const killed = await k.done
      const [g] = await run(list({ dir: bdir }))
      if (g.status === "partial") {
        expect(killed.signal).toBe("SIGKILL")
        caught = { src, bdir }
      }
    }
    expect(caught, "no attempt was killed while hashing").toBeDefined()
    const { src, bdir } = caught!
    const done = await run(resume({ source: src.path, dir: bdir, cipher, chunkManifest: true, hashWorkers: 2 }))
    expect(done.summary.processedChunks).toBe(0)
    expect(done.summary.resumedFrom).toBe(done.summary.totalChunks)
    await expectIntact(bdir, src, 2)
    expect(fs.readdirSync(nodePath.join(bdir, ".cage_backups.d")).filter((n) => !n.endsWith(".manifest.json"))).toEqual([])
  })
})
