/**
 * `cage encrypt` and `cage decrypt`: AGCM v2 (default) through the chunk engine, with
 * checkpoints and resume; `--backend age` drives the real age CLI (see @cage/age).
 *
 * @module
 */
import { agcmDecrypt, agcmEncrypt, decryptRangeTo, type HeaderDescription, inspect, MAX_HEADER_BYTES, type TransformsNotUndone } from "@cage/agcm"
import { type ChunkProcessor, ExitCode, exitCodeOf, type Progress, runPipeline, Size, stagesOf, stagesResume } from "@cage/core"
import { Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import * as ProgressBar from "../ProgressBar.js"
import * as fs from "node:fs"
import { describe, usage, UserFacing } from "../Errors.js"
import { checkpointPathFor, defaultWorkers, describeRun, note, openInput, openOutput, parseChunkSize, parseRange, printJson, type ReadFile, readFiles, resolveLimitRate, setInterruptNote } from "../Io.js"
import { keyMaterial, wipe } from "../Keys.js"
import { loadSettings, type Settings } from "../Config.js"
import { listProcessors, resolvePipeline } from "../Registry.js"
import { audited, auditLogFlag, openAudit } from "../AuditTrail.js"
import { commonFlags } from "../Flags.js"

/** Whether the file starts like an age file (binary or armored header). */
const looksLikeAge = (path: string): boolean => {
  try {
    const fd = fs.openSync(path, "r")
    try {
      const head = Buffer.alloc(64)
      const n = fs.readSync(fd, head, 0, 64, 0)
      const text = head.subarray(0, n).toString("latin1")
      return text.startsWith("age-encryption.org/") || text.trimStart().startsWith("-----BEGIN AGE ENCRYPTED FILE-----")
    } finally {
      fs.closeSync(fd)
    }
  } catch {
    return false // unreadable: the run reports it in its own terms
  }
}

/** Processors that ship with Cage: their failures are told without the processor's name. */
const BUILT_IN = new Set(["agcm-encrypt", "agcm-decrypt", "agcm-legacy-v1"])

/**
 * A built-in processor's failure in the user's terms: the input file first, the cause's own
 * message, and for a chunk of an AGCM file its byte range in that file (from its header).
 * `chunkSizeFrom` names where an encryption's chunk size came from (`--chunk-size 5`, or
 * `chunk_size in ./cage.toml`) for a chunk size the cipher refuses.
 */
const inUserTerms = (inputPath: string, chunkSizeFrom?: string, undoing?: UndoHint) => (error: unknown): unknown => {
  const e = error as { _tag?: unknown; processor?: unknown; phase?: unknown; chunk?: unknown; cause?: unknown; exitCode?: ExitCode }
  if (e?._tag !== "ProcessorError" || !BUILT_IN.has(String(e.processor))) return error
  const cause = describe(e.cause)
  const c = e.cause as { _tag?: unknown; reason?: unknown } | undefined
  if (undoing !== undefined && c?._tag === "TransformsNotUndone") {
    return new UserFacing({ detail: notUndone(inputPath, (e.cause as TransformsNotUndone).recorded, undoing), exitCode: ExitCode.Usage, cause: e.cause })
  }
  if (chunkSizeFrom !== undefined && e.phase === "init" && c?._tag === "AgcmUsageError" && c.reason === "ChunkSize") {
    return new UserFacing({ detail: `${chunkSizeFrom}: ${cause}`, exitCode: e.exitCode ?? ExitCode.Usage, cause: e.cause })
  }
  let where = ""
  if (typeof e.chunk === "number" && inputPath !== "-" && e.processor !== "agcm-encrypt") {
    const range = chunkRange(inputPath, e.chunk)
    if (range) where = ` (chunk ${e.chunk} is bytes ${range[0]} to ${range[1]} of ${inputPath})`
  }
  return new UserFacing({ detail: `${inputPath}: ${cause}${where}`, exitCode: e.exitCode ?? ExitCode.Failure, cause: e.cause })
}

/** What a decrypt's "undo these transforms" message draws on: where the pipeline is configured, and what undoes what. */
interface UndoHint {
  /** `./cage.toml` (the file that sets `[pipelines.decrypt]`), or where one would go. */
  readonly config: string
  /** The processors the project can name (built-ins and `plugins`), with what each undoes. */
  readonly processors: ReadonlyArray<{ readonly name: string; readonly undoes?: string | undefined }>
}

const undoHint = (settings: Settings): Effect.Effect<UndoHint> =>
  listProcessors(settings).pipe(
    Effect.orElseSucceed(() => []),
    Effect.map((rows) => ({
      config: settings.pipelines.value.decrypt ? settings.pipelines.source : (settings.files.at(-1) ?? "cage.toml"),
      processors: rows.map((r) => ({ name: r.name, undoes: r.capabilities.undoes }))
    }))
  )

/**
 * `x.agcm was made from the output of gzip (its header records it): ...`, naming the
 * `[pipelines.decrypt]` line that would undo it, or what is missing for one.
 */
const notUndone = (inputPath: string, recorded: ReadonlyArray<string>, hint: UndoHint): string => {
  const needed = [...recorded].reverse()
  const found = needed.map((t) => hint.processors.find((p) => p.undoes === t)?.name)
  const head = `${inputPath} holds the output of ${recorded.join(", then ")} (recorded in its header), so decrypting it alone would give those bytes, not your data`
  if (found.every((n) => n !== undefined)) {
    return `${head}: set processors = [${["agcm-decrypt", ...found].map((n) => JSON.stringify(n)).join(", ")}] under [pipelines.decrypt] in ${hint.config}`
  }
  const missing = needed.filter((_, j) => found[j] === undefined)
  return `${head}: no processor listed in plugins of ${hint.config} undoes ${missing.join(" or ")}; add the package that does to plugins, then name it after "agcm-decrypt" under [pipelines.decrypt]`
}

/** The AGCM header of the file at `path` and the file's size, or undefined when it has none or cannot be read (the run then says why). */
const headerOf = (path: string): (HeaderDescription & { readonly fileBytes: number }) | undefined => {
  try {
    const fd = fs.openSync(path, "r")
    try {
      const head = Buffer.alloc(MAX_HEADER_BYTES)
      const n = fs.readSync(fd, head, 0, head.length, 0)
      const h = Effect.runSync(Effect.option(inspect(head.subarray(0, n))))
      return h._tag === "None" ? undefined : { ...h.value, fileBytes: fs.fstatSync(fd).size }
    } finally {
      fs.closeSync(fd)
    }
  } catch {
    return undefined
  }
}

/** Byte range `[start, end)` of sealed chunk `index` in the AGCM file at `path`, from its header. */
const chunkRange = (path: string, index: number): readonly [number, number] | undefined => {
  const h = headerOf(path)
  if (h === undefined) return undefined
  const start = h.headerBytes + index * h.sealedChunkBytes
  return [start, Math.min(h.fileBytes, start + h.sealedChunkBytes)]
}

const runWithEngine = (o: {
  verb: string
  inputPath: string
  outputPath: string
  pipeline: ReadonlyArray<ChunkProcessor>
  settings: Settings
  limitRate: number | undefined
  /** Files the command reads (never its output, even with --force). */
  reads: ReadonlyArray<ReadFile>
} & Pick<CommonParsed, "noResume" | "noFsync" | "checkpointInterval" | "force" | "quiet" | "json" | "auditLog">) =>
  Effect.gen(function*() {
    const audit = yield* openAudit(o.auditLog, o.settings)
    const input = yield* openInput(o.inputPath)
    const output = yield* openOutput(o.outputPath, o.force, !o.noFsync, o.reads)
    const checkpoint = o.inputPath !== "-" && o.outputPath !== "-"
      ? { path: checkpointPathFor(o.outputPath), mode: o.noResume ? "fresh" as const : "resume" as const, intervalMs: o.checkpointInterval }
      : undefined
    // A pipeline cut into stages (a cipher after a plugin transform) resumes only when the
    // transforms before the cipher give the same bytes again (`deterministic`).
    const stages = stagesOf(o.pipeline)
    yield* setInterruptNote(stages.length > 1 && !(checkpoint && stagesResume(stages))
      ? `nothing was published; this pipeline re-chunks between ${stages.map((s) => s.map((p) => p.name).join(" → ")).join(" and ")}, and a processor before the cut is not deterministic, so running it again starts over`
      : checkpoint
      ? "run the same command again to resume"
      : `nothing was published; a run ${o.inputPath === "-" ? "reading standard input" : "writing standard output"} cannot be resumed`)
    // Said when the engine starts from the checkpoint (it reports bytes already done), not
    // before: a checkpoint it refuses is not resumed.
    const said = checkpoint && !o.noResume ? resumeNote(checkpoint.path, input.size) : undefined
    const bar = ProgressBar.terminal({ quiet: o.quiet, label: o.verb })
    const progress: Progress.ProgressReporter = {
      ...bar,
      start: (total, done) => {
        if (done > 0 && said !== undefined && !o.quiet) process.stderr.write(`cage: ${said}\n`)
        bar.start(total, done)
      }
    }
    const summary = yield* audited(audit, { operation: o.verb, strategy: "engine" }, runPipeline({
      input,
      output,
      pipeline: o.pipeline,
      checkpoint,
      limitRate: o.limitRate,
      progress
    })).pipe(Effect.ensuring(input.close()), Effect.ensuring(Effect.sync(() => audit?.close())))
    const peakRssBytes = process.resourceUsage().maxRSS * 1024
    if (o.json) yield* printJson({ operation: o.verb, input: o.inputPath, output: o.outputPath, ...summary, peakRssBytes })
    else yield* note(o.quiet, describeRun(o.verb, o.inputPath, o.outputPath, summary))
    return summary
  })

/**
 * `resuming from CKPT: chunk N, 63.20 MiB of 188.70 MiB (33%) already done`, read from the
 * checkpoint before the run (the engine still validates it and refuses a mismatch).
 */
const resumeNote = (path: string, inputSize: number | undefined): string | undefined => {
  let text: string
  try {
    text = fs.readFileSync(path, "utf8")
  } catch {
    return undefined
  }
  try {
    const c = JSON.parse(text) as { completed?: Array<[number, number]>; inputBytes?: number }
    const chunk = c.completed?.[0]?.[0] === 0 ? c.completed[0][1] : 0
    const done = typeof c.inputBytes === "number" ? c.inputBytes : 0
    const share = inputSize ? ` of ${Size.format(inputSize)} (${Math.floor((done / inputSize) * 100)}%)` : ""
    return `resuming from ${path}: at chunk ${chunk}, ${Size.format(done)}${share} already done`
  } catch {
    return `resuming from ${path}`
  }
}

/** What `commonFlags` and the audit flag parse into. */
type CommonParsed = Command.Command.Config.Infer<typeof commonFlags & { readonly auditLog: typeof auditLogFlag }>

/** `cage encrypt` handler. */
export const encrypt = (f: Command.Command.Config.Infer<typeof encryptFlags>) =>
  Effect.gen(function*() {
    const settings = yield* loadSettings
    const backend = Option.getOrElse(f.backend, () => settings.backend.value)
    yield* refuseJsonWithData(f, "ciphertext")
    if (backend !== "agcm") {
      if (Option.isSome(f.chunkSize)) return yield* usage("Conflict", `--chunk-size applies to AGCM; --backend ${backend} writes age's fixed 64 KiB chunks`)
      const { ageEncryptCommand } = yield* Effect.promise(() => import("./age.js"))
      return yield* ageEncryptCommand({ ...f, backend, settings })
    }
    if (f.armor) return yield* usage("Conflict", "-a/--armor is an age feature: add --backend age (AGCM output is binary)")
    if (f.recipient.length + f.recipientsFile.length > 0) return yield* usage("Conflict", "-r/-R recipients are an age feature: add --backend age (AGCM uses --key or --passphrase-file)")
    if (Option.isSome(f.strategy)) return yield* usage("Conflict", "--strategy applies to --backend age with a passphrase")
    const outputPath = Option.getOrElse(f.output, () => (f.input === "-" ? "-" : `${f.input}.agcm`))
    // The cipher owns the chunk size (its format's rule, its default): it is given only to it.
    const chunkSize = Option.isSome(f.chunkSize) ? yield* parseChunkSize(f.chunkSize.value) : settings.chunkSize.value
    const chunkSizeFrom = Option.isSome(f.chunkSize)
      ? `--chunk-size ${f.chunkSize.value}`
      : settings.chunkSize.value !== undefined ? `chunk_size in ${settings.chunkSize.source}` : "the default chunk size"

    const workers = Option.getOrUndefined(f.workers) ?? settings.workers.value ?? defaultWorkers(f.input, outputPath)
    const limitRate = yield* resolveLimitRate(f.limitRate, settings)
    const key = yield* keyMaterial(f, true)
    return yield* Effect.gen(function*() {
      const cipher = agcmEncrypt({ ...key, ...(chunkSize === undefined ? {} : { chunkSize }), workers })
      const pipeline = yield* resolvePipeline(settings, "encrypt", cipher)
      return yield* runWithEngine({ verb: "encrypt", inputPath: f.input, outputPath, pipeline, limitRate, reads: readFiles(f), noResume: f.noResume, noFsync: f.noFsync, checkpointInterval: f.checkpointInterval, force: f.force, quiet: f.quiet, json: f.json, auditLog: f.auditLog, settings })
    }).pipe(Effect.mapError(inUserTerms(f.input, chunkSizeFrom)), Effect.ensuring(wipe(key)))
  })

/**
 * Refuses `--json` when standard output carries the data (`-o -`, or input `-` without
 * `-o`), whatever the backend: the JSON line would follow the data (as `backup restore`).
 */
const refuseJsonWithData = (f: { readonly json: boolean; readonly input: string; readonly output: Option.Option<string> }, data: "ciphertext" | "plaintext") =>
  f.json && Option.getOrElse(f.output, () => (f.input === "-" ? "-" : "")) === "-"
    ? usage("Option", `standard output carries the ${data} (-o -${f.input === "-" && Option.isNone(f.output) ? ", the default for input -" : ""}): leave out --json, or write to a file with -o FILE`)
    : Effect.void

/** `cage decrypt` handler. */
export const decrypt = (f: Command.Command.Config.Infer<typeof decryptFlags>) =>
  Effect.gen(function*() {
    const settings = yield* loadSettings
    const backend = Option.getOrElse(f.backend, () => settings.backend.value)
    yield* refuseJsonWithData(f, "plaintext")
    if (backend !== "agcm") {
      if (f.legacyV1) return yield* usage("Conflict", `--legacy-v1 reads harpocrates AGCM v1 files, not age files (--backend ${backend})`)
      const { ageDecryptCommand } = yield* Effect.promise(() => import("./age.js"))
      return yield* ageDecryptCommand({ ...f, backend, settings })
    }
    if (f.identity.length > 0) return yield* usage("Conflict", "-i identities are an age feature: add --backend age (AGCM uses --key or --passphrase-file)")
    if (f.input !== "-" && looksLikeAge(f.input)) {
      return yield* usage("Input", `${f.input} is an age file, not AGCM: decrypt it with --backend age -i IDENTITY (or --passphrase-file)`)
    }
    const outputPath = Option.isSome(f.output)
      ? f.output.value
      : f.input === "-" ? "-" : f.input.endsWith(".agcm") ? f.input.slice(0, -".agcm".length) : undefined
    if (outputPath === undefined) return yield* usage("Output", `${f.input} does not end in .agcm: name the output with -o FILE (or -o - for stdout)`)
    const workers = Option.getOrUndefined(f.workers) ?? settings.workers.value ?? defaultWorkers(f.input, outputPath)
    const limitRate = yield* resolveLimitRate(f.limitRate, settings)
    const key = yield* keyMaterial(f, false)
    return yield* Effect.gen(function*() {
      if (Option.isSome(f.range)) {
        if (f.input === "-") return yield* usage("Conflict", "--range needs a file input (it seeks)")
        // A range reads only its own chunks; limit_rate from cage.toml does not apply to it.
        if (Option.isSome(f.limitRate)) return yield* usage("Conflict", "--limit-rate applies to whole-file decryption, not to --range (which reads only the chunks it needs)")
        const { start, end } = yield* parseRange(f.range.value)
        const recorded = headerOf(f.input)?.transforms
        if (recorded !== undefined) {
          return yield* usage("Input", `${f.input} holds the output of ${recorded.join(", then ")} (recorded in its header): --range would read bytes of that output, not of your data; decrypt the whole file`)
        }
        const output = yield* openOutput(outputPath, f.force, !f.noFsync, readFiles(f))
        yield* output.open()
        yield* decryptRangeTo(f.input, start, end, key, (bytes) => output.write([bytes])).pipe(
          Effect.onError(() => output.abort({ keepPartial: false })),
          // The cipher's own errors (wrong key, a failed chunk) name no file: name the input.
          Effect.mapError((e) =>
            e._tag === "IoError" ? e : new UserFacing({ detail: `${f.input}: ${describe(e)}`, exitCode: exitCodeOf(e), cause: e })
          )
        )
        yield* output.commit()
        if (f.json) yield* printJson({ operation: "decrypt-range", input: f.input, output: outputPath, start, end, bytes: end - start })
        else yield* note(f.quiet, `decrypted bytes ${start}:${end} of ${f.input} → ${outputPath}`)
        return
      }
      const cipher = agcmDecrypt({ ...key, workers, legacyV1: f.legacyV1 })
      const pipeline = yield* resolvePipeline(settings, "decrypt", cipher)
      yield* runWithEngine({ verb: "decrypt", inputPath: f.input, outputPath, pipeline, limitRate, reads: readFiles(f), noResume: f.noResume, noFsync: f.noFsync, checkpointInterval: f.checkpointInterval, force: f.force, quiet: f.quiet, json: f.json, auditLog: f.auditLog, settings })
    }).pipe(
      // The hint loads the project's plugins: only for the failure that needs it.
      Effect.catch((e) =>
        (e as { cause?: { _tag?: unknown } }).cause?._tag === "TransformsNotUndone"
          ? undoHint(settings).pipe(Effect.flatMap((hint) => Effect.fail(inUserTerms(f.input, undefined, hint)(e))))
          : Effect.fail(inUserTerms(f.input)(e))
      ),
      Effect.ensuring(wipe(key))
    )
  })

/** The age backend's flags (`cage encrypt --backend age`). */
const ageFlags = {
  recipient: Flag.String("recipient").pipe(Flag.withAlias("r"), Flag.withDescription("age backend: recipient (age1…, ssh-ed25519 …); repeatable"), Flag.atLeast(0)),
  recipientsFile: Flag.String("recipients-file").pipe(Flag.withAlias("R"), Flag.withDescription("age backend: file of recipients; repeatable"), Flag.atLeast(0)),
  armor: Flag.Boolean("armor").pipe(Flag.withAlias("a"), Flag.withDescription("age backend: ASCII armor"), Flag.withDefault(false)),
  strategy: Flag.Literals("strategy", ["pipe", "tempfile", "auto"] as const).pipe(Flag.withDescription("age backend with a passphrase: how data reaches age (default auto)"), Flag.optional)
}

/** `cage encrypt`'s flags. */
const encryptFlags = {
  ...commonFlags,
  ...ageFlags,
  auditLog: auditLogFlag,
  chunkSize: Flag.String("chunk-size").pipe(Flag.withDescription("Plaintext bytes per chunk: a power of two from 16KiB to 4MiB (default 64KiB)"), Flag.optional)
}

/** `cage decrypt`'s flags. */
const decryptFlags = {
  ...commonFlags,
  auditLog: auditLogFlag,
  range: Flag.String("range").pipe(Flag.withDescription("Only plaintext bytes START:END (END exclusive)"), Flag.optional),
  legacyV1: Flag.Boolean("legacy-v1").pipe(Flag.withDescription("Accept insecure harpocrates AGCM v1 input"), Flag.withDefault(false)),
  identity: Flag.String("identity").pipe(Flag.withAlias("i"), Flag.withDescription("age backend: identity file; repeatable"), Flag.atLeast(0))
}

/** `cage encrypt`. */
export const encryptCommand = Command.make("encrypt", encryptFlags, encrypt).pipe(Command.withDescription("Encrypt a file (AGCM v2 by default; resumable)"))

/** `cage decrypt`. */
export const decryptCommand = Command.make("decrypt", decryptFlags, decrypt).pipe(Command.withDescription("Decrypt a file (never publishes unauthenticated plaintext under the final name)"))
