/**
 * `cage json validate|plan|check-cuts|inspect`: StreamSweep over a file, in bounded memory.
 *
 * @module
 */
import { checkCuts, formatMetadata, inspect, plan, validate } from "@cage/streamsweep"
import { type ChunkInput, Size } from "@cage/core"
import { Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { usage } from "../Errors.js"
import { counted, openInput, printJson } from "../Io.js"

const file = Argument.String("file").pipe(Argument.withDescription("JSON, NDJSON/JSON Lines, or concatenated JSON values; - for standard input"))

/** Runs `f` over FILE, or standard input for `-` (as every cage command reads `-`). */
const over = <A, E>(path: string, f: (input: ChunkInput.ChunkInput) => Effect.Effect<A, E>) =>
  Effect.flatMap(openInput(path), (input) => f(input).pipe(Effect.ensuring(input.close())))
const json = Flag.Boolean("json").pipe(Flag.withDescription("Machine-readable JSON on stdout"), Flag.withDefault(false))
const maxDepth = Flag.Int("max-depth").pipe(Flag.withDescription("Nesting limit (default 1024)"), Flag.optional)
const out = (text: string) => Effect.sync(() => process.stdout.write(text.endsWith("\n") ? text : text + "\n"))

const validateCommand = Command.make("validate", {
  file,
  json,
  quiet: Flag.Boolean("quiet").pipe(Flag.withAlias("q"), Flag.withDescription("Print nothing when valid: the exit status says it (0 valid, 3 invalid)"), Flag.withDefault(false)),
  maxDepth,
  format: Flag.Literals("format", ["document", "sequence", "ndjson"] as const).pipe(Flag.withDescription("One document (default), concatenated values, or JSON Lines"), Flag.withDefault("document" as const))
}, (f) =>
  Effect.gen(function*() {
    const r = yield* over(f.file, (i) => validate(i, { format: f.format, maxDepth: Option.getOrUndefined(f.maxDepth) }))
    if (f.quiet && !f.json) return
    yield* f.json ? printJson(r) : out(`${f.file}: valid ${r.format} (${r.bytes} bytes, ${counted(r.values, "value")}, depth ${r.maxDepth})`)
  })).pipe(Command.withDescription("Validate RFC 8259 JSON in one streaming pass (exit 0 valid, 3 invalid with offset, line and column)"))

const planFormat = Flag.Literals("format", ["auto", "array", "ndjson", "sequence"] as const).pipe(Flag.withDefault("auto" as const))

const planCommand = Command.make("plan", {
  file,
  json,
  maxDepth,
  format: planFormat,
  targetSize: Flag.String("target-size").pipe(Flag.withDescription("About this many bytes per chunk (e.g. 64MiB)"), Flag.withDefault("64MiB"))
}, (f) =>
  Effect.gen(function*() {
    const targetBytes = Size.parse(f.targetSize)
    if (!targetBytes) return yield* usage("Option", `--target-size: "${f.targetSize}" is not a size`)
    const p = yield* over(f.file, (i) => plan(i, { targetBytes, format: f.format, maxDepth: Option.getOrUndefined(f.maxDepth) }))
    if (f.json) return yield* printJson(p)
    const lines = [`${f.file}: ${p.format}, ${p.bytes} bytes, ${counted(p.elements, "top-level element")}, ${counted(p.totalChunks, "chunk")} of about ${targetBytes} bytes`, "index\tstart\tend\tlength\telements"]
    for (const c of p.chunks) lines.push(`${c.index}\t${c.start}\t${c.end}\t${c.length}\t${(c as { elements?: number }).elements ?? ""}`)
    yield* out(lines.join("\n"))
  })).pipe(Command.withDescription("Chunk a top-level array, NDJSON or a value sequence only between whole elements"))

const checkCutsCommand = Command.make("check-cuts", {
  file,
  json,
  format: planFormat,
  at: Flag.String("at").pipe(Flag.withDescription("Comma-separated byte offsets (e.g. from cage chunk plan)"))
}, (f) =>
  Effect.gen(function*() {
    const offsets = f.at.split(",").map((s) => s.trim()).filter((s) => s !== "").map((s) => Size.parse(s))
    if (offsets.length === 0 || offsets.some((n) => n === undefined)) return yield* usage("Option", `--at: "${f.at}" is not a list of byte offsets`)
    const r = yield* over(f.file, (i) => checkCuts(i, offsets as Array<number>, { format: f.format }))
    if (f.json) yield* printJson(r)
    else {
      const lines = [`${f.file}: ${r.safe ? "every cut is safe" : counted(r.unsafe, "unsafe cut")}`]
      for (const c of r.cuts) lines.push(`  ${JSON.stringify(c)}`)
      yield* out(lines.join("\n"))
    }
    if (!r.safe) yield* Effect.sync(() => { process.exitCode = r.exitCode })
  })).pipe(Command.withDescription("Report every cut offset that falls inside a string, escape, number, literal or nested structure (exit 3 if any)"))

const inspectCommand = Command.make("inspect", {
  file,
  json,
  maxDepth,
  format: Flag.Literals("format", ["auto", "document", "array", "ndjson", "sequence"] as const).pipe(Flag.withDefault("auto" as const)),
  index: Flag.String("index").pipe(Flag.withDescription("Write top-level element offsets to this sidecar file"), Flag.optional)
}, (f) =>
  Effect.gen(function*() {
    const m = yield* over(f.file, (i) => inspect(i, { format: f.format as never, maxDepth: Option.getOrUndefined(f.maxDepth), indexPath: Option.getOrUndefined(f.index) }))
    yield* f.json ? printJson(m) : out(formatMetadata(m))
  })).pipe(Command.withDescription("Bounded forensic metadata: depth, type counts, key statistics, paths, largest tokens, anomalies"))

/** `cage json …` */
export const jsonCommand = Command.make("json").pipe(
  Command.withDescription("StreamSweep: streaming JSON validation, safe chunk boundaries, metadata"),
  Command.withSubcommands([validateCommand, planCommand, checkCutsCommand, inspectCommand])
)
