// The database restarts mid-job (issue 16, "what happens when the database restarts"): a
// throwaway PostgreSQL stopped at once (as a crash would) while segments run, down for 3 s,
// then started again on the same port with the same data. Runners and the client retry
// their storage calls; the job completes, byte-identical to a single-machine encryption.
import { agcmEncrypt } from "@cage/agcm"
import { ChunkInput, ChunkOutput, runPipeline } from "@cage/core"
import { Effect } from "effect"
import type { ChildProcess } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Cluster, Job } from "../src/index.js"
import { type Postgres, startPostgres } from "../src/Postgres.js"
import { startRunner } from "./helpers.js"

let pg: Postgres
let dir: string
const runners: Array<ChildProcess> = []

beforeAll(async () => {
  pg = await startPostgres()
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "cage-cluster-restart-"))
}, 60_000)
afterAll(() => {
  for (const r of runners) r.kill("SIGKILL")
  pg?.stop()
  fs.rmSync(dir, { recursive: true, force: true })
})

describe("a database restart", () => {
  it("stops a job for a while, never loses it: once PostgreSQL is back the job completes, byte-identical", async () => {
    // Segments pause 0.5 s, so some are running when the database goes.
    for (let i = 0; i < 2; i++) await startRunner(pg, runners, ["--segment-delay-ms", "500"])
    const key = crypto.randomBytes(32)
    const keyFile = path.join(dir, "k.key")
    fs.writeFileSync(keyFile, `cage-key-1:${key.toString("base64url")}\n`, { mode: 0o600 })
    const source = path.join(dir, "a.bin")
    fs.writeFileSync(source, crypto.randomBytes(6 * 1024 * 1024 + 7))
    const reference = path.join(dir, "a.ref.agcm")
    const p = agcmEncrypt({ key, chunkSize: 65536, workers: 1 })
    await Effect.runPromise(Effect.gen(function*() {
      const input = yield* ChunkInput.fromFile(source)
      yield* runPipeline({ input, output: ChunkOutput.toFile(reference), pipeline: [p] }).pipe(Effect.ensuring(input.close()))
    }))
    const output = path.join(dir, "a.agcm")
    const client = Cluster.clientLayer({ host: pg.host, port: pg.port, username: pg.username, database: pg.database })
    const s = await Effect.runPromise(Effect.gen(function*() {
      const { id } = yield* Job.startEncrypt({ files: [{ source, output, resume: p.snapshot!() }], keyFile, segmentBytes: 512 * 1024 })
      for (;;) {
        const now = yield* Job.status(id)
        expect(now.result, "the job ended before the restart").toBeUndefined()
        if (now.done >= 3) break
        yield* Effect.sleep(100)
      }
      yield* Effect.promise(() => pg.restart(3000))
      return yield* Effect.gen(function*() {
        for (;;) {
          const now = yield* Job.status(id)
          if (now.result !== undefined) return now
          yield* Effect.sleep(500)
        }
      })
    }).pipe(Effect.provide(client), Effect.timeout("240 seconds")))
    expect(s.result).toEqual({ ok: true })
    expect(s.done).toBe(s.segments)
    expect(fs.existsSync(`${output}.partial`)).toBe(false)
    expect(fs.readFileSync(output).equals(fs.readFileSync(reference))).toBe(true)
  }, 300_000)
})
