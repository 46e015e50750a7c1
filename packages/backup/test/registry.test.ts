import { Effect } from "effect"
import * as fs from "node:fs"
import { hostname } from "node:os"
import * as nodePath from "node:path"
import { describe, expect, it } from "vitest"
import { create, formatPolicy, list, LOCK_FILE, parsePolicy, prune, recover, Registry, Retention, verify, withLock } from "../src/index.js"
import { cipher, CHUNK, fail, flipByte, makeSource, run, tempDir } from "./helpers.js"

describe("corrupt registry", () => {
  it.for([
    ["truncated JSON", (t: string): string => t.slice(0, t.length >> 1)],
    ["wrong shape", (_: string): string => JSON.stringify({ format: "cage-backups", version: 1, updatedAt: "x", generations: [{ id: 3 }] })],
    ["garbage", (_: string): string => "\u0000\u0001not json"]
  ] as const)("%s: a clear error, nothing overwritten, recover rebuilds every generation", async ([, damage]) => {
    const dir = tempDir()
    const a = makeSource(dir, 2 * CHUNK, "a")
    const b = makeSource(dir, 10, "bsrc")
    const bdir = nodePath.join(dir, "b")
    await run(create({ source: a.path, dir: bdir, cipher, hashWorkers: 0 }))
    await run(create({ source: a.path, dir: bdir, cipher, hashWorkers: 0 }))
    await run(create({ source: b.path, dir: bdir, cipher, hashWorkers: 0 }))
    const before = await run(list({ dir: bdir }))
    const path = nodePath.join(bdir, Registry.REGISTRY_FILE)
    const corrupt = damage(fs.readFileSync(path, "utf8"))
    fs.writeFileSync(path, corrupt)
    for (const op of [list({ dir: bdir }), create({ source: a.path, dir: bdir, cipher }), verify({ dir: bdir, source: a.path }), prune({ dir: bdir })] as const) {
      const err = await fail(op as Effect.Effect<unknown, { _tag: string; exitCode: number; message: string }>)
      expect(err._tag).toBe("RegistryCorrupt")
      expect(err.exitCode).toBe(3)
      expect(err.message).toContain(".cage_backups.json.bak")
      expect(err.message).toContain("the registry can be rebuilt from them")
    }
    // The corrupt registry was left as it was, for forensics and recovery.
    expect(fs.readFileSync(path, "utf8")).toBe(corrupt)
    const report = await run(recover({ dir: bdir }))
    expect(report.generations).toBe(3)
    expect(report.corruptMovedTo).not.toBeNull()
    expect(fs.readFileSync(report.corruptMovedTo!, "utf8")).toBe(corrupt)
    const after = await run(list({ dir: bdir }))
    expect(after).toEqual(before)
    expect((await run(verify({ dir: bdir, source: a.path, generation: 1, hashWorkers: 0 }))).ok).toBe(true)
  })

  it("recover on a healthy registry keeps interrupted generations that can still be resumed", async () => {
    const dir = tempDir()
    const a = makeSource(dir, 4 * CHUNK, "a")
    const bdir = nodePath.join(dir, "b")
    await run(create({ source: a.path, dir: bdir, cipher, hashWorkers: 0 }))
    // An interrupted second generation (its .partial kept by a checkpoint).
    const failing = { ...cipher, encrypt: () => ({ ...cipher.encrypt(), processSegment: undefined, processDirect: undefined, process: (c: { index: number }) => (c.index === 2 ? Effect.fail(new Error("crash")) : Effect.succeed(new Uint8Array(CHUNK + 16))) }) }
    await fail(create({ source: a.path, dir: bdir, cipher: failing as never, hashWorkers: 0, segmentBytes: CHUNK, inFlight: 1, checkpointIntervalMs: 0 }))
    const before = await run(list({ dir: bdir }))
    expect(before.map((g) => g.status)).toEqual(["complete", "partial"])
    const r = await run(recover({ dir: bdir }))
    expect(r).toMatchObject({ generations: 2, fromManifests: 1, fromBackup: 1, corruptMovedTo: null })
    expect(await run(list({ dir: bdir }))).toEqual(before)
  })

  it("keeps the previous good registry as .bak", async () => {
    const dir = tempDir()
    const a = makeSource(dir, 10, "a")
    const bdir = nodePath.join(dir, "b")
    await run(create({ source: a.path, dir: bdir, cipher, hashWorkers: 0 }))
    await run(create({ source: a.path, dir: bdir, cipher, hashWorkers: 0 }))
    const bak = JSON.parse(fs.readFileSync(nodePath.join(bdir, ".cage_backups.json.bak"), "utf8"))
    // The .bak is the registry before the last write: generation 2 registered but still partial.
    expect(bak.generations.map((g: { status: string }) => g.status)).toEqual(["complete", "partial"])
  })

  it("a corrupt manifest names the manifest", async () => {
    const dir = tempDir()
    const a = makeSource(dir, 10, "a")
    const bdir = nodePath.join(dir, "b")
    const made = await run(create({ source: a.path, dir: bdir, cipher, hashWorkers: 0 }))
    fs.writeFileSync(nodePath.join(bdir, made.generation.manifest!), "{")
    const err = await fail(verify({ dir: bdir, source: a.path }))
    expect(err._tag).toBe("RegistryCorrupt")
    expect(err.message).toContain(".manifest.json")
  })
})

describe("retention", () => {
  it("parses and formats every policy", () => {
    for (const p of ["keep_all", "keep_last:1", "keep_last:10", "keep_days:7", "keep_last_and_days:3,30"]) {
      expect(formatPolicy(parsePolicy(p))).toBe(p)
    }
    for (const bad of ["", "keep", "keep_last", "keep_last:0", "keep_last:-1", "keep_last:1.5", "keep_days:x", "keep_last_and_days:3", "keep_last_and_days:3,", "keep_last:3:4", "keep_all:1"]) {
      expect(() => parsePolicy(bad)).toThrow(/retention policy/)
    }
    expect(Effect.runSync(Effect.flip(Effect.try({ try: () => parsePolicy("keep_last:0"), catch: (e) => e }))))
      .toMatchObject({ _tag: "BackupUsageError", reason: "Retention", exitCode: 2 })
  })

  const gen = (n: number, daysAgo: number, now: number) => ({
    id: `g${n}`, source: "/s", generation: n, file: `f${n}`, status: "complete" as const, createdAt: new Date(now - daysAgo * 86_400_000).toISOString(),
    completedAt: null, chunkBytes: 1, plainBytes: 1, cipherBytes: 1, pipeline: [], manifest: null, chunked: false, plainRoot: null, cipherRoot: null
  })

  it("selects generations by count, age, and both", () => {
    const now = Date.parse("2026-01-31T00:00:00Z")
    const gens = [gen(1, 40, now), gen(2, 20, now), gen(3, 9, now), gen(4, 2, now), gen(5, 0.5, now)]
    const ids = (p: string) => [...Retention.kept(parsePolicy(p), gens, now)].sort()
    expect(ids("keep_all")).toEqual(["g1", "g2", "g3", "g4", "g5"])
    expect(ids("keep_last:2")).toEqual(["g4", "g5"])
    expect(ids("keep_last:9")).toEqual(["g1", "g2", "g3", "g4", "g5"])
    expect(ids("keep_days:10")).toEqual(["g3", "g4", "g5"])
    expect(ids("keep_days:1")).toEqual(["g5"])
    expect(ids("keep_last_and_days:1,10")).toEqual(["g3", "g4", "g5"])
    expect(ids("keep_last_and_days:4,1")).toEqual(["g2", "g3", "g4", "g5"])
  })

  it("keeps, like restic's --keep-hourly/daily/weekly/monthly/yearly, the newest of each of the last N periods that have one (UTC)", () => {
    const at = (iso: string, n: number) => ({ ...gen(n, 0, 0), createdAt: iso })
    // Three a day on 1..3 December 2026 (Tuesday..Thursday), one on 30 November, one a month and a year before.
    const gens = [
      at("2025-11-15T10:00:00Z", 1), at("2026-10-31T23:59:59Z", 2), at("2026-11-30T08:00:00Z", 3),
      at("2026-12-01T01:00:00Z", 4), at("2026-12-01T09:00:00Z", 5), at("2026-12-01T23:00:00Z", 6),
      at("2026-12-02T00:30:00Z", 7), at("2026-12-02T00:45:00Z", 8), at("2026-12-03T12:00:00Z", 9)
    ]
    const now = Date.parse("2026-12-05T00:00:00Z")
    const ids = (p: string) => [...Retention.kept(parsePolicy(p), gens, now)].sort((a, b) => Number(a.slice(1)) - Number(b.slice(1)))
    expect(ids("keep_daily:3")).toEqual(["g6", "g8", "g9"])
    expect(ids("keep_daily:10")).toEqual(["g1", "g2", "g3", "g6", "g8", "g9"])
    expect(ids("keep_hourly:2")).toEqual(["g8", "g9"])
    // ISO weeks: 30 Nov..3 Dec 2026 is 2026-W49; 31 Oct 2026 is W44; 15 Nov 2025 is 2025-W46.
    expect(ids("keep_weekly:2")).toEqual(["g2", "g9"])
    expect(ids("keep_monthly:3")).toEqual(["g2", "g3", "g9"])
    expect(ids("keep_yearly:5")).toEqual(["g1", "g9"])
    expect(ids("keep_last:1+keep_monthly:2")).toEqual(["g3", "g9"])
    expect(ids("keep_daily:1+keep_yearly:2")).toEqual(["g1", "g9"])
    for (const [iso, week] of [["2026-12-05T06:00:00Z", "2026-W49"], ["2021-01-03T00:00:00Z", "2020-W53"], ["2024-12-30T00:00:00Z", "2025-W01"], ["2026-01-01T00:00:00Z", "2026-W01"]]) {
      expect(Retention.periodOf("weekly", Date.parse(iso))).toBe(week)
    }
    expect(formatPolicy(parsePolicy("keep_last:2+keep_weekly:4"))).toBe("keep_last:2+keep_weekly:4")
    for (const bad of ["keep_daily:0", "keep_weekly", "keep_all+keep_daily:1", "keep_daily:1+", "keep_fortnightly:2"]) {
      expect(() => parsePolicy(bad), bad).toThrow(expect.objectContaining({ _tag: "BackupUsageError", reason: "Retention" }))
    }
  })

  it("prunes to the policy, registry first, dry run deletes nothing", async () => {
    const dir = tempDir()
    const a = makeSource(dir, 2 * CHUNK, "a")
    const bdir = nodePath.join(dir, "b")
    for (let i = 0; i < 5; i++) await run(create({ source: a.path, dir: bdir, cipher, hashWorkers: 0 }))
    const all = await run(list({ dir: bdir }))
    const dry = await run(prune({ dir: bdir, dryRun: true, hashWorkers: 0 }))
    expect(dry.deleted.map((g) => g.generation)).toEqual([2, 1])
    expect((await run(list({ dir: bdir }))).length).toBe(5)
    for (const g of all) expect(fs.existsSync(nodePath.join(bdir, g.file))).toBe(true)
    const done = await run(prune({ dir: bdir, hashWorkers: 0 }))
    expect(done.deleted.map((g) => g.generation)).toEqual([2, 1])
    expect(done.protectedGenerations.map((g) => g.generation)).toEqual([5])
    expect((await run(list({ dir: bdir }))).map((g) => g.generation)).toEqual([3, 4, 5])
    for (const g of all) {
      const gone = g.generation <= 2
      expect(fs.existsSync(nodePath.join(bdir, g.file))).toBe(!gone)
      expect(fs.existsSync(nodePath.join(bdir, g.manifest!))).toBe(!gone)
    }
  })

  it("never deletes the newest generation that verifies", async () => {
    const dir = tempDir()
    const a = makeSource(dir, 2 * CHUNK, "a")
    const bdir = nodePath.join(dir, "b")
    for (let i = 0; i < 4; i++) await run(create({ source: a.path, dir: bdir, cipher, hashWorkers: 0 }))
    const all = await run(list({ dir: bdir }))
    // Damage generations 4 and 3: the policy keeps only 4, but 2 is the newest good copy.
    flipByte(nodePath.join(bdir, all[3].file), 100)
    flipByte(nodePath.join(bdir, all[2].file), 100)
    const r = await run(prune({ dir: bdir, policy: parsePolicy("keep_last:1"), hashWorkers: 0 }))
    expect(r.protectedGenerations.map((g) => g.generation)).toEqual([2])
    expect(r.damaged.map((g) => g.generation)).toEqual([4, 3])
    expect(r.deleted.map((g) => g.generation)).toEqual([3, 1])
    expect((await run(list({ dir: bdir }))).map((g) => g.generation)).toEqual([2, 4])
    // keep_days:1 with a clock 30 days ahead would delete everything: the good one stays.
    const later = await run(prune({ dir: bdir, policy: parsePolicy("keep_days:1"), now: Date.now() + 30 * 86_400_000, hashWorkers: 0 }))
    expect(later.deleted.map((g) => g.generation)).toEqual([4])
    expect((await run(list({ dir: bdir }))).map((g) => g.generation)).toEqual([2])
  })
})

describe("registry lock", () => {
  const writeLock = (dir: string, holder: object, ageMs = 0) => {
    const p = nodePath.join(dir, LOCK_FILE)
    fs.writeFileSync(p, JSON.stringify(holder))
    const t = new Date(Date.now() - ageMs)
    fs.utimesSync(p, t, t)
  }

  it("breaks a lock whose holder pid is gone", async () => {
    const dir = tempDir()
    // A pid that cannot exist (above pid_max).
    writeLock(dir, { pid: 2 ** 30, host: hostname(), token: "dead", at: "then" })
    expect(await run(withLock(dir, Effect.succeed(42), { waitMs: 2000 }))).toBe(42)
    expect(fs.existsSync(nodePath.join(dir, LOCK_FILE))).toBe(false)
  })

  it("breaks a lock not refreshed for staleMs (a holder on another host)", async () => {
    const dir = tempDir()
    writeLock(dir, { pid: process.pid, host: "elsewhere", token: "old", at: "then" }, 10_000)
    expect(await run(withLock(dir, Effect.succeed(1), { staleMs: 5000, waitMs: 2000 }))).toBe(1)
  })

  it("waits for a live holder, then times out with LockTimeout naming it", async () => {
    const dir = tempDir()
    writeLock(dir, { pid: process.pid, host: hostname(), token: "live", at: "now" })
    const err = await fail(withLock(dir, Effect.succeed(1), { waitMs: 150, staleMs: 60_000 }))
    expect(err._tag).toBe("LockTimeout")
    expect(err.message).toContain(`pid ${process.pid}`)
    expect((err as { exitCode: number }).exitCode).toBe(4)
  })

  it("serializes holders in one process and releases on failure", async () => {
    const dir = tempDir()
    let inside = 0
    let maxInside = 0
    const body = Effect.gen(function*() {
      inside++
      maxInside = Math.max(maxInside, inside)
      yield* Effect.sleep(5)
      inside--
    })
    await run(Effect.all(Array.from({ length: 8 }, () => withLock(dir, body, { pollMs: 2 })), { concurrency: "unbounded" }))
    expect(maxInside).toBe(1)
    await fail(withLock(dir, Effect.fail("boom")))
    expect(fs.existsSync(nodePath.join(dir, LOCK_FILE))).toBe(false)
  })
})
