// The chunk store (issue 21, first part): each chunk stored once across generations of an
// edited file, byte-identical restores of every generation, ranges, keys, and damage named.
import { Lock } from "@cage/core"
import { Effect, Exit } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Readable } from "node:stream"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { parsePolicy, Store } from "../src/index.js"

const key = crypto.createHash("sha256").update("store key").digest()
// Small chunks keep the files small: 16 KiB minimum, 64 KiB average, 256 KiB maximum.
const chunker = { minBytes: 16 * 1024, avgBytes: 64 * 1024, maxBytes: 256 * 1024 }
const packBytes = 512 * 1024

let dir: string
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "cage-store-"))
})
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

const run = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(e)
const failure = async <A, E>(e: Effect.Effect<A, E>) => {
  const exit = await Effect.runPromiseExit(e)
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  return (exit.cause.reasons.find((r) => r._tag === "Fail") as unknown as { error: { _tag: string; reason?: string; message: string } }).error
}
const sha = (b: Uint8Array) => crypto.createHash("sha256").update(b).digest("hex")
const openStore = () => run(Store.open({ dir: path.join(dir, "store"), key: { key }, chunker, packBytes }))

/** Text-like lines from a seeded generator. */
const lines = (n: number, seed: number) => {
  let x = seed
  const out: Array<string> = []
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    out.push(`INSERT INTO t VALUES (${i}, '${x.toString(36)}', ${x % 99991}, '${(x >>> 7).toString(16)}');`)
  }
  return out
}

describe("a chunk store", () => {
  it("stores each chunk once across ten generations of an edited file, and restores every one byte-identically", async () => {
    const store = await openStore()
    const source = path.join(dir, "dump.sql")
    const text = lines(60_000, 1)
    const versions: Array<string> = []
    const summaries: Array<Store.BackupSummary> = []
    let x = 7
    for (let g = 0; g < 10; g++) {
      if (g > 0) {
        // 1% of lines changed or inserted, in three runs at seeded places (as a dump's
        // tables change: edits spread over every chunk would change every chunk).
        for (let run = 0; run < 3; run++) {
          x = (x * 1103515245 + 12345) >>> 0
          const at = x % (text.length - 300)
          for (let k = 0; k < text.length / 300; k++) {
            if (k % 2 === 0) text[at + k] = `UPDATE t SET v = ${x + k} WHERE id = ${at + k};`
            else text.splice(at + k, 0, `-- inserted ${x + k}`)
          }
        }
      }
      const bytes = Buffer.from(`${text.join("\n")}\n`)
      fs.writeFileSync(source, bytes)
      versions.push(sha(bytes))
      summaries.push(await run(Store.backup(store, { source })))
    }
    const size = (g: number) => summaries[g].bytes
    expect(summaries[0].addedBytes).toBe(size(0))
    for (let g = 1; g < 10; g++) {
      // Three edited runs of about 13 KiB each: the chunks around them, not a copy.
      expect(summaries[g].addedBytes).toBeLessThan(3 * 2 * chunker.maxBytes)
      expect(summaries[g].unchanged).toBe(false)
    }
    const all = await run(Store.snapshots(store))
    expect(all.map((s) => s.id)).toEqual(summaries.map((s) => s.snapshot))
    for (const [g, s] of all.entries()) {
      const out = path.join(dir, `restored-${g}`)
      await run(Store.restore(store, { snapshot: s.id, output: out }))
      expect(sha(fs.readFileSync(out))).toBe(versions[g])
    }
    // A reopened store (index read back from its files) restores the same.
    const again = await openStore()
    await run(Store.restore(again, { snapshot: all[3].id, output: path.join(dir, "again") }))
    expect(sha(fs.readFileSync(path.join(dir, "again")))).toBe(versions[3])
  })

  it("stores a small edit as a few chunks, and an unchanged file not at all (not even read, unless rehash)", async () => {
    const store = await openStore()
    const source = path.join(dir, "big.bin")
    const data = crypto.randomBytes(4 << 20)
    fs.writeFileSync(source, data)
    const first = await run(Store.backup(store, { source }))
    expect(first.addedBytes).toBe(data.length)
    const same = await run(Store.backup(store, { source }))
    expect(same).toMatchObject({ unchanged: true, addedChunks: 0, addedBytes: 0, chunks: first.chunks })
    const rehashed = await run(Store.backup(store, { source, rehash: true }))
    expect(rehashed).toMatchObject({ unchanged: false, addedChunks: 0, addedBytes: 0 })
    // 100 bytes overwritten in the middle: at most the chunks around them are new.
    data.fill(0x41, 2 << 20, (2 << 20) + 100)
    fs.writeFileSync(source, data)
    const edited = await run(Store.backup(store, { source }))
    expect(edited.addedChunks).toBeGreaterThan(0)
    expect(edited.addedBytes).toBeLessThanOrEqual(2 * chunker.maxBytes)
    const out = path.join(dir, "out")
    await run(Store.restore(store, { snapshot: edited.snapshot, output: out }))
    expect(fs.readFileSync(out).equals(data)).toBe(true)
  })

  it("restores a byte range reading only the chunks that hold it, and never overwrites a file unasked", async () => {
    const store = await openStore()
    const source = path.join(dir, "f")
    const data = crypto.randomBytes(3 << 20)
    fs.writeFileSync(source, data)
    const s = await run(Store.backup(store, { source }))
    const out = path.join(dir, "range")
    const r = await run(Store.restore(store, { snapshot: s.snapshot, output: out, range: { start: 1_000_000, end: 1_000_010 } }))
    expect(fs.readFileSync(out).equals(data.subarray(1_000_000, 1_000_010))).toBe(true)
    expect(r.chunksRead).toBeLessThanOrEqual(2)
    expect((await failure(Store.restore(store, { snapshot: s.snapshot, output: out })))._tag).toBe("IoError")
    expect(fs.readFileSync(out)).toHaveLength(10)
    await run(Store.restore(store, { snapshot: s.snapshot, output: out, force: true }))
    expect(fs.readFileSync(out).equals(data)).toBe(true)
    expect(await failure(Store.restore(store, { snapshot: "no-such", output: path.join(dir, "x") }))).toMatchObject({ _tag: "SnapshotNotFound" })
  })

  it("opens only with its key, refuses an edited config, and has one writer at a time", async () => {
    const store = await openStore()
    const other = crypto.createHash("sha256").update("other").digest()
    expect(await failure(Store.open({ dir: store.dir, key: { key: other } }))).toMatchObject({ _tag: "StoreRefused", reason: "Key" })
    const config = path.join(store.dir, "config.json")
    const text = fs.readFileSync(config, "utf8")
    fs.writeFileSync(config, text.replace('"avgBytes": 65536', '"avgBytes": 131072'))
    expect(await failure(Store.open({ dir: store.dir, key: { key } }))).toMatchObject({ _tag: "StoreRefused", reason: "Key" })
    fs.writeFileSync(config, text)
    const source = path.join(dir, "f")
    fs.writeFileSync(source, "hello")
    const holder = await run(Lock.acquireOrRefuse(path.join(store.dir, "lock"), store.dir))
    expect(await failure(Store.backup(store, { source }))).toMatchObject({ _tag: "LockBusy" })
    Lock.release(path.join(store.dir, "lock"), holder)
    expect((await run(Store.backup(store, { source }))).bytes).toBe(5)
    // close zeroes the derived keys.
    const closing = await openStore()
    Store.close(closing)
    expect([closing.keys.blob, closing.keys.index, closing.keys.snapshot, closing.keys.chunkId, closing.keys.config].every((k) => k.every((b) => b === 0))).toBe(true)
    // Nothing secret on disk: no key bytes in any file of the store.
    const files = fs.readdirSync(store.dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile())
    for (const f of files) expect(fs.readFileSync(path.join(f.parentPath, f.name)).includes(key)).toBe(false)
  })

  it("check --deep names a damaged chunk with the snapshots that use it, and a missing pack", async () => {
    const store = await openStore()
    const source = path.join(dir, "f")
    fs.writeFileSync(source, crypto.randomBytes(2 << 20))
    const a = await run(Store.backup(store, { source }))
    const b = await run(Store.backup(store, { source, rehash: true }))
    expect(await run(Store.check(store, { deep: true }))).toMatchObject({ snapshots: 2, badIndexFiles: [], problems: [] })
    const packs = fs.readdirSync(path.join(store.dir, "packs"), { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name))
    const victim = packs[0]
    const bytes = fs.readFileSync(victim)
    bytes[100] ^= 1
    fs.writeFileSync(victim, bytes)
    expect((await run(Store.check(store))).problems).toEqual([])
    const report = await run(Store.check(store, { deep: true }))
    expect(report.problems).toHaveLength(1)
    expect(report.problems[0]).toMatchObject({ kind: "damaged", snapshots: [a.snapshot, b.snapshot] })
    expect(report.problems[0].uses).toEqual([
      { snapshot: a.snapshot, source, generation: 1 },
      { snapshot: b.snapshot, source, generation: 2 }
    ])
    // Checking only the first snapshot names only it.
    const one = await run(Store.check(store, { deep: true, snapshots: [a.snapshot] }))
    expect(one).toMatchObject({ snapshots: 1 })
    expect(one.problems[0].snapshots).toEqual([a.snapshot])
    expect(report.problems[0].detail).toContain("does not authenticate")
    // A restore that needs it publishes nothing.
    expect(await failure(Store.restore(store, { snapshot: a.snapshot, output: path.join(dir, "out") }))).toMatchObject({ _tag: "PackDamaged" })
    expect(fs.readdirSync(dir).filter((n) => n.startsWith("out"))).toEqual([])
    fs.rmSync(victim)
    const gone = await run(Store.check(store, { deep: true }))
    expect(gone.problems.length).toBeGreaterThan(0)
    expect(gone.problems.every((p) => p.kind === "damaged")).toBe(true)
  })
})

describe("a source that changes while it is read", () => {
  it("is refused with InputChanged: no snapshot, and no pack of that run is left", async () => {
    const store = await openStore()
    const source = path.join(dir, "growing")
    fs.writeFileSync(source, crypto.randomBytes(3 << 20))
    // Appends a byte on every turn of the event loop; the backup reads asynchronously, so
    // at least one append falls between its first read and its last.
    let appending = true
    const append = () => {
      if (!appending) return
      fs.appendFileSync(source, "x")
      setImmediate(append)
    }
    setImmediate(append)
    const e = await failure(Store.backup(store, { source }))
    appending = false
    expect(e).toMatchObject({ _tag: "InputChanged" })
    expect(e.message).toContain("size in bytes")
    expect(await run(Store.snapshots(store))).toEqual([])
    expect(fs.readdirSync(path.join(store.dir, "packs"), { recursive: true, withFileTypes: true }).filter((f) => f.isFile())).toEqual([])
    expect(fs.readdirSync(path.join(store.dir, "index"))).toEqual([])
  })
})

describe("forget and prune", () => {
  it("forget drops the snapshots a policy does not keep; prune then frees their chunks and repacks, and what is kept restores", async () => {
    const store = await openStore()
    const source = path.join(dir, "f")
    const versions: Array<Buffer> = []
    for (let g = 0; g < 4; g++) {
      // Each generation: new random bytes (nothing shared) so forgetting frees whole chunks.
      versions.push(crypto.randomBytes(1 << 20))
      fs.writeFileSync(source, versions[g])
      await run(Store.backup(store, { source }))
    }
    const before = await run(Store.snapshots(store))
    const f = await run(Store.forget(store, { policy: parsePolicy("keep_last:2") }))
    expect(f.removed.map((s) => s.id)).toEqual(before.slice(0, 2).map((s) => s.id))
    expect(f.kept.map((s) => s.id)).toEqual(before.slice(2).map((s) => s.id))
    // Forgotten snapshots' chunks stay until prune; prune removes them and repacks mixed packs.
    expect((await run(Store.check(store, { deep: true }))).problems).toEqual([])
    const pruned = await run(Store.prune(store))
    expect(pruned.chunksRemoved).toBeGreaterThan(0)
    expect(pruned.bytesFreed).toBeGreaterThan(1 << 20)
    expect(pruned.packsDeleted).toBeGreaterThan(0)
    for (const [k, s] of before.slice(2).entries()) {
      const out = path.join(dir, `kept-${k}`)
      await run(Store.restore(store, { snapshot: s.id, output: out }))
      expect(fs.readFileSync(out).equals(versions[k + 2])).toBe(true)
    }
    expect(fs.readdirSync(path.join(store.dir, "index"))).toHaveLength(1)
    // Nothing left to do, and a reopened store agrees.
    expect(await run(Store.prune(await openStore()))).toMatchObject({ chunksRemoved: 0, packsDeleted: 0, packsRepacked: 0 })
    expect((await run(Store.check(await openStore(), { deep: true }))).problems).toEqual([])
  })

  it("generations number per source (from firstGeneration up); forget always keeps each source's newest, and a dry run deletes nothing", async () => {
    const store = await openStore()
    const a = path.join(dir, "a")
    const b = path.join(dir, "b")
    fs.writeFileSync(a, crypto.randomBytes(100_000))
    fs.writeFileSync(b, crypto.randomBytes(100_000))
    const a1 = await run(Store.backup(store, { source: a, firstGeneration: 4 }))
    const b1 = await run(Store.backup(store, { source: b }))
    const a2 = await run(Store.backup(store, { source: a, firstGeneration: 2 }))
    expect([a1.generation, b1.generation, a2.generation]).toEqual([4, 1, 5])
    const snaps = await run(Store.snapshots(store))
    expect(snaps.map((s) => [s.generation, s.bytes, s.chunkCount, s.added.bytes])).toEqual([[4, 100_000, a1.chunks, 100_000], [1, 100_000, b1.chunks, 100_000], [5, 100_000, a1.chunks, 0]])
    // Ten days on, keep_days:1 keeps nothing by age; each source's newest stays anyway.
    const now = Date.now() + 10 * 86_400_000
    const dry = await run(Store.forget(store, { policy: parsePolicy("keep_days:1"), now, dryRun: true }))
    expect(dry.removed.map((s) => s.id)).toEqual([a1.snapshot])
    expect(await run(Store.snapshots(store))).toHaveLength(3)
    const done = await run(Store.forget(store, { policy: parsePolicy("keep_days:1"), now }))
    expect(done.kept.map((s) => s.id).sort()).toEqual([b1.snapshot, a2.snapshot].sort())
    expect((await run(Store.snapshots(store))).map((s) => s.id).sort()).toEqual([b1.snapshot, a2.snapshot].sort())
  })

  it("a stream backs up to the same chunks as the file, however its pieces are cut (byte by byte, random sizes), and restores byte for byte", async () => {
    const store = await openStore()
    const bytes = crypto.createCipheriv("aes-256-ctr", Buffer.alloc(32, 3), Buffer.alloc(16)).update(Buffer.alloc(700_000))
    const file = path.join(dir, "dump")
    fs.writeFileSync(file, bytes)
    await run(Store.backup(store, { source: file }))
    const [fromFile] = await run(Store.snapshots(store))
    let seed = 7
    const cuts: Record<string, () => number> = { bytes: () => 1, random: () => ((seed = (seed * 1103515245 + 12345) >>> 0) % 200_000) + 1 }
    for (const [how, next] of Object.entries(cuts)) {
      const pieces: Array<Buffer> = []
      for (let at = 0; at < bytes.length;) {
        const n = Math.min(next(), bytes.length - at)
        pieces.push(bytes.subarray(at, at + n))
        at += n
      }
      const s = await run(Store.backup(store, { source: path.join(dir, `stream-${how}`), input: Readable.from(pieces) }))
      expect(s).toMatchObject({ bytes: bytes.length, addedChunks: 0, unchanged: false })
      const snap = (await run(Store.snapshots(store))).find((x) => x.id === s.snapshot)!
      expect(snap.chunks, how).toEqual(fromFile.chunks)
      expect(snap.source).toMatchObject({ path: path.join(dir, `stream-${how}`), size: bytes.length, ino: "0" })
      const out = path.join(dir, `out-${how}`)
      await run(Store.restore(store, { snapshot: s.snapshot, output: out }))
      expect(fs.readFileSync(out).equals(bytes)).toBe(true)
    }
    // An empty stream is an empty generation.
    const empty = await run(Store.backup(store, { source: path.join(dir, "nothing"), input: Readable.from([]) }))
    expect(empty).toMatchObject({ bytes: 0, chunks: 0 })
  })

  it("prune deletes packs a crashed backup wrote but never indexed", async () => {
    const store = await openStore()
    const source = path.join(dir, "f")
    fs.writeFileSync(source, crypto.randomBytes(1 << 20))
    await run(Store.backup(store, { source }))
    const stray = path.join(store.dir, "packs", "ab", "ab".padEnd(64, "0"))
    fs.mkdirSync(path.dirname(stray), { recursive: true })
    fs.writeFileSync(stray, "left by a killed backup")
    fs.writeFileSync(`${stray}.partial`, "half")
    const pruned = await run(Store.prune(store))
    expect(pruned.packsDeleted).toBe(1)
    expect(fs.existsSync(stray) || fs.existsSync(`${stray}.partial`)).toBe(false)
    expect((await run(Store.check(store, { deep: true }))).problems).toEqual([])
  })
})

describe("recover", () => {
  it("rebuilds a lost index from the packs' tables: missing chunks are found again, and a damaged pack is named", async () => {
    const store = await openStore()
    const source = path.join(dir, "f")
    const data = crypto.randomBytes(3 << 20)
    fs.writeFileSync(source, data)
    const s = await run(Store.backup(store, { source }))
    for (const f of fs.readdirSync(path.join(store.dir, "index"))) fs.rmSync(path.join(store.dir, "index", f))
    const lost = await openStore()
    const before = await run(Store.check(lost))
    expect(before.problems.length).toBe(before.chunks)
    expect(before.problems.every((p) => p.kind === "missing")).toBe(true)
    const r = await run(Store.recover(lost))
    expect(r).toMatchObject({ chunks: before.chunks, damagedPacks: [] })
    expect((await run(Store.check(lost, { deep: true }))).problems).toEqual([])
    await run(Store.restore(await openStore(), { snapshot: s.snapshot, output: path.join(dir, "out") }))
    expect(fs.readFileSync(path.join(dir, "out")).equals(data)).toBe(true)
    // A pack whose table is damaged is named, and the others still count.
    const packs = fs.readdirSync(path.join(store.dir, "packs"), { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name))
    const victim = packs[0]
    const bytes = fs.readFileSync(victim)
    bytes[bytes.length - 20] ^= 1
    fs.writeFileSync(victim, bytes)
    const again = await run(Store.recover(lost))
    expect(again.damagedPacks).toEqual([{ pack: path.basename(victim), detail: expect.stringContaining("does not authenticate") }])
    // Its chunks stay where the readable index located them: the snapshot still restores.
    expect(again.chunks).toBe(r.chunks)
    await run(Store.restore(await openStore(), { snapshot: s.snapshot, output: path.join(dir, "out2") }))
    expect(fs.readFileSync(path.join(dir, "out2")).equals(data)).toBe(true)
  })

  it("a damaged index file: the store still opens, check names it, prune refuses until recover", async () => {
    const store = await openStore()
    const source = path.join(dir, "f")
    const data = crypto.randomBytes(1 << 20)
    fs.writeFileSync(source, data)
    const s = await run(Store.backup(store, { source }))
    const [file] = fs.readdirSync(path.join(store.dir, "index")).map((n) => path.join(store.dir, "index", n))
    const bytes = fs.readFileSync(file)
    bytes[20] ^= 1
    fs.writeFileSync(file, bytes)
    const damaged = await openStore()
    const report = await run(Store.check(damaged))
    expect(report.badIndexFiles).toEqual([file])
    expect(report.problems.every((p) => p.kind === "missing")).toBe(true)
    expect(await failure(Store.prune(damaged))).toMatchObject({ _tag: "StoreRefused", reason: "Corrupt" })
    expect(fs.readdirSync(path.join(store.dir, "packs"), { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).length).toBeGreaterThan(0)
    await run(Store.recover(damaged))
    expect(await run(Store.check(damaged, { deep: true }))).toMatchObject({ badIndexFiles: [], problems: [] })
    await run(Store.restore(damaged, { snapshot: s.snapshot, output: path.join(dir, "out") }))
    expect(fs.readFileSync(path.join(dir, "out")).equals(data)).toBe(true)
  })

  it("another process's prune is seen: a chunk it removed is stored again, not referenced from nowhere", async () => {
    const a = await openStore()
    const b = await openStore()
    const source = path.join(dir, "f")
    const data = crypto.randomBytes(1 << 20)
    fs.writeFileSync(source, data)
    await run(Store.backup(a, { source }))
    fs.writeFileSync(path.join(dir, "other"), "other")
    await run(Store.backup(b, { source: path.join(dir, "other") }))
    // b forgets the file's snapshot and prunes its chunks; a still holds them in memory.
    await run(Store.forget(b, { policy: parsePolicy("keep_last:1") }))
    await run(Store.backup(b, { source: path.join(dir, "other"), rehash: true }))
    await run(Store.forget(b, { policy: parsePolicy("keep_last:1") }))
    const all = await run(Store.snapshots(b))
    for (const snap of all.filter((x) => x.source.path === source)) fs.rmSync(path.join(b.dir, "snapshots", snap.id))
    await run(Store.prune(b))
    const again = await run(Store.backup(a, { source, rehash: true }))
    expect(again.addedBytes).toBe(data.length)
    await run(Store.restore(a, { snapshot: again.snapshot, output: path.join(dir, "out") }))
    expect(fs.readFileSync(path.join(dir, "out")).equals(data)).toBe(true)
    expect((await run(Store.check(a, { deep: true }))).problems).toEqual([])
  })
})

describe("a passphrase store", () => {
  it("stretches the passphrase with scrypt under the cost and salt in its config, and opens with that passphrase only", async () => {
    const passphrase = Buffer.from("correct horse battery staple")
    const storeDir = path.join(dir, "pstore")
    const store = await run(Store.open({ dir: storeDir, key: { passphrase, scryptLogN: 10 }, chunker, packBytes }))
    const config = JSON.parse(fs.readFileSync(path.join(storeDir, "config.json"), "utf8"))
    expect(config.kdf.scrypt).toMatchObject({ logN: 10, salt: expect.stringMatching(/^[0-9a-f]{32}$/) })
    const source = path.join(dir, "f")
    const data = crypto.randomBytes(300_000)
    fs.writeFileSync(source, data)
    const s = await run(Store.backup(store, { source }))
    const again = await run(Store.open({ dir: storeDir, key: { passphrase: Buffer.from("correct horse battery staple") } }))
    await run(Store.restore(again, { snapshot: s.snapshot, output: path.join(dir, "out") }))
    expect(fs.readFileSync(path.join(dir, "out")).equals(data)).toBe(true)
    expect(await failure(Store.open({ dir: storeDir, key: { passphrase: Buffer.from("wrong") } }))).toMatchObject({ _tag: "StoreRefused", reason: "Key", exitCode: 3 })
    expect((await failure(Store.open({ dir: storeDir, key: { key } }))).message).toContain("opened with a passphrase, not a key file")
    expect((await failure(Store.open({ dir: path.join(dir, "store2"), key: { key } }).pipe(Effect.andThen(Store.open({ dir: path.join(dir, "store2"), key: { passphrase } }))))).message).toContain("opened with a key file, not a passphrase")
    // A lower cost written into the config is refused by its MAC; a higher one than allowed before any work.
    fs.writeFileSync(path.join(storeDir, "config.json"), JSON.stringify({ ...config, kdf: { scrypt: { ...config.kdf.scrypt, logN: 11 } } }))
    expect(await failure(Store.open({ dir: storeDir, key: { passphrase } }))).toMatchObject({ reason: "Key" })
    fs.writeFileSync(path.join(storeDir, "config.json"), JSON.stringify({ ...config, kdf: { scrypt: { ...config.kdf.scrypt, logN: 25 } } }))
    expect((await failure(Store.open({ dir: storeDir, key: { passphrase } }))).message).toContain("outside 2^10..2^18")
    const files = fs.readdirSync(storeDir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile())
    for (const f of files) expect(fs.readFileSync(path.join(f.parentPath, f.name)).includes(passphrase)).toBe(false)
  })
})
