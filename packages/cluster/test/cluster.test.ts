// A distributed encryption on a real cluster (issue 16, first cut): a throwaway PostgreSQL,
// two runner processes on loopback, a job submitted by this process as a client; the output
// is byte-identical to a single-machine encryption with the same key and salt, and no table
// holds the key.
import { agcmEncrypt } from "@cage/agcm"
import { ChunkInput, ChunkOutput, runPipeline } from "@cage/core"
import { Effect } from "effect"
import { EntityId, Sharding } from "effect/cluster"
import { SqlClient } from "effect/sql"
import type { ChildProcess } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Cluster, Job, Segment, Spread } from "../src/index.js"
import { type Postgres, startPostgres } from "../src/Postgres.js"
import * as Progress from "../src/Progress.js"
import { fail, stop } from "../src/Shared.js"
import { sha256, startRunner as startRunnerWith } from "./helpers.js"

const chunkSize = 64 * 1024
let pg: Postgres
let dir: string
const runners: Array<ChildProcess> = []


const startRunner = (extra: ReadonlyArray<string> = []) => startRunnerWith(pg, runners, extra)

/** A file, its single-machine encryption (the reference) and a job payload with the same salt. */
const prepare = async (name: string, size: number, segmentBytes: number) => {
  const key = crypto.randomBytes(32)
  const keyFile = path.join(dir, `${name}.key`)
  fs.writeFileSync(keyFile, `cage-key-1:${key.toString("base64url")}\n`, { mode: 0o600 })
  const source = path.join(dir, `${name}.bin`)
  fs.writeFileSync(source, crypto.randomBytes(size))
  const reference = path.join(dir, `${name}.ref.agcm`)
  const p = agcmEncrypt({ key, chunkSize, workers: 1 })
  await Effect.runPromise(Effect.gen(function*() {
    const input = yield* ChunkInput.fromFile(source)
    yield* runPipeline({ input, output: ChunkOutput.toFile(reference), pipeline: [p] }).pipe(Effect.ensuring(input.close()))
  }))
  const identity = await Effect.runPromise(ChunkInput.statIdentity(source))
  const output = path.join(dir, `${name}.agcm.partial`)
  const seal = await Effect.runPromise(Segment.startOutput({ source, size: identity.size, output, key: { key }, chunkSize, resume: p.snapshot!() }))
  const payload: Cluster.JobPayload = {
    job: `job-${crypto.randomUUID()}`,
    op: "encrypt",
    submittedAt: Date.now(),
    files: [{ source, identity, output, staged: seal.staged, headerBytes: seal.headerBytes, snapshot: seal.snapshot }],
    keyFile,
    chunkSize,
    segmentBytes
  }
  return { key, payload, output, reference }
}


const submit = (payload: Cluster.JobPayload) =>
  Effect.runPromise(Effect.flatMap(Cluster.submit(payload), (id) => Cluster.waitFor(id)).pipe(
    Effect.provide(Cluster.clientLayer({ host: pg.host, port: pg.port, username: pg.username, database: pg.database })),
    Effect.timeout("150 seconds")
  ))

beforeAll(async () => {
  pg = await startPostgres()
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "cage-cluster-job-"))
}, 60_000)
afterAll(async () => {
  for (const r of runners) r.kill("SIGKILL")
  pg?.stop()
  fs.rmSync(dir, { recursive: true, force: true })
})

describe("a job on two runners", () => {
  it("encrypts a file segment by segment, byte-identical to a single-machine run with the same key and salt; no table holds the key", async () => {
    await startRunner()
    await startRunner()
    const { key, payload, output, reference } = await prepare("a", 5 * 1024 * 1024 + 12345, 512 * 1024)
    const segments = await submit(payload)
    expect(segments).toBe(11)
    // Published under its final name once every segment was done: the partial name is gone.
    expect(fs.existsSync(output)).toBe(false)
    expect(fs.readFileSync(Cluster.finalName(output)).equals(fs.readFileSync(reference))).toBe(true)
    // Every table, dumped: no key bytes in any form.
    const dump = pg.run("pg_dump", ["-h", pg.host, "-p", String(pg.port), "-U", pg.username, "--data-only", pg.database])
    expect(dump).toContain(payload.job)
    for (const form of [key.toString("hex"), key.toString("base64url"), key.toString("base64")]) expect(dump).not.toContain(form)
  }, 180_000)

  it("spreads a job's segments evenly: 16 segments over the 2 runners, 8 on each, each on the runner its salt chose at submit", async () => {
    // The client places segments by the runners' shard assignment: wait until each of the
    // first test's 2 runners holds its 150 of the 300 shards (PostgreSQL advisory locks).
    const held = () => pg.run("psql", ["-h", pg.host, "-p", String(pg.port), "-U", pg.username, "-d", pg.database, "-Atc", "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 GROUP BY pid ORDER BY 1"]).trim()
    for (let waited = 0; held() !== "150\n150"; waited += 100) {
      expect(waited, `shard locks held: ${held()}`).toBeLessThan(60_000)
      await new Promise((r) => setTimeout(r, 100))
    }
    const { payload: planned, reference } = await prepare("spread", 16 * 256 * 1024 - 1, 256 * 1024)
    const source = planned.files[0].source
    const output = path.join(dir, "spread.out.agcm")
    const client = Cluster.clientLayer({ host: pg.host, port: pg.port, username: pg.username, database: pg.database })
    const r = await Effect.runPromise(Effect.gen(function*() {
      const { id, payload } = yield* Job.startEncrypt({ files: [{ source, output, resume: planned.files[0].snapshot }], keyFile: planned.keyFile, chunkSize, segmentBytes: 256 * 1024 })
      const segments = yield* Cluster.waitFor(id)
      // Where each segment should have run: its salted id's shard, and that shard's owner.
      const owners = (yield* Spread.shardOwners({ lockSeconds: Cluster.LOCK_SECONDS }))!
      const sharding = yield* Sharding.Sharding
      const predicted = Array.from({ length: segments }, (_, index) => {
        const entity = EntityId.make(Spread.executionIdOf(Cluster.SegmentWorkflow, Spread.segmentKey(payload.job, index, Spread.saltOf(payload.salts, index))))
        return owners.owner(sharding.getShardId(entity, "default").id)
      })
      const sql = yield* SqlClient.SqlClient
      const rows = yield* sql<{ segment: number; runner: string }>`SELECT segment, runner FROM cage_segments WHERE job_id = ${id} ORDER BY segment`
      return { salts: payload.salts, segments, predicted, ran: rows.map((x) => x.runner) }
    }).pipe(Effect.provide(client), Effect.timeout("120 seconds")))
    expect(r.segments).toBe(16)
    expect(r.salts).toMatch(/^[0-9a-z]{16}$/)
    expect(r.ran).toEqual(r.predicted)
    expect([...new Set(r.ran)].map((runner) => r.ran.filter((x) => x === runner).length)).toEqual([8, 8])
    expect(fs.readFileSync(output).equals(fs.readFileSync(reference))).toBe(true)
  }, 180_000)

  it("survives kill -9 of a runner at 3 early moments of 3 jobs (from before the first segment ends): each time another runner is started, the job completes, byte-identical", async () => {
    // Segments pause 1.5 s first, so the kills land while they run; a killed runner's shards
    // move once their locks expire (5 s); its unfinished segments run again elsewhere.
    // The first test's runners go: only these slow ones take part.
    for (const r of runners.splice(0)) r.kill("SIGKILL")
    const slow = ["--segment-delay-ms", "1500"]
    const live = [await startRunner(slow), await startRunner(slow), await startRunner(slow)]
    let x = 2024
    const next = (n: number) => ((x = (x * 1103515245 + 12345) >>> 0) % n)
    for (let round = 0; round < 3; round++) {
      const size = 1024 * 1024 + next(2 * 1024 * 1024)
      const { payload, output, reference } = await prepare(`k${round}`, size, 128 * 1024)
      const job = submit(payload)
      // A moment from 0.2 to 2.2 s in: before, while or after the first segments end.
      const wait = 200 + next(2000)
      await new Promise((r) => setTimeout(r, wait))
      const victim = live.splice(next(live.length), 1)[0]
      victim.kill("SIGKILL")
      live.push(await startRunner(slow))
      const done = await job
      expect(done, `round ${round}: killed at ${wait} ms`).toBe(Math.ceil((size + 1) / (128 * 1024)))
      expect(fs.existsSync(output)).toBe(false)
      expect(fs.readFileSync(Cluster.finalName(output)).equals(fs.readFileSync(reference)), `round ${round}`).toBe(true)
    }
  }, 300_000)

  it("a 2 GiB file on 3 runners, one kill -9ed at 5 seeded points of the job and another started: each job completes, SHA-256 equal to a single-machine run", async () => {
    for (const r of runners.splice(0)) r.kill("SIGKILL")
    const live = [await startRunner(), await startRunner(), await startRunner()]
    const size = 2 * 1024 ** 3
    const source = path.join(dir, "big.bin")
    const fd = fs.openSync(source, "w")
    for (let left = size; left > 0; left -= 4 << 20) fs.writeSync(fd, crypto.randomBytes(Math.min(left, 4 << 20)))
    fs.closeSync(fd)
    const key = crypto.randomBytes(32)
    const keyFile = path.join(dir, "big.key")
    fs.writeFileSync(keyFile, `cage-key-1:${key.toString("base64url")}\n`, { mode: 0o600 })
    // The reference: the single-machine engine; its salt is given to every job.
    const reference = path.join(dir, "big.ref.agcm")
    const p = agcmEncrypt({ key, chunkSize })
    await Effect.runPromise(Effect.gen(function*() {
      const input = yield* ChunkInput.fromFile(source)
      yield* runPipeline({ input, output: ChunkOutput.toFile(reference), pipeline: [p] }).pipe(Effect.ensuring(input.close()))
    }))
    const want = sha256(reference)
    fs.rmSync(reference)
    const client = Cluster.clientLayer({ host: pg.host, port: pg.port, username: pg.username, database: pg.database })
    let x = 16
    const next = (n: number) => ((x = (x * 1103515245 + 12345) >>> 0) % n)
    for (let round = 0; round < 5; round++) {
      const output = path.join(dir, `big-${round}.agcm`)
      const killed = await Effect.runPromise(Effect.gen(function*() {
        const { id } = yield* Job.startEncrypt({ files: [{ source, output, resume: p.snapshot!() }], keyFile })
        const segments = Cluster.planOf((yield* Job.payloadOf(id))).segments.length
        // Killed once `threshold` segments are done: from the first to the third-last.
        const threshold = 1 + next(segments - 3)
        for (;;) {
          const s = yield* Job.status(id)
          expect(s.result, `round ${round}: the job ended before the kill`).toBeUndefined()
          if (s.done >= threshold) break
          yield* Effect.sleep(50)
        }
        live.splice(next(live.length), 1)[0].kill("SIGKILL")
        live.push(yield* Effect.promise(() => startRunner()))
        yield* Cluster.waitFor(id)
        return { threshold, segments }
      }).pipe(Effect.provide(client), Effect.timeout("240 seconds")))
      expect(fs.existsSync(`${output}.partial`)).toBe(false)
      expect(sha256(output), `round ${round}: killed after ${killed.threshold}/${killed.segments} segments`).toBe(want)
      fs.rmSync(output)
    }
  }, 900_000)

  it("a segment that stopped because its job ended is recorded as stopped, not failed; an ended job's rate ends at its last segment done", async () => {
    const job = `job-${crypto.randomUUID()}`
    const r = await Effect.runPromise(Effect.gen(function*() {
      yield* Progress.tracked(job, 0, "r1", 10, Effect.succeed(1))
      yield* Effect.sleep(5)
      yield* Effect.exit(Progress.tracked(job, 1, "r1", 10, fail("segment 1: chunk 3 failed authentication", 3)))
      yield* Effect.exit(Progress.tracked(job, 2, "r2", 10, stop("segment 2: the job has ended; this segment writes nothing")))
      const sql = yield* SqlClient.SqlClient
      const times = yield* sql<{ segment: number; updated_at: string }>`SELECT segment, updated_at FROM cage_segments WHERE job_id = ${job} ORDER BY segment`
      const states = yield* sql<{ state: string }>`SELECT state FROM cage_segments WHERE job_id = ${job} ORDER BY segment`
      return { progress: yield* Progress.read(job), times: times.map((t) => Number(t.updated_at)), states: states.map((s) => s.state) }
    }).pipe(Effect.provide(Cluster.clientLayer({ host: pg.host, port: pg.port, username: pg.username, database: pg.database }))))
    expect(r.states).toEqual(["done", "failed", "stopped"])
    expect(r.progress.runners.get("r1")).toEqual({ running: 0, done: 1, bytes: 10, failed: 1, stopped: 0 })
    expect(r.progress.runners.get("r2")).toEqual({ running: 0, done: 0, bytes: 0, failed: 0, stopped: 1 })
    expect(r.progress.failed).toEqual([{ segment: 1, error: "segment 1: chunk 3 failed authentication" }])
    expect(r.times[2]).toBeGreaterThan(r.times[0])
    expect(r.progress.lastDone).toBe(r.times[0])
  }, 60_000)

  it("an OUT.partial someone else removes while the job runs fails the job, and the segment that found it gone counts as failed, not stopped", async () => {
    for (const r of runners.splice(0)) r.kill("SIGKILL")
    // Segments pause 1 s before their work: the file is gone by then, and no cancel asked anything.
    await startRunner(["--segment-delay-ms", "1000"])
    const { payload, output } = await prepare("removed", 1024 * 1024 + 5, 256 * 1024)
    const client = Cluster.clientLayer({ host: pg.host, port: pg.port, username: pg.username, database: pg.database })
    const s = await Effect.runPromise(Effect.gen(function*() {
      const id = yield* Cluster.submit(payload)
      fs.rmSync(output)
      for (;;) {
        const now = yield* Job.status(id)
        if (now.result !== undefined) return now
        yield* Effect.sleep(200)
      }
    }).pipe(Effect.provide(client), Effect.timeout("120 seconds")))
    expect(s.result?.ok).toBe(false)
    expect(s.failedCount).toBeGreaterThanOrEqual(1)
    expect(s.failed[0].error).toContain(`${output}: it is gone`)
    expect(s.failedCount + s.stoppedCount).toBeLessThanOrEqual(s.segments)
  }, 120_000)

  it("runners on one host split its cores: each segment's threads, unless --workers says", async () => {
    for (const r of runners.splice(0)) r.kill("SIGKILL")
    const ports = [] as Array<string>
    for (let i = 0; i < 2; i++) {
      const child = await startRunner()
      ports.push(child.spawnargs[child.spawnargs.indexOf("--listen") + 1])
    }
    const client = Cluster.clientLayer({ host: pg.host, port: pg.port, username: pg.username, database: pg.database })
    const r = await Effect.runPromise(Effect.gen(function*() {
      // Until both are in the runners table (the killed ones gone: their heartbeats stop).
      for (;;) {
        const up = (yield* Spread.shardOwners({ lockSeconds: Cluster.LOCK_SECONDS }))?.runners.map((x) => x.address) ?? []
        if (up.length === 2 && ports.every((p) => up.includes(p))) break
        yield* Effect.sleep(250)
      }
      return {
        shared: yield* Cluster.segmentWorkers({ listen: ports[0] }),
        given: yield* Cluster.segmentWorkers({ listen: ports[0], workers: 3 }),
        elsewhere: yield* Cluster.segmentWorkers({ listen: "192.0.2.1:7001" }),
        // A display name is not an address: without one, every core.
        named: yield* Cluster.segmentWorkers({ name: ports[0] })
      }
    }).pipe(Effect.provide(client), Effect.timeout("60 seconds")))
    expect(r).toEqual({ shared: Math.max(1, Math.floor(os.availableParallelism() / 2)), given: 3, elsewhere: os.availableParallelism(), named: undefined })
  }, 90_000)

  it("status says what runs where: each runner runs at most its --max-segments at once, and the rows add up to the job", async () => {
    for (const r of runners.splice(0)) r.kill("SIGKILL")
    // Slow segments (1 s each), so a poll sees them running; one runner takes one at a time.
    const slots = new Map<string, number>()
    for (const max of [1, 2]) {
      const child = await startRunner(["--segment-delay-ms", "1000", "--max-segments", String(max)])
      slots.set(child.spawnargs[child.spawnargs.indexOf("--listen") + 1], max)
    }
    const { payload, output, reference } = await prepare("slots", 1024 * 1024 + 5, 128 * 1024)
    const client = Cluster.clientLayer({ host: pg.host, port: pg.port, username: pg.username, database: pg.database })
    const seen = await Effect.runPromise(Effect.gen(function*() {
      const id = yield* Cluster.submit(payload)
      let most = 0
      for (;;) {
        const s = yield* Job.status(id)
        for (const r of s.runners) expect(r.running, `runner ${r.runner}`).toBeLessThanOrEqual(slots.get(r.runner)!)
        expect(s.running).toBeLessThanOrEqual(3)
        most = Math.max(most, s.running)
        if (s.result !== undefined) return { s, most }
        yield* Effect.sleep(100)
      }
    }).pipe(Effect.provide(client), Effect.timeout("120 seconds")))
    expect(seen.s.result).toEqual({ ok: true })
    expect(seen.most).toBeGreaterThan(0)
    expect(seen.s.running).toBe(0)
    expect(seen.s.done).toBe(9)
    expect(seen.s.runners.reduce((n, r) => n + r.segments, 0)).toBe(9)
    expect(seen.s.runners.reduce((n, r) => n + r.bytes, 0)).toBe(1024 * 1024 + 5)
    expect(fs.readFileSync(Cluster.finalName(output)).equals(fs.readFileSync(reference))).toBe(true)
  }, 180_000)
})
