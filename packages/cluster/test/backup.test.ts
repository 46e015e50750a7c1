// A distributed backup on a real cluster (issue 16): a throwaway PostgreSQL, three runner
// processes on loopback, a directory of 200 files from 0 bytes to 256 MiB backed up into the
// chunk store while one runner is kill -9ed and another started. Every file restores
// byte-identically, the store checks clean, other writers are refused while the job runs,
// the next job reads only what changed, and no table holds the key.
import { Store } from "@cage/backup"
import { Effect } from "effect"
import type { ChildProcess } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Cluster, Job } from "../src/index.js"
import { type Postgres, startPostgres } from "../src/Postgres.js"
import { sha256, startRunner as startRunnerWith } from "./helpers.js"

const MiB = 1024 * 1024
let pg: Postgres
let dir: string
const runners: Array<ChildProcess> = []

const startRunner = (extra: ReadonlyArray<string> = []) => startRunnerWith(pg, runners, extra)


/** Every file under `root` by relative path: its mode and SHA-256 (symlinks: their target). */
const describeTree = (root: string) => {
  const out: Record<string, string> = {}
  const walk = (d: string, rel: string) => {
    for (const name of fs.readdirSync(d).sort()) {
      const full = path.join(d, name)
      const r = rel ? `${rel}/${name}` : name
      const st = fs.lstatSync(full)
      if (st.isSymbolicLink()) out[r] = `link ${fs.readlinkSync(full)}`
      else if (st.isDirectory()) walk(full, r)
      else out[r] = `${(st.mode & 0o777).toString(8)} ${st.size} ${sha256(full)}`
    }
  }
  walk(root, "")
  return out
}

/** Random bytes written in pieces of at most 4 MiB (the 256 MiB file never sits in memory). */
const writeRandom = (file: string, size: number) => {
  const fd = fs.openSync(file, "w")
  for (let left = size; left > 0; left -= 4 * MiB) fs.writeSync(fd, crypto.randomBytes(Math.min(left, 4 * MiB)))
  fs.closeSync(fd)
}

/** Rows of a query on the cluster's database, as arrays of column texts. */
const psql = (query: string) =>
  pg.run("psql", ["-h", pg.host, "-p", String(pg.port), "-U", pg.username, "-AtF", "\t", "-c", query, pg.database]).split("\n").filter((l) => l !== "").map((l) => l.split("\t"))

/** A runner process's listen address (how the cluster names it). */
const addressOf = (child: ChildProcess) => child.spawnargs[child.spawnargs.indexOf("--listen") + 1]

beforeAll(async () => {
  pg = await startPostgres()
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "cage-cluster-backup-"))
}, 60_000)
afterAll(() => {
  for (const r of runners) r.kill("SIGKILL")
  pg?.stop()
  fs.rmSync(dir, { recursive: true, force: true })
})

describe("a backup job on three runners", () => {
  it("200 files from 0 bytes to 256 MiB, a runner kill -9ed mid-job: every file restores byte-identically, the store checks clean; the next job reads only what changed", async () => {
    // Segments pause 1.5 s once started (and recorded as running), so a runner can be killed
    // while it certainly holds segments it has not finished.
    const slow = ["--segment-delay-ms", "1500"]
    const live = [await startRunner(slow), await startRunner(slow), await startRunner(slow)]
    // The tree: 0 and 1 byte, one of 256 MiB, three of 20 to 40 MiB, the rest up to 2 MiB, in nested directories.
    const src = path.join(dir, "src")
    let x = 31
    const next = (n: number) => ((x = (x * 1103515245 + 12345) >>> 0) % n)
    for (let i = 0; i < 200; i++) {
      const sub = path.join(src, `d${i % 6}`, i % 4 === 0 ? "deep" : "")
      fs.mkdirSync(sub, { recursive: true })
      const size = i === 0 ? 0 : i === 1 ? 1 : i === 2 ? 256 * MiB : i < 6 ? 20 * MiB + next(20 * MiB) : next(2 * MiB)
      const file = path.join(sub, `f${i}.bin`)
      writeRandom(file, size)
      fs.chmodSync(file, [0o644, 0o600, 0o755][i % 3])
    }
    fs.symlinkSync("d1/f1.bin", path.join(src, "link"))
    const key = crypto.randomBytes(32)
    const keyFile = path.join(dir, "store.key")
    fs.writeFileSync(keyFile, `cage-key-1:${key.toString("base64url")}\n`, { mode: 0o600 })
    const backups = path.join(dir, "backups")
    const client = Cluster.clientLayer({ host: pg.host, port: pg.port, username: pg.username, database: pg.database })
    const store = await Effect.runPromise(Store.open({ dir: backups, key: { key } }))

    const first = await Effect.runPromise(Effect.gen(function*() {
      const { id } = yield* Job.startBackup({ source: src, dir: backups, keyFile, segmentBytes: 16 * MiB })
      // While the job runs, the store has one writer: the job.
      const busy = yield* Effect.flip(Store.backup(store, { source: src }))
      expect(busy.message).toContain(`being written by cluster job ${id}`)
      const segments = (yield* Job.status(id)).segments
      // Once a quarter of the segments are done, a runner that started a segment less than
      // 300 ms ago (so it is still in its 1.5 s pause) is killed; another runner is started.
      let victim: { readonly runner: string; readonly segments: ReadonlyArray<number> } | undefined
      while (victim === undefined) {
        const s = yield* Job.status(id)
        expect(s.result, "the job ended before the kill").toBeUndefined()
        if (s.done >= Math.floor(segments / 4)) {
          const rows = psql(`SELECT runner, segment FROM cage_segments WHERE job_id = '${id}' AND state = 'running' AND updated_at > ${Date.now() - 300}`)
          if (rows.length > 0) {
            const runner = rows[0][0]
            const child = live.find((c) => addressOf(c) === runner)!
            child.kill("SIGKILL")
            live.splice(live.indexOf(child), 1)
            victim = { runner, segments: rows.filter((r) => r[0] === runner).map((r) => Number(r[1])) }
          }
        }
        yield* Effect.sleep(50)
      }
      live.push(yield* Effect.promise(() => startRunner(slow)))
      for (;;) {
        const s = yield* Job.status(id)
        if (s.result !== undefined) return { s, segments, victim, id }
        yield* Effect.sleep(250)
      }
    }).pipe(Effect.provide(client), Effect.timeout("400 seconds")))
    expect(first.s.result).toEqual({ ok: true })
    // The killed runner's unfinished segments ran again on another runner.
    const rerun = psql(`SELECT segment, runner, state FROM cage_segments WHERE job_id = '${first.id}' AND segment IN (${first.victim.segments.join(",")})`)
    expect(rerun.length).toBe(first.victim.segments.length)
    for (const [, runner, state] of rerun) expect([runner === first.victim.runner, state]).toEqual([false, "done"])
    expect(first.s.backup).toMatchObject({ generation: 1, files: 200, filesRead: 200, changed: [], skipped: [] })
    expect(first.segments).toBeGreaterThan(16) // the 256 MiB file alone is 16 segments

    // Restored with the store's own restore (what `cage backup restore` calls): the same tree.
    const snaps = await Effect.runPromise(Store.snapshots(store))
    expect(snaps.map((s) => s.id)).toEqual([first.s.backup!.snapshot])
    const out = path.join(dir, "restored")
    await Effect.runPromise(Store.restore(store, { snapshot: snaps[0].id, output: out }))
    expect(describeTree(out)).toEqual(describeTree(src))
    fs.rmSync(out, { recursive: true })
    expect((await Effect.runPromise(Store.check(store, { deep: true }))).problems).toEqual([])
    // The lock went with the job.
    expect(fs.existsSync(path.join(backups, "lock"))).toBe(false)

    // The next job: one file changed, one added; only those two are read.
    fs.appendFileSync(path.join(src, "d3", "f3.bin"), "appended")
    writeRandom(path.join(src, "new.bin"), 3 * MiB)
    const second = await Effect.runPromise(Effect.gen(function*() {
      const { id } = yield* Job.startBackup({ source: src, dir: backups, keyFile, segmentBytes: 16 * MiB })
      for (;;) {
        const s = yield* Job.status(id)
        if (s.result !== undefined) return s
        yield* Effect.sleep(250)
      }
    }).pipe(Effect.provide(client), Effect.timeout("120 seconds")))
    expect(second.backup).toMatchObject({ generation: 2, files: 201, filesRead: 2, changed: [] })
    // A 20+ MiB file with 8 bytes appended: its last chunk or two are new, not the file.
    expect(second.backup!.addedBytes).toBeLessThan(3 * MiB + 16 * MiB)
    const snaps2 = await Effect.runPromise(Store.snapshots(store))
    await Effect.runPromise(Store.restore(store, { snapshot: snaps2[1].id, output: out }))
    expect(describeTree(out)).toEqual(describeTree(src))
    Store.close(store)

    // Every table, dumped: no key bytes in any form.
    const dump = pg.run("pg_dump", ["-h", pg.host, "-p", String(pg.port), "-U", pg.username, "--data-only", pg.database])
    expect(dump).toContain("cage/backup-segment")
    for (const form of [key.toString("hex"), key.toString("base64url"), key.toString("base64")]) expect(dump).not.toContain(form)
  }, 600_000)

  it("cancel while the runners work: the job stops before its commit, no generation is written, the store is handed back, and prune removes what it stored", async () => {
    for (const r of runners.splice(0)) r.kill("SIGKILL")
    const slow = ["--segment-delay-ms", "1500"]
    await startRunner(slow)
    await startRunner(slow)
    const src = path.join(dir, "cancelled")
    fs.mkdirSync(src)
    for (let i = 0; i < 6; i++) writeRandom(path.join(src, `f${i}.bin`), 3 * MiB)
    const keyFile = path.join(dir, "cancel.key")
    fs.writeFileSync(keyFile, `cage-key-1:${crypto.randomBytes(32).toString("base64url")}\n`, { mode: 0o600 })
    const backups = path.join(dir, "cancel-backups")
    const client = Cluster.clientLayer({ host: pg.host, port: pg.port, username: pg.username, database: pg.database })
    const r = await Effect.runPromise(Effect.gen(function*() {
      const { id } = yield* Job.startBackup({ source: src, dir: backups, keyFile, segmentBytes: 4 * MiB })
      // Every segment pauses 1.5 s before it reads: the commit cannot have started yet.
      const cancelled = yield* Job.cancel(id)
      // The lock went at once (segments not done: the commit cannot be running); the job stops soon after.
      const heldAfterCancel = Store.heldBy(backups)
      for (;;) {
        const status = yield* Job.status(id)
        if (status.result !== undefined) return { id, cancelled, status, heldAfterCancel }
        yield* Effect.sleep(250)
      }
    }).pipe(Effect.provide(client), Effect.timeout("120 seconds")))
    expect(r.cancelled.outcome).toBe("cancelled")
    expect(r.heldAfterCancel).toBeUndefined()
    expect(r.status.result).toMatchObject({ ok: false, exitCode: 130 })
    expect(Store.committed(backups, r.id)).toBe(false)
    expect(fs.existsSync(path.join(backups, "lock"))).toBe(false)
    const key = Buffer.from(fs.readFileSync(keyFile, "utf8").trim().slice("cage-key-1:".length), "base64url")
    const store = await Effect.runPromise(Store.open({ dir: backups, key: { key } }))
    expect(await Effect.runPromise(Store.snapshots(store))).toEqual([])
    // Give any segment still running its 1.5 s pause and its read: it stores nothing once the job holds no lock.
    await new Promise((resolve) => setTimeout(resolve, 3000))
    // Those segments stopped, or wrote nothing: none is counted as failed.
    expect((await Effect.runPromise(Job.status(r.id).pipe(Effect.provide(client)))).failedCount).toBe(0)
    await Effect.runPromise(Store.prune(store))
    expect(fs.readdirSync(path.join(backups, "index"))).toEqual([])
    expect(fs.readdirSync(path.join(backups, "packs"), { recursive: true, withFileTypes: true }).filter((e) => e.isFile())).toEqual([])
    // The store is usable: a backup now writes generation 1.
    expect((await Effect.runPromise(Store.backup(store, { source: src }))).generation).toBe(1)
    Store.close(store)
  }, 180_000)
})
