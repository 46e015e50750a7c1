// `pnpm demo:cluster` (issue 16): one encryption across a cluster of `cage cluster runner`
// processes on loopback, with a throwaway PostgreSQL as the cluster's storage.
//
// It starts PostgreSQL and 3 runners, submits a 512 MiB encryption in 16 MiB segments,
// kill -9s one runner once the first segment is done (while the others run), starts
// another, waits for the job, then checks the output's SHA-256 against a single-machine
// encryption of the same file with the same key and salt (Cage's engine, given the job's
// public header values), and that `cage decrypt` gives the input back. It prints
// `cluster demo: OK` and the job's figures, and stops everything it started. Exit 0 only if
// every step held; otherwise exit 1 naming the step.
//
// Needs the build (`bash scripts/setup.sh`). CAGE_DEMO_CLUSTER_MIB overrides the size (tests).
import { spawn, spawnSync } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)))
const { agcmEncrypt } = await import(path.join(root, "packages/agcm/dist/index.js"))
const { ChunkInput, ChunkOutput, runPipeline } = await import(path.join(root, "packages/core/dist/index.js"))
const { Postgres } = await import(path.join(root, "packages/cluster/dist/index.js"))
const { Effect } = await import(path.join(root, "packages/cluster/node_modules/effect/dist/index.js"))
const BIN = path.join(root, "apps/cli/dist/bin.js")

const MIB = 1024 * 1024
const size = Number(process.env.CAGE_DEMO_CLUSTER_MIB ?? 512) * MIB
const work = fs.mkdtempSync(path.join(os.tmpdir(), "cage-cluster-demo-"))
const runners = []
let pg

const step = (text) => process.stdout.write(`== ${text}\n`)
const cage = (args) => {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", maxBuffer: 1 << 26 })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}
const mustCage = (what, args) => {
  const r = cage(args)
  if (r.code !== 0) throw new Error(`${what}: cage ${args.join(" ")} exited ${r.code}: ${r.stderr.trim()}`)
  return r
}
const sha256 = (file) => {
  const h = createHash("sha256")
  const fd = fs.openSync(file, "r")
  const buf = Buffer.allocUnsafe(4 * MIB)
  for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) h.update(buf.subarray(0, n))
  fs.closeSync(fd)
  return h.digest("hex")
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

const startRunner = async (db) => {
  const port = await Postgres.freePort()
  const child = spawn(process.execPath, [BIN, "cluster", "runner", "--listen", `127.0.0.1:${port}`, "--db", db], { stdio: ["ignore", "ignore", "ignore"] })
  runners.push(child)
  return { child, port }
}

const cleanup = () => {
  for (const r of runners) r.kill("SIGKILL")
  try {
    pg?.stop()
  } catch {
    // Already stopped.
  }
  fs.rmSync(work, { recursive: true, force: true })
}

const main = async () => {
  step(`input: ${size / MIB} MiB of random bytes in ${work}`)
  const source = path.join(work, "input.bin")
  {
    const fd = fs.openSync(source, "w")
    for (let left = size; left > 0; left -= 4 * MIB) fs.writeSync(fd, randomBytes(Math.min(left, 4 * MIB)))
    fs.closeSync(fd)
  }
  const key = path.join(work, "demo.key")
  mustCage("keygen", ["keygen", "-o", key, "-q"])

  pg = await Postgres.startPostgres()
  const db = `postgres://${pg.username}@${pg.host}:${pg.port}/${pg.database}`
  step(`PostgreSQL ${db} (a throwaway server in a temp directory)`)
  const live = []
  for (let i = 0; i < 3; i++) live.push(await startRunner(db))
  step(`3 runners: ${live.map((r) => `127.0.0.1:${r.port}`).join(", ")}`)
  await sleep(2000)

  const output = path.join(work, "input.bin.agcm")
  const t0 = Date.now()
  const job = mustCage("submit", ["cluster", "submit", "encrypt", source, "-o", output, "--key", key, "--db", db, "--segment-size", "16MiB"]).stdout.trim()
  step(`submitted job ${job}`)

  // The kill lands while the job runs: once a segment is done and while others are not.
  // This process watches the job as a cluster client (every 50 ms), as `cage cluster status` does.
  const { Cluster, Job } = await import(path.join(root, "packages/cluster/dist/index.js"))
  const killedAt = await Effect.runPromise(Effect.gen(function*() {
    for (;;) {
      const s = yield* Job.status(job)
      if (s.result !== undefined) return yield* Effect.fail(new Error(`the job ended before a runner could be killed mid-job (${s.done}/${s.segments} segments done)`))
      if (s.done >= 1) {
        const victim = live.splice(1, 1)[0]
        victim.child.kill("SIGKILL")
        return { seconds: (Date.now() - t0) / 1000, done: s.done, segments: s.segments, port: victim.port }
      }
      yield* Effect.sleep(50)
    }
  }).pipe(Effect.provide(Cluster.clientLayer({ host: pg.host, port: pg.port, username: pg.username, database: pg.database }))))
  step(`kill -9 runner 127.0.0.1:${killedAt.port} at ${killedAt.seconds.toFixed(1)} s (${killedAt.done}/${killedAt.segments} segments done)`)
  const replacement = await startRunner(db)
  step(`started runner 127.0.0.1:${replacement.port}`)

  const waited = cage(["cluster", "status", job, "--db", db, "--wait", "--json"])
  if (waited.code !== 0) throw new Error(`the job failed (exit ${waited.code}): ${waited.stdout.trim()} ${waited.stderr.trim()}`)
  const seconds = (Date.now() - t0) / 1000
  const result = JSON.parse(waited.stdout)
  if (fs.existsSync(`${output}.partial`) || !fs.existsSync(output)) throw new Error(`the job did not publish ${output}`)
  step(`job done: ${result.segments} segments, ${seconds.toFixed(1)} s from submit (${(size / MIB / seconds).toFixed(0)} MiB/s, including the ~5 s before the dead runner's shards moved)`)

  // The same file through the single-machine engine (what `cage encrypt` runs), with the
  // same key and the job's salt: agcm-encrypt is handed the job's public header values as a
  // resumed run would be, from chunk 0.
  const reference = path.join(work, "reference.agcm")
  const keyBytes = Buffer.from(fs.readFileSync(key, "utf8").split("\n").find((l) => l.startsWith("cage-key-1:")).slice(11).trim(), "base64url")
  const t1 = Date.now()
  await Effect.runPromise(Effect.gen(function*() {
    const p = agcmEncrypt({ key: keyBytes, chunkSize: result.snapshot.chunkSize })
    const sameSalt = { ...p, init: (context) => p.init({ ...context, resume: result.snapshot }) }
    const input = yield* ChunkInput.fromFile(source)
    yield* runPipeline({ input, output: ChunkOutput.toFile(reference), pipeline: [sameSalt] }).pipe(Effect.ensuring(input.close()))
  }))
  const singleSeconds = (Date.now() - t1) / 1000
  keyBytes.fill(0)
  const [got, want] = [sha256(output), sha256(reference)]
  step(`SHA-256 of the job's output      ${got}`)
  step(`SHA-256 of a single-machine run  ${want} (same key and salt, ${singleSeconds.toFixed(1)} s)`)
  if (got !== want) throw new Error("the job's output differs from the single-machine encryption")
  const decrypted = path.join(work, "decrypted.bin")
  mustCage("decrypt", ["decrypt", output, "-o", decrypted, "--key", key, "-q"])
  if (sha256(decrypted) !== sha256(source)) throw new Error("cage decrypt of the job's output is not the input")
  step("cage decrypt of the job's output gives the input back (SHA-256)")
  const rows = (table) => pg.run("psql", ["-h", pg.host, "-p", String(pg.port), "-U", pg.username, "-Atc", `select count(*) from ${table}`, pg.database]).trim()
  const figures = {
    bytes: size,
    segments: result.segments,
    secondsFromSubmit: Number(seconds.toFixed(2)),
    killedAfterSeconds: Number(killedAt.seconds.toFixed(2)),
    segmentsDoneAtKill: killedAt.done,
    messages: Number(rows("cluster_messages")),
    replies: Number(rows("cluster_replies"))
  }
  process.stdout.write(`cluster demo: OK ${JSON.stringify(figures)}\n`)
}

main().then(
  () => cleanup(),
  (e) => {
    process.stderr.write(`== FAILED: ${e instanceof Error ? e.message : String(e)}\n`)
    cleanup()
    process.exit(1)
  }
)
