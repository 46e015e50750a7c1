/**
 * Sources, sinks and printing shared by the CLI commands.
 *
 * @module
 */
import { ChunkInput, ChunkOutput, ExitCode, fromSystemError, type IoError, type RunSummary, Size, type UsageError } from "@cage/core"
import { Effect, Option } from "effect"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import * as v8 from "node:v8"
import type { Settings } from "./Config.js"
import { markJsonPrinted, usage, UserFacing } from "./Errors.js"

let interruptNoteText = "nothing was published"

/**
 * What the line printed on an interruption says can be done next (set by the command that
 * knows: a checkpointed run can be resumed, a run on standard input or output cannot).
 */
export const interruptNote = () => interruptNoteText
export const setInterruptNote = (text: string) => Effect.sync(() => {
  interruptNoteText = text
})

/** The kind of file behind a standard descriptor, `undefined` when it cannot be told. */
const kindOf = (fd: number): "file" | "device" | "other" | undefined => {
  try {
    const st = fs.fstatSync(fd)
    return st.isFile() ? "file" : st.isCharacterDevice() ? "device" : "other"
  } catch {
    return undefined
  }
}

/** Where stdin's file offset stands (Linux), `undefined` when it cannot be told. */
const stdinOffset = (): number | undefined => {
  try {
    const pos = /^pos:\s*(\d+)/m.exec(fs.readFileSync("/proc/self/fdinfo/0", "latin1"))?.[1]
    return pos === undefined ? undefined : Number(pos)
  } catch {
    return undefined
  }
}

let youngGenerationHeld = false
/**
 * From now on, V8 grows no thread's young generation past its present size (the flag is
 * the process's: the main thread's heap and every worker's) instead of doubling it, up to
 * 16 MiB semi-spaces, under load. Held where every segment passes through the main thread
 * on its way in or out: a stream output (`-o -` to a pipe or socket) and a pipe input (`-`
 * on a pipe or socket). V8 reads the growth factor at each growth, but each new isolate (a
 * worker thread) resets it to 2 as it configures its heap (V8 11.3, `Heap::ConfigureHeap`):
 * it is set again once each worker is online (the worker's first milliseconds, before it
 * has a segment, run with 2). Peak RSS with and without (interleaved runs, 2026-12-06):
 * 4 GiB from a file to a pipe 100–103 against 123–128 MiB (three each); 1 GiB from a pipe
 * to a file, encrypt, 97.5 against 103.1 MiB (medians of nine, 1.78 against 1.73 s);
 * 4 GiB from a pipe to a file, encrypt 99–101 against 116–122 MiB (7.2–7.8 against
 * 6.9–12.9 s), decrypt 100–111 against 117–130 MiB (7.1–7.9 against 9.4–13.6 s), three
 * each. A pipe to a pipe runs on the main thread alone: 1.67 s and 86.6 MiB with it, 1.69 s
 * and 84.0 MiB without (medians of five). A file output through its descriptor (including
 * /dev/null) is not held: decrypting 4 GiB to /dev/null peaked at 97 MiB either way.
 */
const holdYoungGeneration = () => {
  if (youngGenerationHeld) return
  youngGenerationHeld = true
  const hold = () => v8.setFlagsFromString("--semi-space-growth-factor=1")
  hold()
  process.on("worker", (worker) => worker.once("online", hold))
}

/**
 * `-` means stdin. Redirected from a regular file (`< FILE`) and at its start, it is read as
 * that file (random access, so a lone cipher runs in direct mode, at file speed); from a
 * file past its start, straight from the descriptor, in order; a pipe or socket through a
 * socket that reads into reused buffers (`fromPipe`); a terminal through Node's stream.
 * Never with a blocking read on a pipe or terminal: it would hold up the exit.
 */
export const openInput = (path: string): Effect.Effect<ChunkInput.ChunkInput, IoError> => {
  if (path !== "-") return ChunkInput.fromFile(path)
  const kind = kindOf(0)
  // A pipe or socket: read without blocking, into reused buffers. A terminal: Node's stream.
  if (kind === "other") {
    return Effect.try({
      try: () => {
        holdYoungGeneration()
        return ChunkInput.fromPipe(0, "stdin")
      },
      catch: (e) => fromSystemError("read", "stdin", e)
    })
  }
  if (kind !== "file") return Effect.sync(() => ChunkInput.fromStream(process.stdin, "stdin"))
  return stdinOffset() === 0 ? ChunkInput.fromOpenFile(0, "stdin") : Effect.succeed(ChunkInput.fromDescriptor(0, "stdin"))
}

/**
 * Worker threads for an AGCM run when neither `--workers` nor `workers` in cage.toml says:
 * 1 (the engine's own thread only) from a stream to a pipe (`-` on a pipe, socket or
 * terminal, or on a file past its start; and `-o -` on a pipe or socket), else undefined
 * (the cipher's default: the available cores). There one thread reads, seals and writes,
 * and a worker costs more in hand-offs and memory than it gains. 1 GiB on 2 cores, medians
 * of five interleaved runs (2026-12-06), one thread against a worker: encrypt pipe to pipe
 * 1.83 s and 86 MiB peak RSS against 2.08 s and 107 MiB; decrypt pipe to pipe 2.06 s, 89
 * MiB against 2.06 s, 111 MiB. A file at either end keeps the worker: encrypt pipe to file
 * took 2.30 s alone against 1.77 s (104 MiB), and file to pipe (4 GiB) 7.33 s against 6.38 s.
 */
export const defaultWorkers = (input: string, output: string): number | undefined =>
  workersFor({ input, output, stdin: input === "-" ? kindOf(0) : undefined, stdinOffset: input === "-" ? stdinOffset() : undefined, stdout: output === "-" ? kindOf(1) : undefined })

/** {@link defaultWorkers}' rule, given what stands behind the standard descriptors (`kindOf`, `stdinOffset`). */
export const workersFor = (o: {
  readonly input: string
  readonly output: string
  readonly stdin: "file" | "device" | "other" | undefined
  readonly stdinOffset: number | undefined
  readonly stdout: "file" | "device" | "other" | undefined
}): number | undefined => {
  const streamIn = o.input === "-" && (o.stdin !== "file" || o.stdinOffset !== 0)
  const pipeOut = o.output === "-" && o.stdout === "other"
  return streamIn && pipeOut ? 1 : undefined
}

/** A file the command reads, as the user named it: `["--key", "my.key"]`, `["input", "dump.sql"]`. */
export type ReadFile = readonly [what: string, path: string]

/** The (device, inode) of an existing path, following links. */
const fileId = (path: string) => {
  try {
    const st = fs.statSync(path)
    return `${st.dev}:${st.ino}`
  } catch {
    return undefined
  }
}

/**
 * `-` means stdout (refused when stdout is a terminal: binary output would garble it).
 * A file output that is (or whose staging `.partial` is) one of the files the command reads
 * (same device and inode, also through links) is refused, even with `--force`.
 */
export const openOutput = (path: string, overwrite: boolean, fsync = true, reads: ReadonlyArray<ReadFile> = []): Effect.Effect<ChunkOutput.ChunkOutput, UsageError> => {
  if (path === "-") {
    if (process.stdout.isTTY) return usage("Output", "refusing to write binary output to a terminal: use -o FILE or a pipe")
    // A regular file or a device such as /dev/null (not a terminal: refused above) takes
    // writes straight from the engine's buffers; pipes and sockets go through the stream.
    const kind = kindOf(1)
    if (kind === "file" || kind === "device") return Effect.succeed(ChunkOutput.toDescriptor(1, "stdout"))
    return Effect.sync(() => {
      holdYoungGeneration()
      return ChunkOutput.toStream(process.stdout, "stdout")
    })
  }
  return Effect.as(refuseReadFiles(path, reads), ChunkOutput.toFile(path, { overwrite, fsync }))
}

/**
 * Refuses (`UsageError` "Output") an output `path` that is, or whose staging `.partial` is,
 * one of `reads` (same device and inode, also through links): `--force` never replaces a
 * file the command reads. `-` passes.
 */
export const refuseReadFiles = (path: string, reads: ReadonlyArray<ReadFile>): Effect.Effect<void, UsageError> => {
  if (path === "-") return Effect.void
  for (const target of [path, ChunkOutput.partialPath(path)]) {
    const id = fileId(target)
    if (id === undefined) continue
    const same = reads.find(([, p]) => p !== "-" && fileId(p) === id)
    if (same) return usage("Output", `refusing to write ${path}: it is ${same[0]} ${same[1]}${target === path ? "" : ` (its staging file ${target})`}, which this command reads; name another output with -o`)
  }
  return Effect.void
}

/** The checkpoint kept beside a file output. */
export const checkpointPathFor = (output: string) => `${output}.cage-checkpoint`

/** Parses `--chunk-size` (bytes, or with a unit: 64KiB, 1MiB). */
export const parseChunkSize = (text: string) => {
  const n = Size.parse(text)
  // The cipher judges the value (its own range); here only what is not a size at all.
  return n === undefined ? usage("Option", `--chunk-size: "${text}" is not a size (examples: 65536, 64KiB, 1MiB)`) : Effect.succeed(n)
}

/** Parses `START:END` byte offsets (END exclusive; either side may use units). */
export const parseRange = (text: string) => {
  const r = Size.parseRange(text)
  // Both ends are required here: `decrypt --range` names the bytes it writes.
  const start = /^\s*:/.test(text) ? undefined : r?.start
  const end = r?.end
  return start === undefined || end === undefined || end < start
    ? usage("Option", `--range: "${text}" is not START:END with 0 <= START <= END (bytes, END exclusive)`)
    : Effect.succeed({ start, end })
}

/** Writes one line of JSON to stdout. */
export const printJson = (value: unknown) =>
  Effect.sync(() => {
    markJsonPrinted()
    process.stdout.write(JSON.stringify(value) + "\n")
  })

/** `n` and `noun`, plural unless `n` is 1: `counted(1, "chunk")` is "1 chunk", `counted(0, "chunk")` "0 chunks". */
export const counted = (n: number, noun: string) => `${n} ${noun}${n === 1 ? "" : "s"}`

/** Writes a human line to stderr unless quiet (stdout may carry data). */
export const note = (quiet: boolean, text: string) => Effect.sync(() => (quiet ? undefined : process.stderr.write(`cage: ${text}\n`)))

/** A note for each entry of directory `root` a backup skipped (`skipped`: paths under `root`). */
export const skippedNotes = (quiet: boolean, root: string, skipped: ReadonlyArray<string>) =>
  Effect.forEach(skipped, (p) => note(quiet, `skipped ${nodePath.join(root, p)}: not a regular file, directory or symlink (or gone)`), { discard: true })

/**
 * Fails with exit 4 (`UserFacing`) when generation `generation` of `root` was stored
 * without the files that changed while they were read (`changed`: paths under `root`; the
 * first 10 named); succeeds when none did.
 */
export const changedNotStored = (generation: number, root: string, changed: ReadonlyArray<string>): Effect.Effect<void, UserFacing> => {
  if (changed.length === 0) return Effect.void
  const names = changed.slice(0, 10).map((p) => nodePath.join(root, p)).join(", ")
  return Effect.fail(new UserFacing({
    detail: `generation ${generation} is stored, but ${counted(changed.length, "file")} changed while being read and ${changed.length === 1 ? "was" : "were"} not stored: ${names}${changed.length > 10 ? ", …" : ""} (back them up again once they no longer change)`,
    exitCode: ExitCode.Io
  }))
}

/** The summary line of a run. */
export const describeRun = (verb: string, input: string, output: string, s: RunSummary) => {
  // The size a user knows is the plaintext's: what an encryption read, what a decryption
  // wrote (the ciphertext is larger by its header and tags).
  const plain = verb === "decrypt" ? s.outputBytes : s.bytesProcessed
  const rate = s.durationMs > 0 ? `${Size.format(plain / (s.durationMs / 1000))}/s` : "-"
  const resumed = s.resumedFrom > 0 ? `, resumed at chunk ${s.resumedFrom}` : ""
  const rss = Size.format(process.resourceUsage().maxRSS * 1024)
  // A staged run (gzip, then the cipher) says what each stage read and wrote.
  const stages = s.stages ? `; ${s.stages.map((t) => `${t.processors.join(" → ")} ${Size.format(t.inputBytes)} → ${Size.format(t.outputBytes)}`).join(", ")}` : ""
  // The cipher's threads (its `workers` result): from a pipe to a pipe it runs on one.
  const threads = Object.values(s.results).map((r) => (r as { readonly workers?: unknown } | null)?.workers).find((w): w is number => typeof w === "number")
  const on = threads === undefined ? "" : `, ${counted(threads, "thread")}`
  return `${verb} ${input} → ${output}: ${Size.format(plain)} in ${counted(s.totalChunks, "chunk")}, ${(s.durationMs / 1000).toFixed(2)} s (${rate}${resumed}${on}), peak RSS ${rss}${stages}`
}

/** `--limit-rate` (bytes per second), else `limit_rate` from cage.toml, else none. */
export const resolveLimitRate = (flag: Option.Option<string>, settings: Settings) => {
  if (Option.isNone(flag)) return Effect.succeed(settings.limitRate.value)
  const n = Size.parse(flag.value)
  return n === undefined || n <= 0
    ? usage("Option", `--limit-rate: "${flag.value}" is not a positive size in bytes per second (examples: 100MiB, 50MB, 1048576)`)
    : Effect.succeed(n)
}

/** The files an encrypt or decrypt reads, named as the user gave them. */
export const readFiles = (f: { input: string; key: Option.Option<string>; passphraseFile: Option.Option<string> }): ReadonlyArray<ReadFile> => [
  ["the input", f.input],
  ...Option.toArray(f.key).map((p): ReadFile => ["the --key file", p]),
  ...Option.toArray(f.passphraseFile).map((p): ReadFile => ["the --passphrase-file", p])
]

