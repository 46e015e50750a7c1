/**
 * `cage cluster runner|submit|status|cancel`: one job across many machines (issue 16), on
 * Effect Cluster with PostgreSQL (`@cage/cluster`). `--db` names the cluster's database as
 * `postgres://USER@HOST:PORT/DATABASE`; a password never goes on the command line (use the
 * server's trust/peer rules for local use; password support is not built yet).
 *
 * `@cage/cluster` (the PostgreSQL client, the cluster runtime) is imported only when a
 * cluster command runs: every other command starts without it.
 *
 * @module
 */
import { Size } from "@cage/core"
import { Effect, Layer, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { UserFacing } from "../Errors.js"
import { note, printJson } from "../Io.js"
import { terminal } from "../ProgressBar.js"

const load = Effect.promise(() => import("@cage/cluster"))

/** `postgres://USER@HOST:PORT/DATABASE` → PgClient options; a password in it is refused. */
const parseDb = (url: string) => {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    return Effect.fail(new UserFacing({ detail: `--db ${url}: not a URL (postgres://USER@HOST:PORT/DATABASE)`, exitCode: 2 }))
  }
  if (u.protocol !== "postgres:" && u.protocol !== "postgresql:") return Effect.fail(new UserFacing({ detail: `--db ${url}: expected postgres://USER@HOST:PORT/DATABASE`, exitCode: 2 }))
  if (u.password !== "") return Effect.fail(new UserFacing({ detail: "--db: a password on the command line is visible to every user of this machine (ps); none is accepted", exitCode: 2 }))
  return Effect.succeed({
    host: u.hostname || "127.0.0.1",
    port: u.port === "" ? 5432 : Number(u.port),
    username: decodeURIComponent(u.username || "postgres"),
    database: decodeURIComponent(u.pathname.replace(/^\//, "") || "postgres")
  })
}

const parseListen = (text: string) => {
  const m = /^(.+):(\d{1,5})$/.exec(text)
  return m === null || Number(m[2]) > 65535
    ? Effect.fail(new UserFacing({ detail: `--listen ${text}: expected HOST:PORT (the address other runners reach this one at)`, exitCode: 2 }))
    : Effect.succeed({ host: m[1], port: Number(m[2]) })
}

const db = Flag.String("db").pipe(Flag.withDescription("The cluster's PostgreSQL: postgres://USER@HOST:PORT/DATABASE (no password)"))
const json = Flag.Boolean("json").pipe(Flag.withDescription("Machine-readable JSON on stdout"), Flag.withDefault(false))
const quiet = Flag.Boolean("quiet").pipe(Flag.withAlias("q"), Flag.withDescription("No progress bar or notes"), Flag.withDefault(false))

/** Runs `effect` as a cluster client of `url` (it submits and reads; it runs no segment). */
const asClient = <A, E, R>(url: string, effect: (c: typeof import("@cage/cluster")) => Effect.Effect<A, E, R>): Effect.Effect<A, unknown> =>
  Effect.gen(function*() {
    const c = yield* load
    const options = yield* parseDb(url)
    return yield* (effect(c) as Effect.Effect<A, E, never>).pipe(Effect.provide(c.Cluster.clientLayer(options)))
  })

const runnerCommand = Command.make("runner", {
  listen: Flag.String("listen").pipe(Flag.withDescription("HOST:PORT this runner listens on; other runners reach it there")),
  maxSegments: Flag.Int("max-segments").pipe(Flag.withDescription("Segments this runner works on at once (default: its cores); bounds its memory"), Flag.optional),
  db
}, (f): Effect.Effect<void, unknown> =>
  Effect.gen(function*() {
    const c = yield* load
    const address = yield* parseListen(f.listen)
    const options = yield* parseDb(f.db)
    process.stderr.write(`cage: cluster runner on ${f.listen}, database ${options.host}:${options.port}/${options.database}; Ctrl-C stops it (its segments move to the other runners)\n`)
    // Runs until interrupted: Ctrl-C (or SIGTERM) closes the layer, which hands its shards over.
    if (Option.isSome(f.maxSegments) && f.maxSegments.value < 1) return yield* new UserFacing({ detail: `--max-segments ${f.maxSegments.value}: at least 1`, exitCode: 2 })
    return yield* Layer.launch(c.Cluster.runnerLayer(address, options, Option.isSome(f.maxSegments) ? { maxSegments: f.maxSegments.value } : {}))
  })
).pipe(Command.withDescription("Run segments of cluster jobs on this machine until Ctrl-C"))

const submitFlags = {
  key: Flag.String("key").pipe(Flag.withDescription("Key file: the same path on every runner (each runner reads it itself; the key never enters the database)")),
  segmentSize: Flag.String("segment-size").pipe(Flag.withDescription("Bytes per segment, one activity each (default 64MiB)"), Flag.optional),
  db,
  wait: Flag.Boolean("wait").pipe(Flag.withDescription("Show the job's progress and exit with its exit code"), Flag.withDefault(false)),
  json,
  quiet
}

/** Submits a job (`start`), then prints its id, or with `--wait` follows it to its end. */
const submit = (
  f: { readonly input: string; readonly output: string; readonly db: string; readonly segmentSize: Option.Option<string>; readonly wait: boolean; readonly json: boolean; readonly quiet: boolean },
  start: (c: typeof import("@cage/cluster"), segmentBytes: number | undefined) => Effect.Effect<{ readonly id: string; readonly payload: import("@cage/cluster").Cluster.JobPayload }, unknown, unknown>
) =>
  asClient(f.db, (c) =>
    Effect.gen(function*() {
      const segmentBytes = Option.isSome(f.segmentSize) ? Size.parse(f.segmentSize.value) ?? -1 : undefined
      if (segmentBytes !== undefined && segmentBytes < 1) return yield* new UserFacing({ detail: `--segment-size ${Option.getOrElse(f.segmentSize, () => "")}: expected a size such as 64MiB`, exitCode: 2 })
      const started = yield* start(c, segmentBytes)
      if (!f.wait) {
        if (f.json) yield* printJson({ job: started.id, output: c.Cluster.finalName(started.payload.output) })
        else yield* Effect.sync(() => process.stdout.write(`${started.id}\n`))
        return
      }
      yield* note(f.quiet || f.json, `job ${started.id}: ${f.input} → ${f.output}`)
      yield* waitAndReport(c, started.id, started.payload, f)
    }) as Effect.Effect<void, unknown, never>
  )

const submitEncrypt = Command.make("encrypt", {
  input: Argument.String("input").pipe(Argument.withDescription("File to encrypt, on a filesystem every runner sees")),
  output: Flag.String("output").pipe(Flag.withAlias("o"), Flag.withDescription("Output file (default INPUT.agcm); staged as OUT.partial, never replaces a file"), Flag.optional),
  ...submitFlags
}, (f) => {
  const output = Option.getOrElse(f.output, () => `${f.input}.agcm`)
  return submit({ ...f, output }, (c, segmentBytes) => c.Job.startEncrypt({ source: f.input, output, keyFile: f.key, ...(segmentBytes ? { segmentBytes } : {}) }))
}).pipe(Command.withDescription("Encrypt a file across the cluster's runners (AGCM v2, byte-identical to cage encrypt)"))

const submitDecrypt = Command.make("decrypt", {
  input: Argument.String("input").pipe(Argument.withDescription("AGCM v2 file to decrypt, on a filesystem every runner sees")),
  output: Flag.String("output").pipe(Flag.withAlias("o"), Flag.withDescription("Output file; staged as OUT.partial (0600), published only once every chunk authenticated")),
  ...submitFlags
}, (f) => submit(f, (c, segmentBytes) => c.Job.startDecrypt({ source: f.input, output: f.output, keyFile: f.key, ...(segmentBytes ? { segmentBytes } : {}) }))).pipe(
  Command.withDescription("Decrypt an AGCM file across the cluster's runners (a damaged chunk fails the job, naming it; nothing is published)")
)

/** Polls a job until it ends, with one progress bar over all runners; fails with the job's error. */
const waitAndReport = (c: typeof import("@cage/cluster"), id: string, payload: import("@cage/cluster").Cluster.JobPayload, f: { readonly json: boolean; readonly quiet: boolean }) =>
  Effect.gen(function*() {
    const bar = terminal({ quiet: f.quiet || f.json, label: "cluster" })
    const started = Date.now()
    bar.start(payload.identity.size, 0)
    let s: import("@cage/cluster").Job.JobStatus
    for (;;) {
      s = yield* c.Job.status(id, payload)
      bar.update(s.doneBytes, 0)
      if (s.result !== undefined) break
      yield* Effect.sleep(500)
    }
    bar.stop()
    const seconds = (Date.now() - started) / 1000
    if (f.json) yield* printJson({ ...summary(s), seconds })
    if (s.result.ok) {
      yield* note(f.quiet || f.json, `job ${id}: ${s.segments} segments, ${s.bytes} bytes in ${seconds.toFixed(1)} s; published ${s.output}`)
      return
    }
    return yield* new UserFacing({ detail: `job ${id} failed: ${s.result.error}; nothing published under ${s.output}`, exitCode: 3 })
  })

const summary = (s: import("@cage/cluster").Job.JobStatus) => ({
  job: s.id,
  source: s.source,
  output: s.output,
  bytes: s.bytes,
  segments: s.segments,
  done: s.done,
  failed: s.failed,
  state: s.result === undefined ? "running" : s.result.ok ? "done" : "failed",
  ...(s.result !== undefined && !s.result.ok ? { error: s.result.error } : {}),
  snapshot: s.snapshot
})

const statusCommand = Command.make("status", {
  job: Argument.String("job").pipe(Argument.withDescription("Job id (as submit printed it)")),
  db,
  wait: Flag.Boolean("wait").pipe(Flag.withDescription("Show the job's progress until it ends and exit with its exit code"), Flag.withDefault(false)),
  json,
  quiet
}, (f) =>
  asClient(f.db, (c) =>
    Effect.gen(function*() {
      if (f.wait) return yield* waitAndReport(c, f.job, yield* c.Job.payloadOf(f.job), f)
      const s = yield* c.Job.status(f.job)
      if (f.json) return yield* printJson(summary(s))
      const state = s.result === undefined ? "running" : s.result.ok ? "done, published" : `failed: ${s.result.error}`
      const lines = [
        `job ${s.id}: ${state}`,
        `  ${s.source} → ${s.output}`,
        `  segments ${s.done}/${s.segments} done (${(s.bytes === 0 ? 100 : (100 * s.doneBytes) / s.bytes).toFixed(1)}% of ${s.bytes} bytes)`,
        ...s.failed.map((x) => `  segment ${x.segment} (chunks ${x.chunks}) failed: ${x.error}`)
      ]
      yield* Effect.sync(() => process.stdout.write(lines.join("\n") + "\n"))
    })
  )
).pipe(Command.withDescription("A job's segments done and failed, and its result"))

const cancelCommand = Command.make("cancel", {
  job: Argument.String("job").pipe(Argument.withDescription("Job id")),
  db,
  quiet
}, (f) =>
  asClient(f.db, (c) =>
    Effect.gen(function*() {
      const p = yield* c.Job.cancel(f.job)
      yield* note(f.quiet, `job ${f.job} cancelled; ${p.output} removed, nothing published`)
    })
  )
).pipe(Command.withDescription("Stop a job; its staged output is removed"))

/** `cage cluster …` */
export const clusterCommand = Command.make("cluster").pipe(
  Command.withDescription("One job across many machines (Effect Cluster on PostgreSQL)"),
  Command.withSubcommands([
    runnerCommand,
    Command.make("submit").pipe(Command.withDescription("Start a job on the cluster"), Command.withSubcommands([submitEncrypt, submitDecrypt])),
    statusCommand,
    cancelCommand
  ])
)
