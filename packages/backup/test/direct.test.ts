import { type ChunkProcessor, ChunkSpec, type JsonValue } from "@cage/core"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { describe, expect, it } from "vitest"
import { type BackupCipher, chunkRanges, create, list, recover, Registry, resume, verify } from "../src/index.js"
import { HashPool } from "../src/internal/hashPool.js"
import { hashFromFiles, withLayoutRecord } from "../src/Manifest.js"
import { cipher, CHUNK, expectIntact, fail, failingAt, makeSource, run, tempDir } from "./helpers.js"

const n = CHUNK
const sizes = [0, 1, n - 1, n, n + 1, 5 * n + 3]

/** The salt of one AGCM run (public, like the header), to make two runs byte-identical. */
const pinnedSnapshot = async (): Promise<JsonValue> => {
  const p = cipher.encrypt()
  await run(p.init({ input: "probe", inputSize: 0, chunkBytes: n, readHeader: () => Effect.die("unused"), resume: undefined }) as Effect.Effect<unknown, unknown>)
  const s = p.snapshot!()
  await run(p.close!())
  return s
}

/** The test cipher with a fixed salt; `direct` false drops `processDirect` (the in-memory path). */
const pinned = (snapshot: JsonValue, direct: boolean): BackupCipher => ({
  ...cipher,
  encrypt: () => {
    const p = cipher.encrypt()
    return { ...p, init: (c) => p.init({ ...c, resume: c.resume ?? snapshot }), ...(direct ? {} : { processDirect: undefined }) }
  }
})

/** Counts the calls the engine makes to each way of processing a segment. */
const counting = (inner: BackupCipher) => {
  const calls = { direct: 0, segment: 0, chunk: 0 }
  const c: BackupCipher = {
    ...inner,
    encrypt: () => {
      const p = inner.encrypt()
      return {
        ...p,
        process: (chunk, data) => (calls.chunk++, p.process(chunk, data)),
        processSegment: (cs, data) => (calls.segment++, p.processSegment!(cs, data)),
        processDirect: p.processDirect && ((cs, segment) => (calls.direct++, p.processDirect!(cs, segment)))
      }
    }
  }
  return { cipher: c, calls }
}

/**
 * The test cipher whose `close` dies: the engine calls it after committing the backup file,
 * so create stops exactly where a kill -9 between phase 1 and phase 2 would leave it.
 */
const dyingAfterCommit: BackupCipher = {
  ...cipher,
  encrypt: () => {
    const p = cipher.encrypt()
    return { ...p, close: () => p.close!().pipe(Effect.andThen(Effect.die(new Error("simulated crash after commit")))) }
  }
}

const layoutFile = (bdir: string, g: Registry.Generation) => nodePath.join(bdir, Registry.MANIFEST_DIR, `${g.file}.layout.json`)
const checkpointFile = (bdir: string, g: Registry.Generation) => nodePath.join(bdir, Registry.MANIFEST_DIR, `${g.file}.checkpoint.json`)

/** Runs create until the backup file is committed, then "crashes": returns the partial entry. */
const committedNotHashed = async (src: string, bdir: string) => {
  await expect(run(create({ source: src, dir: bdir, cipher: dyingAfterCommit, chunkManifest: true, hashWorkers: 0 }))).rejects.toThrow("simulated crash after commit")
  const [g] = await run(list({ dir: bdir }))
  expect(g.status).toBe("partial")
  expect(fs.existsSync(nodePath.join(bdir, g.file))).toBe(true)
  expect(fs.existsSync(layoutFile(bdir, g))).toBe(true)
  expect(fs.existsSync(checkpointFile(bdir, g))).toBe(false)
  return g
}

const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)

describe("direct-mode ciphers: manifest hashed from the files", () => {
  it.for(sizes)("%i bytes: the manifest equals the in-memory path's, digest for digest, and the backup files are identical", async (size) => {
    const dir = tempDir()
    const src = makeSource(dir, size)
    const snapshot = await pinnedSnapshot()
    const made = async (direct: boolean, hashWorkers: number) => {
      const bdir = nodePath.join(dir, `${direct ? "direct" : "memory"}-${hashWorkers}`)
      const r = await run(create({ source: src.path, dir: bdir, cipher: pinned(snapshot, direct), chunkManifest: true, hashWorkers }))
      const m = await run(Registry.loadManifest(bdir, r.generation.manifest!))
      expect((await run(verify({ dir: bdir, source: src.path, deep: true, cipher, hashWorkers: 0 }))).ok).toBe(true)
      return { r, m, bytes: fs.readFileSync(nodePath.join(bdir, r.generation.file)), bdir }
    }
    const memory = await made(false, 2)
    for (const workers of [0, 2]) {
      const direct = await made(true, workers)
      expect(direct.bytes.equals(memory.bytes)).toBe(true)
      expect(direct.m.layout).toEqual(memory.m.layout)
      expect(direct.m.headerSha256).toBe(memory.m.headerSha256)
      expect(direct.m.chunks).toEqual(memory.m.chunks)
      expect(direct.m.chunks!.plain.length).toBe(Math.floor(size / n) + 1)
      const facts = (g: Registry.Generation) => [g.status, g.chunkBytes, g.plainBytes, g.cipherBytes, g.chunked, g.plainRoot, g.cipherRoot]
      expect(facts(direct.r.generation)).toEqual(facts(memory.r.generation))
      expect(direct.m.entry).toEqual(direct.r.generation)
      // The registry describes the cipher itself, as the checkpoint did.
      expect(direct.r.generation.pipeline.map((p) => p.name)).toEqual(["agcm-encrypt"])
      expect(memory.r.generation.pipeline.map((p) => p.name)).toEqual(["backup-manifest"])
      // Nothing left beside the manifest.
      expect(fs.readdirSync(nodePath.join(direct.bdir, Registry.MANIFEST_DIR)).filter((f) => !f.endsWith(".manifest.json"))).toEqual([])
    }
  })

  it("the engine runs the cipher in direct mode (processDirect only, once per segment)", async () => {
    const dir = tempDir()
    const src = makeSource(dir, 10 * n + 5)
    const c = counting(cipher)
    const r = await run(create({ source: src.path, dir: nodePath.join(dir, "b"), cipher: c.cipher, hashWorkers: 2, segmentBytes: 4 * n }))
    expect(c.calls).toEqual({ direct: 3, segment: 0, chunk: 0 })
    expect(r.summary.totalChunks).toBe(11)
    // Without processDirect the same cipher is hashed in memory, segment by segment.
    const m = counting({ ...cipher, encrypt: () => ({ ...cipher.encrypt(), processDirect: undefined }) })
    await run(create({ source: src.path, dir: nodePath.join(dir, "b"), cipher: m.cipher, hashWorkers: 2, segmentBytes: 4 * n }))
    expect(m.calls).toEqual({ direct: 0, segment: 3, chunk: 0 })
  })

  it("reports the hashing phase on its own progress reporter, after the encryption's", async () => {
    const dir = tempDir()
    const src = makeSource(dir, 10 * n + 5)
    const events: Array<string> = []
    const reporter = (name: string) => ({
      start: (total: number | undefined, done: number) => void events.push(`${name} start ${total} ${done}`),
      update: (done: number) => void events.push(`${name} ${done}`),
      stop: () => void events.push(`${name} stop`)
    })
    await run(create({ source: src.path, dir: nodePath.join(dir, "b"), cipher, hashWorkers: 2, progress: reporter("encrypt"), hashProgress: reporter("hash") }))
    const firstHash = events.indexOf(`hash start ${10 * n + 5} 0`)
    expect(firstHash).toBeGreaterThan(events.indexOf("encrypt stop"))
    expect(events.slice(firstHash)).toEqual([`hash start ${10 * n + 5} 0`, `hash ${10 * n + 5}`, "hash stop"])
  })

  it("the spy keeps every part of the cipher the engine looks at, and records the layout once init ran", async () => {
    const inner = cipher.encrypt()
    const seen: Array<unknown> = []
    const spy = withLayoutRecord(inner, (l) => Effect.sync(() => void seen.push(l)))
    for (const k of ["name", "version", "apiVersion", "options", "capabilities", "process", "processSegment", "processDirect", "release", "snapshot", "close"] as const) {
      expect(spy[k], k).toBe(inner[k])
    }
    const r = await run(spy.init({ input: "x", inputSize: 3 * n, chunkBytes: 1, readHeader: () => Effect.die("unused"), resume: undefined }) as Effect.Effect<{ header: Uint8Array }, unknown>)
    expect(seen).toEqual([{ framing: { headerBytes: 0, chunkBytes: n, shortFinal: true }, headerBytes: r.header.length, outputChunkBytes: n + 16 }])
    await run(spy.close!())
    // A cipher that declares no direct layout is refused (and closed).
    let closed = false
    const bare: ChunkProcessor = { ...cipher.encrypt(), init: () => Effect.succeed({}), close: () => Effect.sync(() => void (closed = true)) }
    const err = await fail(withLayoutRecord(bare, () => Effect.void).init({ input: "x", inputSize: 0, chunkBytes: n, readHeader: () => Effect.die("unused"), resume: undefined }))
    expect(String((err as Error).message)).toContain("no direct output chunks")
    expect(closed).toBe(true)
  })

  it("hashes in batches: any batch size gives the same digests", async () => {
    const dir = tempDir()
    const src = makeSource(dir, 9 * n + 7)
    const bdir = nodePath.join(dir, "b")
    const made = await run(create({ source: src.path, dir: bdir, cipher, chunkManifest: true, hashWorkers: 0 }))
    const m = await run(Registry.loadManifest(bdir, made.generation.manifest!))
    const layout = { framing: { headerBytes: 0, chunkBytes: n, shortFinal: true }, headerBytes: m.layout.headerBytes, outputChunkBytes: n + 16 }
    const pool = new HashPool(2)
    try {
      for (const batch of [1, n, 2 * n + 1, 4 * n, 1 << 30]) {
        const progress: Array<number> = []
        const d = await run(hashFromFiles(pool, src.path, src.bytes.length, nodePath.join(bdir, made.generation.file), layout, { batchBytes: batch, onProgress: (b) => progress.push(b) }))
        // One report per batch, growing, ending at the source's size.
        expect(progress.length).toBe(Math.ceil(10 / Math.max(1, Math.floor(batch / n))))
        expect([...progress].sort((a, b) => a - b)).toEqual(progress)
        expect(progress.at(-1)).toBe(src.bytes.length)
        expect(d.plain.map((b) => b.toString("hex"))).toEqual(m.chunks!.plain)
        expect(d.cipher.map((b) => b.toString("hex"))).toEqual(m.chunks!.cipher)
        expect(d.headerSha256).toBe(m.headerSha256)
        expect(d.cipherLengths).toEqual(chunkRanges(m.layout).map((r) => r[1]))
      }
    } finally {
      await pool.close()
    }
    expect(ChunkSpec.planRegion(src.bytes.length, layout.framing).totalChunks).toBe(10)
  })
})

describe("direct-mode ciphers: resume at every crash point", () => {
  it.for(sizes)("%i bytes: committed but not hashed (kill -9 between the phases): resume hashes without encrypting again", async (size) => {
    const dir = tempDir()
    const src = makeSource(dir, size)
    const bdir = nodePath.join(dir, "b")
    const g = await committedNotHashed(src.path, bdir)
    const layout = JSON.parse(fs.readFileSync(layoutFile(bdir, g), "utf8"))
    expect(fs.statSync(layoutFile(bdir, g)).mode & 0o777).toBe(0o600)
    expect(layout).toMatchObject({ format: "cage-backup-layout", id: g.id, headerBytes: expect.any(Number), outputChunkBytes: n + 16, source: { path: src.path, size } })
    const before = fs.readFileSync(nodePath.join(bdir, g.file))
    const c = counting(cipher)
    const done = await run(resume({ source: src.path, dir: bdir, cipher: c.cipher, chunkManifest: true, hashWorkers: 2 }))
    expect(c.calls).toEqual({ direct: 0, segment: 0, chunk: 0 })
    expect(done.generation.status).toBe("complete")
    expect(done.generation.plainBytes).toBe(size)
    expect(done.generation.cipherBytes).toBe(before.length)
    expect(done.summary).toMatchObject({ totalChunks: Math.floor(size / n) + 1, resumedFrom: Math.floor(size / n) + 1, processedChunks: 0 })
    expect(fs.readFileSync(nodePath.join(bdir, g.file)).equals(before)).toBe(true)
    expect(fs.existsSync(layoutFile(bdir, g))).toBe(false)
    await expectIntact(bdir, src)
  })

  it("committed, with the checkpoint and a .partial left behind (crash inside the engine's clean-up): resume removes them", async () => {
    const dir = tempDir()
    const src = makeSource(dir, 3 * n)
    const bdir = nodePath.join(dir, "b")
    const g = await committedNotHashed(src.path, bdir)
    fs.writeFileSync(checkpointFile(bdir, g), "{}")
    fs.writeFileSync(nodePath.join(bdir, `${g.file}.partial`), "stale")
    await run(resume({ source: src.path, dir: bdir, cipher, hashWorkers: 0 }))
    expect(fs.existsSync(checkpointFile(bdir, g))).toBe(false)
    expect(fs.existsSync(nodePath.join(bdir, `${g.file}.partial`))).toBe(false)
    expect((await run(verify({ dir: bdir, source: src.path, deep: true, cipher, hashWorkers: 0 }))).ok).toBe(true)
  })

  it("manifest written, registry not (crash between them): resume commits the manifest's entry", async () => {
    const dir = tempDir()
    const src = makeSource(dir, 4 * n + 1)
    const bdir = nodePath.join(dir, "b")
    const made = await run(create({ source: src.path, dir: bdir, cipher, chunkManifest: true, hashWorkers: 0 }))
    // Put the registry back as it was before its last write (the entry still partial),
    // with a layout record still there (the crash also came before its removal).
    const reg = nodePath.join(bdir, Registry.REGISTRY_FILE)
    fs.copyFileSync(`${reg}.bak`, reg)
    fs.writeFileSync(layoutFile(bdir, made.generation), "{}")
    expect((await run(list({ dir: bdir }))).map((g) => g.status)).toEqual(["partial"])
    const c = counting(cipher)
    const done = await run(resume({ source: src.path, dir: bdir, cipher: c.cipher, hashWorkers: 0 }))
    expect(c.calls).toEqual({ direct: 0, segment: 0, chunk: 0 })
    expect(done.generation).toEqual(made.generation)
    expect(await run(list({ dir: bdir }))).toEqual([made.generation])
    expect(fs.existsSync(layoutFile(bdir, made.generation))).toBe(false)
    expect((await run(verify({ dir: bdir, source: src.path, hashWorkers: 0 }))).ok).toBe(true)
  })

  it("interrupted before its first checkpoint: resume starts over, then hashes", async () => {
    const dir = tempDir()
    const src = makeSource(dir, 3 * n)
    const bdir = nodePath.join(dir, "b")
    await fail(create({ source: src.path, dir: bdir, cipher: failingAt(0), hashWorkers: 0, segmentBytes: n, inFlight: 1 }))
    const [g] = await run(list({ dir: bdir }))
    expect(g.status).toBe("partial")
    expect(fs.existsSync(checkpointFile(bdir, g))).toBe(false)
    const done = await run(resume({ source: src.path, dir: bdir, cipher, chunkManifest: true, hashWorkers: 0 }))
    expect(done.summary.resumedFrom).toBe(0)
    expect((await run(verify({ dir: bdir, source: src.path, deep: true, cipher, hashWorkers: 0 }))).ok).toBe(true)
  })

  it("interrupted mid-run: the checkpoint describes the cipher itself, and the resumed run is direct", async () => {
    const dir = tempDir()
    const src = makeSource(dir, 6 * n + 2)
    const bdir = nodePath.join(dir, "b")
    await fail(create({ source: src.path, dir: bdir, cipher: failingAt(4), hashWorkers: 0, segmentBytes: n, inFlight: 1, checkpointIntervalMs: 0 }))
    const [g] = await run(list({ dir: bdir }))
    const cp = JSON.parse(fs.readFileSync(checkpointFile(bdir, g), "utf8"))
    expect(cp.pipeline.map((p: { name: string }) => p.name)).toEqual(["agcm-encrypt"])
    const c = counting(cipher)
    const done = await run(resume({ source: src.path, dir: bdir, cipher: c.cipher, chunkManifest: true, hashWorkers: 2, segmentBytes: n, inFlight: 1 }))
    expect(done.summary.resumedFrom).toBe(4)
    expect(c.calls).toEqual({ direct: 3, segment: 0, chunk: 0 })
    expect((await run(verify({ dir: bdir, source: src.path, deep: true, cipher, hashWorkers: 0 }))).ok).toBe(true)
  })

  it("recover keeps a generation that was committed but not hashed, and it still resumes", async () => {
    const dir = tempDir()
    const src = makeSource(dir, 2 * n + 3)
    const bdir = nodePath.join(dir, "b")
    await run(create({ source: src.path, dir: bdir, cipher, hashWorkers: 0 }))
    await expect(run(create({ source: src.path, dir: bdir, cipher: dyingAfterCommit, hashWorkers: 0 }))).rejects.toThrow("simulated crash after commit")
    const before = await run(list({ dir: bdir }))
    expect(before.map((g) => g.status)).toEqual(["complete", "partial"])
    expect(await run(recover({ dir: bdir }))).toMatchObject({ generations: 2, fromManifests: 1, fromBackup: 1 })
    expect(await run(list({ dir: bdir }))).toEqual(before)
    expect((await run(resume({ source: src.path, dir: bdir, cipher, hashWorkers: 0 }))).generation.generation).toBe(2)
    expect((await run(verify({ dir: bdir, source: src.path, generation: 2, deep: true, cipher, hashWorkers: 0 }))).ok).toBe(true)
  })

  it("a committed file of the wrong size, or a missing layout record, is a clear error", async () => {
    const dir = tempDir()
    const src = makeSource(dir, 2 * n + 3)
    const bdir = nodePath.join(dir, "b")
    const g = await committedNotHashed(src.path, bdir)
    const file = nodePath.join(bdir, g.file)
    fs.appendFileSync(file, "x")
    const err = await fail(resume({ source: src.path, dir: bdir, cipher, hashWorkers: 0 }))
    expect(err._tag).toBe("BackupDamaged")
    expect((err as { exitCode: number }).exitCode).toBe(3)
    expect(err.message).toContain(`the file has ${fs.statSync(file).size} bytes, its layout (${2 * n + 3} source bytes) makes ${fs.statSync(file).size - 1}`)
    fs.truncateSync(file, fs.statSync(file).size - 1)
    fs.rmSync(layoutFile(bdir, g))
    const missing = await fail(resume({ source: src.path, dir: bdir, cipher, hashWorkers: 0 }))
    expect(missing._tag).toBe("ResumeRefused")
    expect((missing as unknown as { exitCode: number }).exitCode).toBe(5)
    expect(missing.message).toContain("there is no layout record")
    expect((await run(list({ dir: bdir }))).map((x) => x.status)).toEqual(["partial"])
  })
})

describe("direct-mode ciphers: the source must still be what was encrypted", () => {
  /** The test cipher, running `change` once every chunk is encrypted (before the file is committed). */
  const changingAtEnd = (change: () => void): BackupCipher => ({
    ...cipher,
    encrypt: () => {
      const p = cipher.encrypt()
      return { ...p, finalize: (c) => Effect.sleep(15).pipe(Effect.andThen(Effect.sync(change)), Effect.andThen(p.finalize(c))) }
    }
  })

  const expectRefused = async (src: string, bdir: string, e: { _tag: string; message: string }, what: string) => {
    expect(e._tag).toBe("SourceChanged")
    expect((e as unknown as { exitCode: number }).exitCode).toBe(4)
    expect(e.message).toContain(src)
    expect(e.message).toContain(what)
    // The generation can never be completed: it is gone, files and entry, with no manifest
    // that deep verify could later misread as damage, and no full-size copy left behind.
    expect(await run(list({ dir: bdir }))).toEqual([])
    expect(fs.readdirSync(bdir).filter((f) => f.endsWith(".cage") || f.endsWith(".partial"))).toEqual([])
    expect(fs.readdirSync(nodePath.join(bdir, Registry.MANIFEST_DIR)).filter((f) => !f.endsWith(".lock"))).toEqual([])
    expect(e.message).toContain("removed")
    const again = await fail(resume({ source: src, dir: bdir, cipher, hashWorkers: 0 }))
    expect(again._tag).toBe("GenerationNotFound")
  }

  it("rewritten in place with the same size while it was encrypted", async () => {
    const dir = tempDir()
    const src = makeSource(dir, 3 * n + 5)
    const bdir = nodePath.join(dir, "b")
    const err = await fail(create({ source: src.path, dir: bdir, cipher: changingAtEnd(() => fs.writeFileSync(src.path, Buffer.alloc(3 * n + 5, 1))), chunkManifest: true, hashWorkers: 0 }))
    await expectRefused(src.path, bdir, err, "time")
  })

  it("grown after it was encrypted", async () => {
    const dir = tempDir()
    const src = makeSource(dir, 3 * n + 5)
    const bdir = nodePath.join(dir, "b")
    const err = await fail(create({ source: src.path, dir: bdir, cipher: changingAtEnd(() => fs.appendFileSync(src.path, "more")), chunkManifest: true, hashWorkers: 0 }))
    await expectRefused(src.path, bdir, err, `size in bytes: was ${3 * n + 5}, now ${3 * n + 9}`)
  })

  it("changed between the crash and the resume that hashes it", async () => {
    const dir = tempDir()
    const src = makeSource(dir, 3 * n + 5)
    const bdir = nodePath.join(dir, "b")
    await committedNotHashed(src.path, bdir)
    sleepSync(15)
    const fd = fs.openSync(src.path, "r+")
    fs.writeSync(fd, Buffer.from([src.bytes[7] ^ 1]), 0, 1, 7)
    fs.closeSync(fd)
    const err = await fail(resume({ source: src.path, dir: bdir, cipher, hashWorkers: 0 }))
    await expectRefused(src.path, bdir, err, "time")
  })

  it("a status change after the generation was registered but before the source was opened is not a change", async () => {
    const dir = tempDir()
    const src = makeSource(dir, 2 * n)
    const bdir = nodePath.join(dir, "b")
    // The cipher factory runs after the entry is registered and before the source is opened:
    // what is encrypted and hashed is the file as opened, so this backup is good.
    const chmodding: BackupCipher = { ...cipher, encrypt: () => (sleepSync(15), fs.chmodSync(src.path, 0o640), cipher.encrypt()) }
    const r = await run(create({ source: src.path, dir: bdir, cipher: chmodding, hashWorkers: 0 }))
    expect(r.generation.status).toBe("complete")
    await expectIntact(bdir, src)
  })

  it("a status change after the source was opened is refused (it cannot be told from a write)", async () => {
    const dir = tempDir()
    const src = makeSource(dir, 3 * n + 5)
    const bdir = nodePath.join(dir, "b")
    const err = await fail(create({ source: src.path, dir: bdir, cipher: changingAtEnd(() => fs.chmodSync(src.path, 0o640)), hashWorkers: 0 }))
    await expectRefused(src.path, bdir, err, "status change time")
  })

  it("an unchanged source is not refused, even when it was written just before the backup", async () => {
    const dir = tempDir()
    const bdir = nodePath.join(dir, "b")
    for (let i = 0; i < 20; i++) {
      const src = makeSource(dir, 100 + i, `s${i}`)
      expect((await run(create({ source: src.path, dir: bdir, cipher, hashWorkers: 0 }))).generation.status).toBe("complete")
    }
  })
})
