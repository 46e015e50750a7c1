// Distributed backups into the chunk store (issue 16's `cage cluster submit backup`, without
// the cluster): a tree planned on one machine, its files stored in pieces by several writers
// at once (two store handles, as two runners), one snapshot committed; the result restores
// and checks as any snapshot, unchanged files are not read again, a file that changes between
// its pieces is not stored as if consistent, a commit is idempotent and refuses a snapshot it
// could not restore, and the job's lock keeps every other writer out.
import { Effect } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { Store } from "../src/index.js"
import { describeTree, failure } from "./helpers.js"

const key = crypto.createHash("sha256").update("distributed key").digest()
const chunker = { minBytes: 16 * 1024, avgBytes: 64 * 1024, maxBytes: 256 * 1024 }
const run = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(e)

let dir: string
let storeDir: string
let src: string
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "cage-dist-"))
  storeDir = path.join(dir, "store")
  src = path.join(dir, "src")
})
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

const openStore = () => run(Store.open({ dir: storeDir, key: { key }, chunker, packBytes: 256 * 1024 }))

/** 40 files from 0 bytes to 1.5 MiB (two of them identical), a directory, a symlink. */
const makeTree = () => {
  fs.mkdirSync(path.join(src, "sub", "deeper"), { recursive: true })
  let x = 7
  const next = () => (x = (x * 1103515245 + 12345) >>> 0)
  for (let i = 0; i < 40; i++) {
    const size = i === 0 ? 0 : i % 13 === 5 ? 1536 * 1024 + (next() % 999) : next() % 50_000
    fs.writeFileSync(path.join(src, i % 3 === 0 ? "sub" : "", `f${String(i).padStart(2, "0")}.dat`), crypto.randomBytes(size))
  }
  const same = crypto.randomBytes(700 * 1024)
  fs.writeFileSync(path.join(src, "same-a.dat"), same)
  fs.writeFileSync(path.join(src, "sub", "deeper", "same-b.dat"), same)
  fs.symlinkSync("f01.dat", path.join(src, "link"))
}

/**
 * What a cluster job does: the store's lock for the job, the plan, then pieces of at most
 * `pieceBytes` stored by `writers` store handles at once (alternating, or as `writerOf`
 * says), then the commit and the lock released. `pieces` may alter what the pieces reported.
 */
const distributed = async (options: {
  readonly writers?: number
  readonly pieceBytes?: number
  readonly job?: string
  readonly between?: () => void
  readonly beforeSegment?: (paths: ReadonlyArray<string>) => void
  readonly writerOf?: (paths: ReadonlyArray<string>) => number
  readonly pieces?: (byFile: Array<Array<Store.PieceResult>>) => void
} = {}) => {
  const job = options.job ?? crypto.randomBytes(16).toString("hex")
  Store.close(await openStore()) // created where missing, as `cage cluster submit backup` does first
  await run(Store.lockForJob(storeDir, job))
  try {
    return await stored(job, options)
  } finally {
    Store.releaseJobLock(storeDir, job)
  }
}

const stored = async (job: string, options: Parameters<typeof distributed>[0] & object) => {
  const planner = await openStore()
  const plan = await run(Store.planTree(planner, src))
  const files = plan.entries.filter((e) => e.type === "file" && e.reuse !== true)
  const pieceBytes = options.pieceBytes ?? 400 * 1024
  const segments: Array<Array<{ file: number; start: number; end: number }>> = []
  files.forEach((f, file) => {
    for (let start = 0; start === 0 || start < f.size; start += pieceBytes) segments.push([{ file, start, end: Math.min(f.size, start + pieceBytes) }])
  })
  options.between?.()
  const writers = await Promise.all(Array.from({ length: options.writers ?? 2 }, () => openStore()))
  const results = await run(Effect.forEach(segments, (segment, i) =>
    Effect.suspend(() => {
      const pieces = segment.map((p) => ({ path: path.join(src, files[p.file].path), start: p.start, end: p.end }))
      options.beforeSegment?.(pieces.map((p) => p.path))
      return Store.storePieces(writers[options.writerOf?.(pieces.map((p) => p.path)) ?? i % writers.length], pieces, { job })
    }), { concurrency: writers.length }))
  const pieces = files.map((): Array<Store.PieceResult> => [])
  for (const [s, segment] of segments.entries()) for (const [i, p] of segment.entries()) pieces[p.file].push(results[s].pieces[i])
  options.pieces?.(pieces)
  const sum = (k: "addedChunks" | "addedBytes" | "storedBytes") => results.reduce((n, r) => n + r[k], 0)
  const summary = await run(Store.commitTree(planner, {
    job,
    plan,
    files: files.map((f, i) => ({ path: f.path, pieces: pieces[i] })),
    added: { chunks: sum("addedChunks"), bytes: sum("addedBytes"), storedBytes: sum("storedBytes") }
  }))
  for (const w of [planner, ...writers]) Store.close(w)
  return { summary, plan, files }
}

describe("a distributed backup into the store", () => {
  it("pieces stored by two writers at once make one snapshot that restores the tree and checks clean, duplicates and all; prune keeps it whole", async () => {
    makeTree()
    // The identical files on different writers: neither knows what the other stored.
    const { summary } = await distributed({ writerOf: (paths) => (paths.some((p) => p.endsWith("same-b.dat")) ? 1 : 0) })
    expect(summary).toMatchObject({ generation: 1, files: 42, filesRead: 42, changed: [], skipped: [] })
    const store = await openStore()
    // The identical files' chunks were stored by both writers: indexed twice, kept once.
    expect(summary.addedChunks).toBeGreaterThan(store.index.size)
    const [snap] = await run(Store.snapshots(store))
    expect(snap.id).toBe(summary.snapshot)
    await run(Store.restore(store, { snapshot: snap.id, output: path.join(dir, "out") }))
    expect(describeTree(path.join(dir, "out"))).toEqual(describeTree(src))
    expect((await run(Store.check(store, { deep: true }))).problems).toEqual([])
    // Prune tolerates chunks two writers both stored (the identical files): one copy stays.
    await run(Store.prune(store))
    const again = await openStore()
    fs.rmSync(path.join(dir, "out"), { recursive: true })
    await run(Store.restore(again, { snapshot: snap.id, output: path.join(dir, "out") }))
    expect(describeTree(path.join(dir, "out"))).toEqual(describeTree(src))
    expect((await run(Store.check(again, { deep: true }))).problems).toEqual([])
    Store.close(store)
    Store.close(again)
  }, 60_000)

  it("the next backup reads only what changed, and numbers its generation after the first", async () => {
    makeTree()
    await distributed()
    fs.appendFileSync(path.join(src, "f02.dat"), "more")
    const { summary, files } = await distributed()
    expect(files.map((f) => f.path)).toEqual(["f02.dat"])
    expect(summary).toMatchObject({ generation: 2, files: 42, filesRead: 1 })
    const store = await openStore()
    const snaps = await run(Store.snapshots(store))
    await run(Store.restore(store, { snapshot: snaps[1].id, output: path.join(dir, "out") }))
    expect(describeTree(path.join(dir, "out"))).toEqual(describeTree(src))
    Store.close(store)
  }, 60_000)

  it("a file that changes between the reads of its pieces is recorded as changed, not stored; one rewritten after the plan but read whole is stored as read", async () => {
    makeTree()
    const big = path.join(src, "f05.dat") // 1.5 MiB: four pieces of 400 KiB
    const small = path.join(src, "f01.dat")
    const fresh = crypto.randomBytes(fs.statSync(small).size)
    // After the plan: the small file rewritten (same size, new bytes); the big one changed
    // between the reads of its pieces (before its second piece).
    let bigPieces = 0
    const { summary } = await distributed({
      writers: 1,
      between: () => fs.writeFileSync(small, fresh),
      beforeSegment: (paths) => {
        if (paths.includes(big) && ++bigPieces === 2) fs.appendFileSync(big, "x")
      }
    })
    expect(summary.changed).toEqual(["f05.dat"])
    const store = await openStore()
    const [snap] = await run(Store.snapshots(store))
    expect(snap.tree?.find((e) => e.path === "f05.dat")).toMatchObject({ changed: "it changed between the reads of its pieces" })
    await run(Store.restore(store, { snapshot: snap.id, output: path.join(dir, "small"), path: "f01.dat" }))
    expect(fs.readFileSync(path.join(dir, "small")).equals(fresh)).toBe(true)
    Store.close(store)
  }, 60_000)

  it("a commit is idempotent under its job, needs the job's lock, and refuses a snapshot whose pack is gone", async () => {
    makeTree()
    const job = "0123456789abcdef0123456789abcdef"
    const first = await distributed({ job })
    expect(first.summary.snapshot).toMatch(new RegExp(`-${job}$`))
    expect(Store.committed(storeDir, job)).toBe(true)
    const store = await openStore()
    const plan = await run(Store.planTree(store, src))
    // Run again after a crash: the snapshot written before is returned, none added (the lock is gone by then too).
    const again = await run(Store.commitTree(store, { job, plan, files: [], added: { chunks: 0, bytes: 0, storedBytes: 0 } }))
    expect(again.snapshot).toBe(first.summary.snapshot)
    expect((await run(Store.snapshots(store))).length).toBe(1)
    // Another job's commit without its lock: refused, nothing written.
    expect((await failure(Store.commitTree(store, { job: "feed", plan, files: [], added: { chunks: 0, bytes: 0, storedBytes: 0 } })))._tag).toBe("LockBusy")
    expect(Store.committed(storeDir, "feed")).toBe(false)
    // A pack lost before the commit: no snapshot that cannot be restored.
    fs.appendFileSync(path.join(src, "f02.dat"), "changed")
    const packs = fs.readdirSync(path.join(storeDir, "packs"), { recursive: true, withFileTypes: true }).filter((e) => e.isFile())
    for (const p of packs) fs.rmSync(path.join(p.parentPath, p.name))
    await expect(distributed()).rejects.toMatchObject({ _tag: "StoreRefused", reason: "Missing" })
    expect((await run(Store.snapshots(store))).length).toBe(1)
    Store.close(store)
  }, 60_000)

  it("pieces read on different machines (another device number for the same file) make one consistent file", async () => {
    makeTree()
    const { summary } = await distributed({
      // The big file's pieces as two runners on other hosts report them: same inode, size and times, their own st_dev.
      pieces: (byFile) => {
        for (const pieces of byFile) pieces.forEach((x, i) => {
          if (x.changed === undefined) pieces[i] = { ...x, identity: { ...x.identity, dev: String(1000 + i) } }
        })
      }
    })
    expect(summary.changed).toEqual([])
    const store = await openStore()
    const [snap] = await run(Store.snapshots(store))
    // The plan's device number is kept, so the next plan on the submitting machine finds the files unchanged.
    expect(snap.tree?.find((e) => e.path === "f05.dat")?.dev).toBe(String(fs.statSync(path.join(src, "f05.dat")).dev))
    Store.close(store)
    const next = await distributed()
    expect(next.files).toEqual([])
    expect(next.summary).toMatchObject({ generation: 2, filesRead: 0 })
  }, 60_000)

  it("a job's stored pieces stay invisible until its commit; a job that never commits leaves only what prune removes", async () => {
    makeTree()
    const store = await openStore()
    await run(Store.lockForJob(storeDir, "job-x"))
    const r = await run(Store.storePieces(store, [{ path: path.join(src, "f05.dat"), start: 0, end: 1_000_000 }], { job: "job-x" }))
    expect(r.addedChunks).toBeGreaterThan(0)
    // Another reader (or a later writer) does not see the job's chunks: nothing can dedup against them.
    expect((await openStore()).index.size).toBe(0)
    expect(fs.readdirSync(path.join(storeDir, "index")).every((n) => n.endsWith(".job-job-x"))).toBe(true)
    // The job ends without a commit (cancelled, failed): prune removes its packs and staged index file.
    Store.releaseJobLock(storeDir, "job-x")
    const pruned = await run(Store.prune(store))
    expect(pruned.packsDeleted).toBeGreaterThan(0)
    expect(fs.readdirSync(path.join(storeDir, "index"))).toEqual([])
    expect(fs.readdirSync(path.join(storeDir, "packs"), { recursive: true, withFileTypes: true }).filter((e) => e.isFile())).toEqual([])
    Store.close(store)
  })

  it("the job's lock refuses every other writer at once, naming the job, is never taken for stale, and goes when the job releases it", async () => {
    makeTree()
    const store = await openStore()
    await run(Store.lockForJob(storeDir, "job-1"))
    await run(Store.lockForJob(storeDir, "job-1")) // the same job again (retried): fine
    const busy = await failure(Store.backup(store, { source: src }))
    expect(busy._tag).toBe("LockBusy")
    expect(busy.message).toContain("being written by cluster job job-1")
    expect((await failure(Store.lockForJob(storeDir, "job-2")))._tag).toBe("LockBusy")
    expect((await failure(Store.prune(store)))._tag).toBe("LockBusy")
    // An old lock of a job (its pid 0 is nobody's) stays: only the job ends it.
    const old = new Date(Date.now() - 3600_000)
    fs.utimesSync(path.join(storeDir, "lock"), old, old)
    expect((await failure(Store.backup(store, { source: src })))._tag).toBe("LockBusy")
    Store.releaseJobLock(storeDir, "job-2") // not the holder: nothing happens
    expect((await failure(Store.backup(store, { source: src })))._tag).toBe("LockBusy")
    // A segment of the job stores while the lock is its job's, and not once it is gone.
    const piece = { path: path.join(src, "f05.dat"), start: 0, end: 100_000 }
    expect((await run(Store.storePieces(store, [piece], { job: "job-1" }))).addedChunks).toBeGreaterThan(0)
    Store.releaseJobLock(storeDir, "job-1")
    const packs = () => fs.readdirSync(path.join(storeDir, "packs"), { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).length
    const before = packs()
    const late = await failure(Store.storePieces(store, [{ ...piece, start: 100_000, end: 200_000 }], { job: "job-1" }))
    expect(late._tag).toBe("LockBusy")
    expect(packs()).toBe(before)
    // Released while a segment runs (a cancel): it stops before its next piece, and removes
    // the packs it wrote. The release runs at the first turn of the event loop, while the
    // first piece is being read.
    Store.releaseJobLock(storeDir, "job-3")
    await run(Store.lockForJob(storeDir, "job-3"))
    const files = fs.readdirSync(src).filter((n) => n.endsWith(".dat")).map((n) => path.join(src, n))
    const many = files.map((p) => ({ path: p, start: 0, end: fs.statSync(p).size }))
    const running = failure(Store.storePieces(store, many, { job: "job-3" }))
    setImmediate(() => Store.releaseJobLock(storeDir, "job-3"))
    const stopped = await running
    expect(stopped._tag).toBe("LockBusy")
    expect(packs()).toBe(before)
    // Within one piece too: a segment that is one 40 MiB piece of a big file stops at its
    // next 8 MiB, not at its end (this process read well under 40 MiB: /proc/self/io's
    // rchar counts every read(2), and the forks pool runs one test file per process), and
    // closes the piece's file (a runner lives on after its segments: no descriptor kept).
    const big = path.join(dir, "big.dat")
    fs.writeFileSync(big, crypto.randomBytes(40 * 1024 * 1024))
    await run(Store.lockForJob(storeDir, "job-4"))
    const rchar = () => Number(/^rchar: (\d+)$/m.exec(fs.readFileSync("/proc/self/io", "utf8"))?.[1])
    const openFds = () => fs.readdirSync("/proc/self/fd").length
    const [readBefore, fdsBefore] = [rchar(), openFds()]
    const one = failure(Store.storePieces(store, [{ path: big, start: 0, end: 40 * 1024 * 1024 }], { job: "job-4" }))
    setImmediate(() => Store.releaseJobLock(storeDir, "job-4"))
    expect((await one)._tag).toBe("LockBusy")
    expect(rchar() - readBefore).toBeLessThan(20 * 1024 * 1024)
    expect(openFds()).toBe(fdsBefore)
    expect(packs()).toBe(before)
    expect((await run(Store.backup(store, { source: src }))).generation).toBe(1)
    Store.close(store)
  })
})
