/**
 * The cluster commands' handlers (see `./cluster.ts`), bundled into `dist/cluster.cjs` only:
 * they import `@cage/cluster` (PostgreSQL client, cluster runtime).
 *
 * @module
 */
import * as Cluster from "@cage/cluster"
import { Size } from "@cage/core"
import { Effect, Layer, Option } from "effect"
import { loadSettings } from "../Config.js"
import { type ExitCode, UserFacing } from "../Errors.js"
import { changedNotStored, counted, note, printJson, setInterruptNote, skippedNotes } from "../Io.js"
import { terminal } from "../ProgressBar.js"
import type { ClusterHandlers } from "./cluster.js"

const load = Effect.succeed(Cluster)

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
  // Not silently ignored: `?sslmode=require` would otherwise connect without TLS.
  if (u.search !== "") return Effect.fail(new UserFacing({ detail: "--db: connection parameters (password, sslmode, …) are not supported yet: use postgres://USER@HOST:PORT/DATABASE", exitCode: 2 }))
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

/**
 * A database failure that ends a command (PostgreSQL not running there, no such database or
 * role), said in the user's terms, naming `--db`: exit 4. Effect's cluster raises it as a
 * defect (`SqlError`), which would otherwise be reported as a bug in cage.
 */
const databaseErrors = (url: string) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | UserFacing, R> =>
  Effect.catchCause(effect, (cause) => {
    const sql = cause.reasons
      .map((r) => r._tag === "Fail" ? r.error : r._tag === "Die" ? r.defect : undefined)
      .find((e) => (e as { _tag?: unknown } | undefined)?._tag === "SqlError") as { readonly message?: string; readonly cause?: { readonly message?: string; readonly code?: string } } | undefined
    if (sql === undefined) return Effect.failCause(cause) as Effect.Effect<never, E | UserFacing>
    // The driver's own reason is at the end of the cause chain (ECONNREFUSED, `database "x" does not exist`).
    let why: { readonly message?: string; readonly code?: string; readonly cause?: unknown } = sql
    while (typeof why.cause === "object" && why.cause !== null) why = why.cause
    const reason = why === sql ? "" : `: ${why.code !== undefined && !String(why.message).includes(why.code) ? `${why.code} ` : ""}${why.message ?? ""}`
    return Effect.fail(new UserFacing({ detail: `--db ${url}: cannot use the cluster's PostgreSQL (${sql.message ?? "SqlError"}${reason})`, exitCode: 4 }))
  })

/**
 * A runner that cannot listen on `--listen` (effect's `SocketServerError`, whose message is
 * only "Open"): the flag and the system's reason, exit 4.
 */
const listenErrors = (listen: string) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | UserFacing, R> =>
  Effect.catchCause(effect, (cause) => {
    const server = cause.reasons
      .map((r) => r._tag === "Fail" ? r.error : r._tag === "Die" ? r.defect : undefined)
      .find((e) => (e as { _tag?: unknown } | undefined)?._tag === "SocketServerError") as { readonly reason?: { readonly cause?: { readonly code?: string; readonly message?: string } } } | undefined
    if (server === undefined) return Effect.failCause(cause) as Effect.Effect<never, E | UserFacing>
    const why = server.reason?.cause
    const text = why?.code === "EADDRINUSE"
      ? "the address is in use (another runner, or another program, listens there): give another port"
      : why?.code === "EADDRNOTAVAIL"
      ? "not an address of this machine"
      : why?.code === "EACCES"
      ? "permission denied (ports below 1024 need privileges)"
      : why?.message ?? "cannot listen there"
    return Effect.fail(new UserFacing({ detail: `--listen ${listen}: ${text}`, exitCode: 4 }))
  })

/** Runs `effect` as a cluster client of `url` (it submits and reads; it runs no segment). */
const asClient = <A, E, R>(url: string, effect: (c: typeof Cluster) => Effect.Effect<A, E, R>): Effect.Effect<A, unknown> =>
  Effect.gen(function*() {
    const c = yield* load
    const options = yield* parseDb(url)
    return yield* (effect(c) as Effect.Effect<A, E, never>).pipe(Effect.provide(c.Cluster.clientLayer(options)), databaseErrors(url))
  })

/** Submits a job (`start`), then prints its id, or with `--wait` follows it to its end. */
const submit = (
  f: { readonly input: string; readonly output: string; readonly db: string; readonly segmentSize: Option.Option<string>; readonly wait: boolean; readonly json: boolean; readonly quiet: boolean },
  start: (c: typeof Cluster, segmentBytes: number | undefined) => Effect.Effect<{ readonly id: string; readonly found: Cluster.Job.Found }, unknown, unknown>
) =>
  asClient(f.db, (c) =>
    Effect.gen(function*() {
      const segmentBytes = Option.isSome(f.segmentSize) ? Size.parse(f.segmentSize.value) ?? -1 : undefined
      if (segmentBytes !== undefined && segmentBytes < 1) return yield* new UserFacing({ detail: `--segment-size ${Option.getOrElse(f.segmentSize, () => "")}: expected a size such as 64MiB`, exitCode: 2 })
      const started = yield* start(c, segmentBytes)
      // Said, not refused: the job is stored and starts once a runner is up.
      if ((yield* c.Job.runnersUp()) === 0) {
        yield* note(f.quiet || f.json, `no runner is up in this cluster: job ${started.id} starts once one is (cage cluster runner --listen HOST:PORT --db ${f.db}, on each machine)`)
      }
      if (!f.wait) {
        if (f.json) {
          const outputs = started.found.kind === "file" ? started.found.payload.files.map((x) => c.Cluster.finalName(x.output)) : [started.found.payload.dir]
          yield* printJson({ job: started.id, output: outputs.join(", "), outputs })
        }
        else yield* Effect.sync(() => process.stdout.write(`${started.id}\n`))
        return
      }
      yield* note(f.quiet || f.json, `job ${started.id}: ${f.input} → ${f.output}`)
      yield* waitAndReport(c, started.id, started.found, f)
    }) as Effect.Effect<void, unknown, never>
  )

/** Polls a job until it ends, with one progress bar over all runners; fails with the job's error. */
const waitAndReport = (c: typeof Cluster, id: string, found: Cluster.Job.Found, f: { readonly json: boolean; readonly quiet: boolean }) =>
  Effect.gen(function*() {
    // Ctrl-C stops the waiting, not the job: say how to follow or stop it.
    yield* setInterruptNote(`job ${id} goes on running on the cluster: cage cluster status ${id} --db URL shows it, cage cluster cancel ${id} --db URL stops it`)
    const bar = terminal({ quiet: f.quiet || f.json, label: "cluster" })
    const started = Date.now()
    let s = yield* c.Job.status(id, found)
    bar.start(s.bytes, 0)
    while (s.result === undefined) {
      // Every 250 ms for a live bar; every 25 ms once the job should end within the next
      // 250 ms at its rate so far (or every segment is done, when only the job's publish or
      // commit is left): a job's end is not held up by the wait. With 250 ms throughout, a
      // 1 GiB job on two runners took 1.25, 1.5 or 1.75 s, the client's steps.
      const elapsedMs = Date.now() - started
      const etaMs = s.doneBytes > 0 ? ((s.bytes - s.doneBytes) * elapsedMs) / s.doneBytes : Number.POSITIVE_INFINITY
      yield* Effect.sleep(s.doneBytes >= s.bytes || etaMs < 250 ? 25 : 250)
      s = yield* c.Job.status(id, found)
      bar.update(s.doneBytes, 0)
    }
    bar.stop()
    const result = s.result
    const seconds = (Date.now() - started) / 1000
    if (f.json) yield* printJson({ ...summary(s), seconds })
    if (!result.ok) return yield* new UserFacing({ detail: `job ${id} failed: ${result.error}; ${s.kind === "file" ? `nothing published under ${s.output}` : `no generation written to ${s.output}`}`, exitCode: result.exitCode as ExitCode })
    const b = s.backup
    if (b === undefined) {
      yield* note(f.quiet || f.json, `job ${id}: ${counted(s.segments, "segment")}, ${s.bytes} bytes in ${seconds.toFixed(1)} s; published ${s.output}`)
      return
    }
    yield* note(f.quiet || f.json, `job ${id}: stored generation ${b.generation} of ${s.source} in ${s.output}: ${counted(b.files, "file")} (${b.filesRead} read), ${Size.format(b.bytes)}; ${counted(b.chunks, "chunk")}, ${b.addedChunks} new (${Size.format(b.addedBytes)} of new data, ${Size.format(b.storedBytes)} written) in ${seconds.toFixed(1)} s on ${counted(s.runners.length, "runner")}`)
    yield* skippedNotes(f.quiet || f.json, s.source, b.skipped)
    yield* changedNotStored(b.generation, s.source, b.changed)
  })

/**
 * `cage cluster status` without a job: the 20 most recent jobs, newest first, one line each
 * (id, state, segments done, source → output), or with `--json` their summaries and the
 * cluster's job count.
 */
const listJobs = (c: typeof Cluster, f: { readonly json: boolean }) =>
  Effect.gen(function*() {
    const { jobs, unreadable, total } = yield* c.Job.recent(20)
    if (f.json) return yield* printJson({ jobs: jobs.map(summary), unreadable, total })
    const word = (s: Cluster.Job.JobStatus) => (s.result?.ok === false && stateOf(s) === "failed" ? `failed (exit ${s.result.exitCode})` : stateOf(s))
    const lines = jobs.map((s) => `${s.id}  ${word(s).padEnd(15)} ${`${s.done}/${s.segments}`.padStart(9)} segments  ${s.source} → ${s.output}`)
    const shown = jobs.length + unreadable.length
    const head = total === 0 ? "no job in this cluster" : total > shown ? `the ${shown} most recent of ${total} jobs (cage cluster status JOB for one):` : `${counted(total, "job")}, newest first (cage cluster status JOB for one):`
    // After the list: whatever this version cannot read (another version's job, or damaged).
    const others = unreadable.map((u) => `${u.id}  unreadable: ${u.detail.replace(`job ${u.id}: `, "")}`)
    yield* Effect.sync(() => process.stdout.write([head, ...lines, ...others].join("\n") + "\n"))
  })

/**
 * A job's failed segments, a line each (the first 20; a segment's error names the segment,
 * its chunks and its runner), then one line for the segments that stopped, or wrote
 * nothing, because the job was cancelled or had ended (by design: not failures).
 */
export const failures = (s: Cluster.Job.JobStatus) => {
  const more = s.failedCount > s.failed.length ? [`  … and ${s.failedCount - s.failed.length} more failed`] : []
  const cancelled = stateOf(s) === "cancelling" || stateOf(s) === "cancelled"
  const stopped = s.stoppedCount === 0 ? [] : [`  ${counted(s.stoppedCount, "segment")} ${cancelled ? "stopped by the cancel, or started after it and wrote nothing" : "stopped once the job had ended, or wrote nothing"}`]
  return [...s.failed.map((x) => `  failed: ${x.error.startsWith(`segment ${x.segment} (`) ? x.error : `segment ${x.segment} (${x.part}): ${x.error}`}`), ...more, ...stopped]
}

/**
 * `, N waiting` for a running job's segments neither done, running, failed nor stopped
 * (queued for a runner's slot); with none running, why: a runner that died holds its
 * segments until its shards move (about 5 s), or no runner is up. A job asked to stop:
 * they never start their work.
 */
export const waiting = (s: Cluster.Job.JobStatus) => {
  const n = s.segments - s.done - s.running - s.failedCount - s.stoppedCount
  if (n <= 0) return ""
  if (s.cancelRequested) return `, ${n} not started (cancelled: they write nothing)`
  return s.running > 0 ? `, ${n} waiting` : `, ${n} waiting for a runner (a dead runner's segments move to the others within about 5 s; with none up, they wait for one)`
}

/** A job's state in one word, as `status` prints it and `--json`'s `state` gives it (a cancelled job ends with exit code 130). */
const stateOf = (s: Cluster.Job.JobStatus): "running" | "cancelling" | "done" | "cancelled" | "failed" =>
  s.result === undefined ? (s.cancelRequested ? "cancelling" : "running") : s.result.ok ? "done" : s.result.exitCode === 130 ? "cancelled" : "failed"

const summary = (s: Cluster.Job.JobStatus) => ({
  job: s.id,
  kind: s.kind,
  source: s.source,
  output: s.output,
  bytes: s.bytes,
  segments: s.segments,
  done: s.done,
  running: s.running,
  failed: s.failed,
  failedCount: s.failedCount,
  stoppedCount: s.stoppedCount,
  runners: s.runners,
  bytesPerSecond: Math.round(s.bytesPerSecond),
  ...(s.etaSeconds !== undefined ? { etaSeconds: Math.round(s.etaSeconds) } : {}),
  state: stateOf(s),
  ...(s.result !== undefined && !s.result.ok ? { error: s.result.error, exitCode: s.result.exitCode } : {}),
  ...(s.kind === "file" ? { files: s.files, snapshot: s.snapshot } : {}),
  ...(s.backup !== undefined ? { backup: s.backup } : {})
})

/**
 * Refuses `-` (standard input or output) as a cluster job's input or output: the runners
 * read and write the job's files themselves, on a filesystem they all see, never this
 * process's streams.
 */
const noStream = (given: string, role: "input" | "-o") =>
  given === "-"
    ? Effect.fail(new UserFacing({ detail: `${role === "input" ? "- (standard input)" : "-o - (standard output)"}: a cluster job's runners read and write files on a filesystem they all see, not this command's ${role === "input" ? "input" : "output"} stream: give a file path${role === "input" ? "" : " (or use cage encrypt / cage decrypt, which write to -)"}`, exitCode: 2 }))
    : Effect.void

/** Each input with its output: `-o` with one input, else `defaultOf(input)`; `-o` with several inputs, and `-` at either end, are refused. */
const requests = (inputs: ReadonlyArray<string>, output: Option.Option<string>, defaultOf: (input: string) => Effect.Effect<string, UserFacing>) =>
  Option.isSome(output) && inputs.length > 1
    ? Effect.fail(new UserFacing({ detail: `-o names one output, but ${counted(inputs.length, "file")} were given: leave -o out (each FILE gets its own output)`, exitCode: 2 }))
    : Effect.forEach(inputs, (source) => noStream(source, "input").pipe(Effect.andThen(Option.isSome(output) ? noStream(output.value, "-o").pipe(Effect.as({ source, output: output.value })) : Effect.map(defaultOf(source), (o) => ({ source, output: o })))))

/** A job's files for the one-line note `submit --wait` prints. */
const describe = (files: ReadonlyArray<{ readonly source: string; readonly output: string }>) =>
  files.length === 1 ? { input: files[0].source, output: files[0].output } : { input: counted(files.length, "file"), output: `${files.map((x) => x.output).slice(0, 3).join(", ")}${files.length > 3 ? ", …" : ""}` }

/** A started file job as `submit` takes it. */
const asFile = <E, R>(e: Effect.Effect<{ readonly id: string; readonly payload: Cluster.Cluster.JobPayload }, E, R>) =>
  Effect.map(e, ({ id, payload }) => ({ id, found: { kind: "file", payload } as const }))

/** `cage cluster status JOB`: the job's segments, runners and result (`--wait`: followed to its end). */
const jobStatus = (f: { readonly db: string; readonly wait: boolean; readonly json: boolean; readonly quiet: boolean }, id: string) =>
  asClient(f.db, (c) =>
    Effect.gen(function*() {
      if (f.wait) return yield* waitAndReport(c, id, yield* c.Job.findJob(id), f)
      const s = yield* c.Job.status(id)
      if (f.json) return yield* printJson(summary(s))
      const b = s.backup
      const ended = s.result
      const state = {
        running: "running",
        cancelling: "cancelling (cancel asked it to stop; it stops once a runner takes the request up)",
        cancelled: "cancelled",
        // The failed segment's own line below says it already (the job fails with its error).
        failed: ended?.ok === false ? (s.failed.some((x) => x.error === ended.error) ? `failed (exit ${ended.exitCode})` : `failed: ${ended.error}`) : "failed",
        done: b === undefined ? "done, published" : `done, generation ${b.generation} stored${b.changed.length > 0 ? ` (${counted(b.changed.length, "changed file")} not stored)` : ""}`
      }[stateOf(s)]
      const lines = [
        `job ${s.id}: ${state}`,
        `  ${s.source} → ${s.output}`,
        `  segments ${s.done}/${s.segments} done (${(s.bytes === 0 ? 100 : (100 * s.doneBytes) / s.bytes).toFixed(1)}% of ${s.bytes} bytes)${s.result === undefined ? `, ${s.running} running${waiting(s)}` : ""}`,
        `  ${(s.bytesPerSecond / 1048576).toFixed(1)} MiB/s ${s.result === undefined ? "since submit" : "from submit to its last segment"}${s.etaSeconds !== undefined ? `, about ${Math.ceil(s.etaSeconds)} s left` : ""}`,
        ...s.runners.map((r) => `  runner ${r.runner}: ${counted(r.segments, "segment")} (${(r.bytes / 1048576).toFixed(1)} MiB)${s.result === undefined && r.running > 0 ? `, ${r.running} running` : ""}${r.failed > 0 ? `, ${r.failed} failed` : ""}`),
        ...failures(s)
      ]
      yield* Effect.sync(() => process.stdout.write(lines.join("\n") + "\n"))
    })
  )

/**
 * `cage cluster runner`'s `--max-segments` (at least 1) and `--workers` (1 to 256, the
 * cipher's own range: agcm would refuse others only once a segment runs) as the runner's
 * options; out of range: `UserFacing`, exit 2.
 */
export const runnerOptions = (f: { readonly maxSegments: Option.Option<number>; readonly workers: Option.Option<number> }): Effect.Effect<Cluster.Cluster.RunnerOptions, UserFacing> => {
  if (Option.isSome(f.maxSegments) && f.maxSegments.value < 1) return Effect.fail(new UserFacing({ detail: `--max-segments ${f.maxSegments.value}: at least 1`, exitCode: 2 }))
  if (Option.isSome(f.workers) && (f.workers.value < 1 || f.workers.value > 256)) return Effect.fail(new UserFacing({ detail: `--workers ${f.workers.value}: from 1 to 256`, exitCode: 2 }))
  return Effect.succeed({
    ...(Option.isSome(f.maxSegments) ? { maxSegments: f.maxSegments.value } : {}),
    ...(Option.isSome(f.workers) ? { workers: f.workers.value } : {})
  })
}

/** The handlers, doing the work in this process. */
export const clusterHandlers: ClusterHandlers = {
  runner: (f) =>
    Effect.gen(function*() {
      const c = yield* load
      const address = yield* parseListen(f.listen)
      const options = yield* parseDb(f.db)
      const runner = yield* runnerOptions(f)
      yield* setInterruptNote("this runner stopped; its shards and segments move to the other runners")
      process.stderr.write(`cage: cluster runner on ${f.listen}, database ${options.host}:${options.port}/${options.database}; Ctrl-C stops it (its segments move to the other runners)\n`)
      // Runs until interrupted: Ctrl-C (or SIGTERM) closes the layer, which hands its shards over.
      return yield* Layer.launch(c.Cluster.runnerLayer(address, options, runner)).pipe(databaseErrors(f.db), listenErrors(f.listen))
    }),
  submitEncrypt: (f) =>
    Effect.gen(function*() {
      const files = yield* requests(f.input, f.output, (input) => Effect.succeed(`${input}.agcm`))
      return yield* submit({ ...f, ...describe(files) }, (c, segmentBytes) => c.Job.startEncrypt({ files, keyFile: f.key, ...(segmentBytes ? { segmentBytes } : {}) }).pipe(asFile))
    }),
  submitDecrypt: (f) =>
    Effect.gen(function*() {
      const files = yield* requests(f.input, f.output, (input) =>
        input.endsWith(".agcm") && input.length > 5
          ? Effect.succeed(input.slice(0, -5))
          : Effect.fail(new UserFacing({ detail: `${input} does not end in .agcm: give -o OUT (with one input), or rename it`, exitCode: 2 })))
      return yield* submit({ ...f, ...describe(files) }, (c, segmentBytes) => c.Job.startDecrypt({ files, keyFile: f.key, ...(segmentBytes ? { segmentBytes } : {}) }).pipe(asFile))
    }),
  submitBackup: (f) =>
    Effect.gen(function*() {
      const settings = yield* loadSettings
      const dir = Option.getOrUndefined(f.dir) ?? settings.backupDir.value ?? ".cage-backups"
      yield* noStream(f.input, "input")
      return yield* submit({ ...f, output: dir }, (c, segmentBytes) =>
        c.Job.startBackup({ source: f.input, dir, keyFile: f.key, rehash: f.rehash, ...(segmentBytes ? { segmentBytes } : {}) }).pipe(
          Effect.map(({ id, payload }) => ({ id, found: { kind: "backup", payload } as const }))
        ))
    }),
  status: (f) => {
    if (Option.isSome(f.job)) return jobStatus(f, f.job.value)
    return f.wait
      ? Effect.fail(new UserFacing({ detail: "--wait follows one job: give its id (cage cluster status JOB --wait)", exitCode: 2 }))
      : asClient(f.db, (c) => listJobs(c, f))
  },
  cancel: (f) =>
    asClient(f.db, (c) =>
      Effect.gen(function*() {
        const r = yield* c.Job.cancel(f.job)
        const held = r.kind === "file" ? "its staged outputs" : "the backup store"
        const text = r.outcome === "finished"
          ? `job ${f.job} had already ${r.kind === "file" ? "published its outputs" : "written its generation"} when it stopped: nothing cancelled`
          : r.outcome === "pending"
          ? `job ${f.job} is asked to stop, but has not stopped yet (its shard may be moving to another runner): ${held} stay until it has; run cage cluster cancel ${f.job} again then`
          : r.outcome === "released"
          ? `job ${f.job} had stopped; ${r.removed !== undefined ? `${r.removed} removed` : "the backup store it held is handed back"}`
          : r.removed !== undefined
          ? `job ${f.job} cancelled; ${r.removed} removed, nothing published`
          : `job ${f.job} cancelled; no generation written (cage backup prune removes what its segments stored)`
        yield* note(f.quiet, text)
      })
    )
}
