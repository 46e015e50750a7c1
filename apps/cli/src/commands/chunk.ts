/**
 * `cage chunk plan` and `cage chunk inspect`.
 *
 * @module
 */
import { encryptFraming, inspect as inspectAgcm, isAgcm } from "@cage/agcm"
import { Checkpoint, ChunkSpec, fromSystemError, Size } from "@cage/core"
import { Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as fs from "node:fs"
import { usage, UserFacing } from "../Errors.js"
import { jsonFlag } from "../Flags.js"
import { counted, parseChunkSize, printJson } from "../Io.js"

const statSize = (path: string) =>
  Effect.tryPromise({ try: () => fs.promises.stat(path), catch: (e) => fromSystemError("stat", path, e) }).pipe(
    Effect.flatMap((st) => (st.isFile() ? Effect.succeed(st.size) : usage("Input", `${path} is not a regular file`)))
  )

/** Prints the chunk plan of a file: reads no data, only its size. */
export const plan = (f: { input: string; chunkSize: Option.Option<string>; json: boolean; limit: number }) =>
  Effect.gen(function*() {
    const size = yield* statSize(f.input)
    const asked = Option.isSome(f.chunkSize) ? yield* parseChunkSize(f.chunkSize.value) : undefined
    // The plan `cage encrypt` runs, so AGCM owns the size (its rule, its default) and its
    // framing ends every file with a short final chunk, empty when the size is a multiple
    // of the chunk size (C2SP chunked encryption).
    const framing = yield* encryptFraming(asked).pipe(
      Effect.mapError((e) => new UserFacing({ detail: `--chunk-size ${Option.getOrElse(f.chunkSize, () => "")}: ${e.message}`, exitCode: e.exitCode, cause: e }))
    )
    const cs = framing.chunkBytes
    const p = ChunkSpec.planRegion(size, framing)
    if (f.json) {
      return yield* printJson({ input: f.input, size, chunkSize: cs, totalChunks: p.totalChunks, chunks: Array.from(p.chunks(0, f.limit > 0 ? f.limit : p.totalChunks)) })
    }
    const lines = [`${f.input}: ${size} bytes (${Size.format(size)}) in ${counted(p.totalChunks, "chunk")} of ${cs} bytes (${Size.format(cs)})`, "index\tstart\tend\tlength"]
    const shown = f.limit > 0 ? Math.min(f.limit, p.totalChunks) : p.totalChunks
    for (const c of p.chunks(0, shown)) lines.push(`${c.index}\t${c.start}\t${c.end}\t${c.length}${c.final ? "\tfinal" : ""}`)
    if (shown < p.totalChunks) lines.push(`… ${p.totalChunks - shown} more (--limit 0 shows all)`)
    yield* Effect.sync(() => process.stdout.write(lines.join("\n") + "\n"))
  })

/** Describes an AGCM header or a Cage checkpoint. */
export const inspect = (f: { file: string; json: boolean }) =>
  Effect.gen(function*() {
    const head = yield* Effect.tryPromise({
      try: async () => {
        const h = await fs.promises.open(f.file, "r")
        try {
          const b = Buffer.alloc(4096)
          const { bytesRead } = await h.read(b, 0, b.length, 0)
          return b.subarray(0, bytesRead)
        } finally {
          await h.close()
        }
      },
      catch: (e) => fromSystemError("read", f.file, e)
    })
    if (isAgcm(head)) {
      const d = yield* inspectAgcm(head)
      return yield* f.json ? printJson({ file: f.file, kind: "agcm", ...d }) : Effect.sync(() => process.stdout.write(`${f.file}: AGCM\n${Object.entries(d).map(([k, v]) => `  ${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join("\n")}\n`))
    }
    if (!head.toString("utf8").includes('"cage-checkpoint"')) {
      return yield* usage("Input", `${f.file}: neither an AGCM file nor a Cage checkpoint`)
    }
    const c = yield* Checkpoint.makeFileStore().load(f.file)
    if (Option.isSome(c)) {
      const cp = c.value
      const summary = {
        file: f.file,
        kind: "checkpoint",
        source: cp.source,
        output: cp.output,
        chunkBytes: cp.chunkBytes,
        pipeline: cp.pipeline.map((p) => `${p.name}@${p.version}`),
        completedChunks: cp.completed,
        outputBytes: cp.outputBytes,
        inputBytes: cp.inputBytes,
        updatedAt: cp.updatedAt
      }
      return yield* f.json ? printJson(summary) : Effect.sync(() => process.stdout.write(`${f.file}: Cage checkpoint\n${Object.entries(summary).slice(2).map(([k, v]) => `  ${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join("\n")}\n`))
    }
    return yield* usage("Input", `${f.file}: neither an AGCM file nor a Cage checkpoint`)
  })

/** `cage chunk plan|inspect`. */
export const chunkCommand = Command.make("chunk").pipe(
  Command.withDescription("Chunk plans and file inspection"),
  Command.withSubcommands([
    Command.make("plan", {
      input: Argument.String("input"),
      chunkSize: Flag.String("chunk-size").pipe(Flag.withDescription("Chunk size, as cage encrypt takes it: a power of two from 16KiB to 4MiB (default 64KiB)"), Flag.optional),
      limit: Flag.Int("limit").pipe(Flag.withDescription("Chunks to list (0 = all)"), Flag.withDefault(20)),
      json: jsonFlag
    }, plan).pipe(Command.withDescription("Print the chunk plan of a file (reads no data)")),
    Command.make("inspect", { file: Argument.String("file"), json: jsonFlag }, inspect).pipe(Command.withDescription("Describe an AGCM header or a checkpoint"))
  ])
)
