// Directory snapshots in the chunk store: files, directories, symlinks, modes and mtimes
// backed up and restored identically (whole, or one path), unchanged files not read again,
// and a file that changes while it is read reported and not stored as if consistent.
import { spawnSync } from "node:child_process"
import { Effect } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { Store } from "../src/index.js"
import { describeTree, failure } from "./helpers.js"

const key = crypto.createHash("sha256").update("tree key").digest()
const chunker = { minBytes: 16 * 1024, avgBytes: 64 * 1024, maxBytes: 256 * 1024 }
const run = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(e)

let dir: string
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "cage-tree-"))
})
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

/** 200 files from 0 bytes to 2 MiB in nested directories, empty directories, symlinks, varied modes and mtimes. */
const makeTree = (root: string) => {
  fs.mkdirSync(root)
  let x = 99
  const next = () => (x = (x * 1103515245 + 12345) >>> 0)
  for (let i = 0; i < 200; i++) {
    const sub = path.join(root, `d${i % 7}`, i % 3 === 0 ? `e${i % 5}` : "")
    fs.mkdirSync(sub, { recursive: true })
    const size = i === 0 ? 0 : i === 1 ? 1 : i % 50 === 7 ? 2 * 1024 * 1024 + (next() % 1000) : next() % 40_000
    const f = path.join(sub, `f${i}.dat`)
    fs.writeFileSync(f, crypto.randomBytes(size))
    fs.chmodSync(f, [0o644, 0o600, 0o755, 0o640][i % 4])
    fs.utimesSync(f, 1_700_000_000 + i, 1_700_000_000 + i * 37)
  }
  fs.mkdirSync(path.join(root, "empty", "deeper"), { recursive: true })
  fs.symlinkSync("d1/f1.dat", path.join(root, "link-relative"))
  fs.symlinkSync("/nowhere/at/all", path.join(root, "link-dangling"))
  fs.chmodSync(path.join(root, "d2"), 0o750)
  for (const d of ["d0", "d2", "empty/deeper", "empty"]) fs.utimesSync(path.join(root, d), 1_600_000_000, 1_600_000_000 + d.length)
}

describe("what a backup refuses", () => {
  it("a source that is neither a regular file nor a directory (a FIFO would block, a device never end)", async () => {
    const fifo = path.join(dir, "fifo")
    expect(spawnSync("mkfifo", [fifo]).status).toBe(0)
    const store = await run(Store.open({ dir: path.join(dir, "store"), key: { key }, chunker }))
    expect(await failure(Store.backup(store, { source: fifo }))).toMatchObject({ _tag: "BackupUsageError", reason: "Path" })
    expect(await failure(Store.backup(store, { source: "/dev/zero" }))).toMatchObject({ _tag: "BackupUsageError", reason: "Path" })
  })
})

describe("directory snapshots", () => {
  it("mtimes come back in the microsecond they had, also a hair past or before a millisecond (files, directories, symlinks)", async () => {
    const src = path.join(dir, "times")
    const fractions = ["046000000", "046000123", "045999999", "999999999", "000000001", "123456789", "000999700"]
    const entries: Array<string> = []
    for (const [i, frac] of fractions.entries()) {
      for (const kind of ["file", "dir", "link"] as const) {
        const p = path.join(src, `${kind}${i}`)
        fs.mkdirSync(src, { recursive: true })
        if (kind === "file") fs.writeFileSync(p, String(i))
        else if (kind === "dir") fs.mkdirSync(p)
        else fs.symlinkSync(`file${i}`, p)
        // Seconds of today and of 1970; nanoseconds set by touch (Node cannot set them).
        const at = `@${i % 2 === 0 ? 1796534765 : 1000 + i}.${frac}`
        expect(spawnSync("touch", ["-h", "-d", at, p]).status).toBe(0)
        entries.push(`${kind}${i}`)
      }
    }
    const micros = (root: string) => Object.fromEntries(entries.map((e) => [e, fs.lstatSync(path.join(root, e), { bigint: true }).mtimeNs / 1000n]))
    const before = micros(src)
    expect(before.file1 % 1000n).toBe(0n) // .046000123: 0.123 µs past a millisecond, in its first microsecond
    const store = await run(Store.open({ dir: path.join(dir, "store"), key: { key }, chunker }))
    const snap = await run(Store.backup(store, { source: src }))
    await run(Store.restore(store, { snapshot: snap.snapshot, output: path.join(dir, "times-out") }))
    expect(micros(path.join(dir, "times-out"))).toEqual(before)
  })

  it("restore a tree of 200 files identically: contents, modes, mtimes, symlinks, empty directories", async () => {
    const src = path.join(dir, "src")
    makeTree(src)
    const store = await run(Store.open({ dir: path.join(dir, "store"), key: { key }, chunker }))
    const first = await run(Store.backup(store, { source: src }))
    expect(first).toMatchObject({ files: 200, filesRead: 200, changed: [], skipped: [] })
    const before = describeTree(src)
    await run(Store.restore(store, { snapshot: first.snapshot, output: path.join(dir, "out1") }))
    expect(describeTree(path.join(dir, "out1"))).toEqual(before)
    expect(fs.existsSync(path.join(dir, "out1.partial"))).toBe(false)

    // Two files change, one is added: only those are read; both snapshots restore as they were.
    fs.appendFileSync(path.join(src, "d3", "e3", "f3.dat"), "more")
    fs.writeFileSync(path.join(src, "d1", "f1.dat"), "x")
    fs.writeFileSync(path.join(src, "new.txt"), "new")
    const second = await run(Store.backup(store, { source: src }))
    expect(second).toMatchObject({ files: 201, filesRead: 3 })
    expect(second.addedBytes).toBeLessThan(200_000)
    await run(Store.restore(store, { snapshot: second.snapshot, output: path.join(dir, "out2") }))
    expect(describeTree(path.join(dir, "out2"))).toEqual(describeTree(src))
    await run(Store.restore(store, { snapshot: first.snapshot, output: path.join(dir, "out1b") }))
    expect(describeTree(path.join(dir, "out1b"))).toEqual(before)
    expect((await run(Store.check(store, { deep: true }))).problems).toEqual([])
  })

  it("a tree restore that meets a damaged pack fails naming it, publishes nothing and keeps no file open", async () => {
    const src = path.join(dir, "src")
    makeTree(src)
    const store = await run(Store.open({ dir: path.join(dir, "store"), key: { key }, chunker }))
    const s = await run(Store.backup(store, { source: src }))
    const packs = fs.readdirSync(path.join(store.dir, "packs"), { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name))
    for (const pack of packs) {
      const bytes = fs.readFileSync(pack)
      bytes[bytes.length >> 1] ^= 1
      fs.writeFileSync(pack, bytes)
    }
    // The restore fails inside a file it is writing: that file's descriptor is closed too.
    const openFds = () => fs.readdirSync("/proc/self/fd").length
    const before = openFds()
    expect(await failure(Store.restore(store, { snapshot: s.snapshot, output: path.join(dir, "out") }))).toMatchObject({ _tag: "PackDamaged" })
    expect(openFds()).toBe(before)
    expect(fs.readdirSync(dir).filter((n) => n.startsWith("out"))).toEqual([])
    Store.close(store)
  })

  it("restores one path of a tree: a directory, or a single file; refuses a missing path and an existing output", async () => {
    const src = path.join(dir, "src")
    makeTree(src)
    const store = await run(Store.open({ dir: path.join(dir, "store"), key: { key }, chunker }))
    const s = await run(Store.backup(store, { source: src }))
    await run(Store.restore(store, { snapshot: s.snapshot, output: path.join(dir, "d2"), path: "d2" }))
    const whole = describeTree(src)
    const sub = Object.fromEntries(Object.entries(whole).filter(([k]) => k.startsWith("d2/")).map(([k, v]) => [k.slice(3), v]))
    expect(describeTree(path.join(dir, "d2"))).toEqual(sub)
    expect((fs.statSync(path.join(dir, "d2")).mode & 0o777).toString(8)).toBe("750")
    await run(Store.restore(store, { snapshot: s.snapshot, output: path.join(dir, "one"), path: "d0/e0/f0.dat" }))
    expect(fs.readFileSync(path.join(dir, "one"))).toHaveLength(0)
    await run(Store.restore(store, { snapshot: s.snapshot, output: path.join(dir, "part"), path: "d0/f7.dat", range: { start: 10, end: 20 } }))
    expect(fs.readFileSync(path.join(dir, "part")).equals(fs.readFileSync(path.join(src, "d0", "f7.dat")).subarray(10, 20))).toBe(true)
    await run(Store.restore(store, { snapshot: s.snapshot, output: path.join(dir, "a-link"), path: "link-dangling" }))
    expect(fs.readlinkSync(path.join(dir, "a-link"))).toBe("/nowhere/at/all")
    expect(await failure(Store.restore(store, { snapshot: s.snapshot, output: path.join(dir, "x"), path: "no/such" }))).toMatchObject({ _tag: "BackupUsageError", reason: "Path" })
    expect(await failure(Store.restore(store, { snapshot: s.snapshot, output: path.join(dir, "d2") }))).toMatchObject({ _tag: "IoError" })
    expect(await failure(Store.restore(store, { snapshot: s.snapshot, output: path.join(dir, "d2"), force: true }))).toMatchObject({ _tag: "IoError" })
    expect(fs.readdirSync(path.join(dir, "d2")).length).toBeGreaterThan(0)
  })

  it("a file that changes while it is read is reported and not stored; the rest of the snapshot is", async () => {
    const src = path.join(dir, "src")
    fs.mkdirSync(src)
    fs.writeFileSync(path.join(src, "a-steady.bin"), crypto.randomBytes(100_000))
    const busy = path.join(src, "b-busy.log")
    fs.writeFileSync(busy, crypto.randomBytes(3 << 20))
    fs.writeFileSync(path.join(src, "c-steady.bin"), crypto.randomBytes(100_000))
    const store = await run(Store.open({ dir: path.join(dir, "store"), key: { key }, chunker }))
    // Appends on every turn of the event loop while the backup reads (asynchronously).
    let appending = true
    const append = () => {
      if (!appending) return
      fs.appendFileSync(busy, "x")
      setImmediate(append)
    }
    setImmediate(append)
    const s = await run(Store.backup(store, { source: src }))
    appending = false
    expect(s.changed).toEqual(["b-busy.log"])
    const r = await run(Store.restore(store, { snapshot: s.snapshot, output: path.join(dir, "out") }))
    expect(r.notRestored).toEqual(["b-busy.log"])
    expect(fs.readdirSync(path.join(dir, "out")).sort()).toEqual(["a-steady.bin", "c-steady.bin"])
    expect(fs.readFileSync(path.join(dir, "out", "a-steady.bin")).equals(fs.readFileSync(path.join(src, "a-steady.bin")))).toBe(true)
    expect((await failure(Store.restore(store, { snapshot: s.snapshot, output: path.join(dir, "busy"), path: "b-busy.log" }))).message).toContain("changed while it was backed up")
  })
})
