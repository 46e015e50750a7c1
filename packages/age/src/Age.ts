/**
 * age encryption and decryption from a `ChunkInput` to a `ChunkOutput`, through the real
 * `age` CLI (`backend: "age"`) or the pure-JS age-encryption library (`backend: "age-lib"`).
 * Files written by either backend decrypt with the other and with plain `age`.
 *
 * Both functions own the output's lifecycle: they `open()` it, and `commit()` it on success
 * or `abort({ keepPartial: false })` it on any failure or interruption. The caller owns the
 * input (and closes it).
 *
 * @module
 */
import { ChunkInput as InputModule, ChunkOutput as OutputModule } from "@cage/core"
type ChunkInput = InputModule.ChunkInput
type ChunkOutput = OutputModule.ChunkOutput
import { IoError, Telemetry } from "@cage/core"
import { Cause, Effect } from "effect"
import { randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import type { Readable, Writable } from "node:stream"
import { type AgeBinary, findAge } from "./AgeBinary.js"
import { AgeError } from "./Error.js"
import { descriptorPath, runCli, type Strategy, type UsedStrategy } from "./internal/cli.js"
import { readSmallFile, run } from "./internal/io.js"
import { runLib } from "./internal/lib.js"

export type { Strategy, UsedStrategy } from "./internal/cli.js"

/** Which implementation runs: the `age` CLI, the library, or `auto` (the CLI when found, else the library). */
export type Backend = "age" | "age-lib" | "auto"

/**
 * A descriptor the caller owns (stdin, stdout, a pipe), handed to age as is: with the CLI
 * backend age reads or writes it itself, so no byte passes through Node. Make one with
 * {@link descriptorInput} / {@link descriptorOutput}; never wrap the same descriptor in a
 * Node stream as well (that stream would consume bytes).
 */
export interface Descriptor {
  readonly _tag: "Descriptor"
  readonly fd: number
  /** For messages, e.g. `"stdin"`. */
  readonly description: string
}

/** Reads from a descriptor (default 0, stdin). */
export const descriptorInput = (fd = 0, description = "stdin"): Descriptor => ({ _tag: "Descriptor", fd, description })
/** Writes to a descriptor (default 1, stdout). */
export const descriptorOutput = (fd = 1, description = "stdout"): Descriptor => ({ _tag: "Descriptor", fd, description })

const isDescriptor = (x: unknown): x is Descriptor => (x as { _tag?: unknown } | undefined)?._tag === "Descriptor"

/** Options shared by {@link encrypt} and {@link decrypt}. */
export interface CommonOptions {
  /**
   * Source: `ChunkInput.fromFile(path)` (age then reads the file itself), a
   * {@link Descriptor} (`descriptorInput(0)` for `-`: age reads the pipe itself when
   * encrypting), or any `ChunkInput` (pumped through Node).
   */
  readonly input: ChunkInput | Descriptor
  /**
   * Sink: `ChunkOutput.toFile(path)` (age then writes `<path>.partial` itself), a
   * {@link Descriptor} (`descriptorOutput(1)` for stdout: age writes it itself), or any
   * `ChunkOutput` (pumped through Node).
   */
  readonly output: ChunkOutput | Descriptor
  /** The passphrase bytes (UTF-8, no control characters, at most 1024 bytes). Never pass it in argv or env. */
  readonly passphrase?: Uint8Array | undefined
  /** A file whose content is the passphrase (one trailing newline is removed). Read by this package. */
  readonly passphraseFile?: string | undefined
  /** Default `"auto"`. */
  readonly backend?: Backend | undefined
  /** Path of `age` (flag or config). Default: `CAGE_AGE_BIN`, then `age` on `PATH`. */
  readonly ageBin?: string | undefined
  /**
   * How the CLI backend moves data when a passphrase is used and an end is not a plain file:
   * `pipe` (named pipes, nothing staged on disk), `tempfile` (staged in a private 0700
   * directory, 0600 files, always removed), `auto` (pipe when named pipes work, else
   * tempfile). Default: `CAGE_STREAMING_STRATEGY`, else `auto`.
   */
  readonly strategy?: Strategy | undefined
  /** Where staging directories go. Default `os.tmpdir()`. */
  readonly tempDirectory?: string | undefined
  /** Size of read buffers and output batches, in bytes. Default 1 MiB. */
  readonly bufferBytes?: number | undefined
  /** How long to wait for each passphrase prompt (with echo off), in ms. Default 30 000. */
  readonly promptTimeoutMs?: number | undefined
  /** Called with the input bytes consumed so far (monotonic, at most a few times per second for files). */
  readonly onProgress?: ((bytesDone: number) => void) | undefined
  /** Called with human-readable notes for verbose output (backend, strategy). Never secrets. */
  readonly onVerbose?: ((message: string) => void) | undefined
  /** Environment for `CAGE_AGE_BIN` / `CAGE_STREAMING_STRATEGY`. Default `process.env`. */
  readonly env?: NodeJS.ProcessEnv | undefined
}

/** Options of {@link encrypt}: recipients and/or recipient files, or a passphrase. */
export interface EncryptOptions extends CommonOptions {
  /** `age1...` recipients; with the CLI backend also `ssh-ed25519 ...` / `ssh-rsa ...` public keys. */
  readonly recipients?: ReadonlyArray<string> | undefined
  /** Recipient files (`-R`): one recipient per line, `#` comments. */
  readonly recipientFiles?: ReadonlyArray<string> | undefined
  /** ASCII armor (`-a`). Default false. */
  readonly armor?: boolean | undefined
}

/** Options of {@link decrypt}: identity files, or a passphrase. Armored input is detected. */
export interface DecryptOptions extends CommonOptions {
  /** Identity files (`-i`): `AGE-SECRET-KEY-1...` lines; with the CLI backend also SSH private keys. */
  readonly identityFiles?: ReadonlyArray<string> | undefined
}

/** What a run did. No secrets. */
export interface AgeSummary {
  readonly operation: "encrypt" | "decrypt"
  readonly backend: "age" | "age-lib"
  /** Version of the `age` CLI, for `backend: "age"`. */
  readonly ageVersion: string | undefined
  /**
   * How data moved: `direct` (age read and wrote the files itself), `pipe` (pipes or named
   * pipes), `tempfile` (staged), or `library`.
   */
  readonly strategy: UsedStrategy | "library"
  /** Bytes read from the input; undefined when age read a {@link Descriptor} itself. */
  readonly bytesIn: number | undefined
  /** Bytes written to the output; undefined when age wrote a {@link Descriptor} itself. */
  readonly bytesOut: number | undefined
  /** Wall time in ms. */
  readonly durationMs: number
}

const DEFAULT_BUFFER_BYTES = 1 << 20

const isStreamDescriptor = (fd: number): boolean => {
  try {
    const st = fs.fstatSync(fd)
    return st.isFIFO() || st.isSocket()
  } catch {
    return false
  }
}

/**
 * A Node stream over a descriptor: libuv's pipe handle for pipes (fs streams crawl on them),
 * fs otherwise. For 0, 1 and 2 Node's own stdio streams: a second handle on the same
 * descriptor makes Node's lazy `process.stdout` fail later with EEXIST.
 */
const readableOf = (fd: number, bufferBytes: number): Readable =>
  fd === 0
    ? process.stdin
    : isStreamDescriptor(fd)
    ? new net.Socket({ fd, readable: true, writable: false })
    : fs.createReadStream("", { fd, autoClose: false, highWaterMark: bufferBytes })

const writableOf = (fd: number): Writable =>
  fd === 1
    ? process.stdout
    : fd === 2
    ? process.stderr
    : isStreamDescriptor(fd)
    ? new net.Socket({ fd, readable: false, writable: true })
    : fs.createWriteStream("", { fd, autoClose: false })

/** A placeholder input that age reads by descriptor; reading it is an internal error. */
const unreadable = (description: string): ChunkInput => ({
  description,
  size: undefined,
  identity: undefined,
  randomAccess: false,
  read: () => Effect.die(new Error("internal error: a descriptor input was read through Node")),
  close: () => Effect.void
})

/** True when another process can open our descriptor by name (a pipe or a regular file, with /proc). */
const openableByName = (fd: number): boolean => {
  try {
    const st = fs.fstatSync(fd)
    return (st.isFIFO() || st.isFile()) && fs.existsSync(descriptorPath(fd))
  } catch {
    return false
  }
}

/**
 * Whether age may open our output descriptor by name: a pipe, or an empty regular file at
 * offset 0 not opened for appending (`> out.age`). Opening a non-empty file by name would
 * truncate it, and an append offset would be lost.
 */
const writableByName = (fd: number): boolean => {
  try {
    const st = fs.fstatSync(fd)
    if (!fs.existsSync(descriptorPath(fd))) return false
    if (st.isFIFO()) return true
    if (!st.isFile() || st.size !== 0) return false
    const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, "latin1")
    const pos = Number(/^pos:\s*(\d+)/m.exec(info)?.[1] ?? "-1")
    const flags = Number.parseInt(/^flags:\s*([0-7]+)/m.exec(info)?.[1] ?? "0", 8)
    return pos === 0 && (flags & fs.constants.O_APPEND) === 0
  } catch {
    return false
  }
}
const DEFAULT_PROMPT_TIMEOUT_MS = 30_000
const MAX_PASSPHRASE_BYTES = 1024

const usage = (reason: "BadRecipient" | "BadIdentity" | "BadPassphrase", backend: "age" | "age-lib", detail: string) =>
  new AgeError({ reason, backend, detail })

/** Reads and checks the passphrase. Errors never include it. */
const loadPassphrase = async (o: CommonOptions, backend: "age" | "age-lib"): Promise<Uint8Array | undefined> => {
  if (o.passphrase !== undefined && o.passphraseFile !== undefined) {
    throw usage("BadPassphrase", backend, "give either a passphrase or a passphrase file, not both")
  }
  let bytes = o.passphrase
  if (o.passphraseFile !== undefined) {
    const path = o.passphraseFile
    const raw = await readSmallFile(path, 64 * 1024).catch((e: NodeJS.ErrnoException) => {
      throw e.code === "EFBIG"
        ? usage("BadPassphrase", backend, `${path} is too large to be a passphrase file`)
        : new IoError({ reason: e.code === "ENOENT" ? "NotFound" : e.code === "EACCES" ? "PermissionDenied" : "Unknown", operation: "read", path, detail: e.code ?? "read failed" })
    })
    let end = raw.length
    if (end > 0 && raw[end - 1] === 0x0a) end--
    if (end > 0 && raw[end - 1] === 0x0d) end--
    bytes = raw.subarray(0, end)
  }
  if (bytes === undefined) return undefined
  if (bytes.length === 0) throw usage("BadPassphrase", backend, "the passphrase is empty")
  if (bytes.length > MAX_PASSPHRASE_BYTES) throw usage("BadPassphrase", backend, `the passphrase is longer than ${MAX_PASSPHRASE_BYTES} bytes`)
  let text: string
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes)
  } catch {
    throw usage("BadPassphrase", backend, "the passphrase is not valid UTF-8")
  }
  // A terminal in canonical mode would interpret control characters (erase, kill, EOF, interrupt).
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(text)) throw usage("BadPassphrase", backend, "the passphrase contains control characters (a newline?)")
  return bytes
}

const resolveBackend = (o: CommonOptions): Effect.Effect<{ backend: "age" | "age-lib"; bin: AgeBinary | undefined }, AgeError> => {
  const wanted = o.backend ?? "auto"
  if (wanted === "age-lib") return Effect.succeed({ backend: "age-lib" as const, bin: undefined })
  const found = findAge({ bin: o.ageBin, env: o.env }).pipe(Effect.map((bin) => ({ backend: "age" as const, bin })))
  if (wanted === "age") return found
  return found.pipe(Effect.catchTag("AgeError", (e) =>
    e.reason === "AgeMissing"
      ? Effect.sync(() => {
        o.onVerbose?.("age CLI not found: using the age-encryption library")
        return { backend: "age-lib" as const, bin: undefined }
      })
      : Effect.fail(e)))
}

const resolveStrategy = (o: CommonOptions): Strategy => {
  const s = o.strategy ?? (o.env ?? process.env).CAGE_STREAMING_STRATEGY ?? "auto"
  if (s !== "pipe" && s !== "tempfile" && s !== "auto") {
    throw new AgeError({ reason: "Unsupported", backend: "age", detail: `unknown streaming strategy ${JSON.stringify(s)} (pipe, tempfile or auto)` })
  }
  return s
}

const checkReadable = async (paths: ReadonlyArray<string>): Promise<void> => {
  for (const path of paths) {
    await fs.promises.access(path, fs.constants.R_OK).catch((e: NodeJS.ErrnoException) => {
      throw new IoError({ reason: e.code === "ENOENT" ? "NotFound" : e.code === "EACCES" ? "PermissionDenied" : "Unknown", operation: "open", path, detail: e.code ?? "" })
    })
  }
}

/** Key lines of an identity or recipient file, without comments and blank lines. */
const keyLines = async (path: string): Promise<Array<string>> => {
  const text = (await readSmallFile(path, 16 * 1024 * 1024)).toString("utf8")
  return text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"))
}

const toFailure = (e: unknown): AgeError | IoError =>
  e instanceof AgeError || e instanceof IoError
    ? e
    : new AgeError({ reason: "Failed", backend: "age", detail: `internal error: ${e instanceof Error ? e.message : String(e)}` })

const execute = (operation: "encrypt" | "decrypt", o: EncryptOptions & DecryptOptions): Effect.Effect<AgeSummary, AgeError | IoError> =>
  Effect.gen(function*() {
    const started = performance.now()
    const { backend, bin } = yield* resolveBackend(o)
    const body = async (signal: AbortSignal): Promise<AgeSummary> => {
      const passphrase = await loadPassphrase(o, backend)
      const recipients = o.recipients ?? []
      const recipientFiles = o.recipientFiles ?? []
      const identityFiles = o.identityFiles ?? []
      const strategy = resolveStrategy(o)
      if (operation === "encrypt") {
        if (passphrase === undefined && recipients.length + recipientFiles.length === 0) {
          throw usage("BadRecipient", backend, "give at least one recipient, recipient file or a passphrase")
        }
        if (passphrase !== undefined && recipients.length + recipientFiles.length > 0) {
          throw usage("BadPassphrase", backend, "a passphrase cannot be combined with recipients")
        }
        await checkReadable(recipientFiles)
        // An output no key opens is data loss: every backend refuses it before writing,
        // as the age CLI does ("no recipients found").
        if (recipients.some((r) => r.trim() === "")) throw usage("BadRecipient", backend, "an empty recipient (-r \"\") was given")
        if (passphrase === undefined && recipients.length === 0) {
          let found = 0
          for (const f of recipientFiles) found += (await keyLines(f)).length
          if (found === 0) {
            throw usage("BadRecipient", backend, `no recipients found in the recipients file${recipientFiles.length > 1 ? "s" : ""} (-R) ${recipientFiles.join(", ")} (only blank lines or # comments): nobody could decrypt the output`)
          }
        }
      } else {
        if (passphrase === undefined && identityFiles.length === 0) throw usage("BadIdentity", backend, "give an identity file or a passphrase")
        if (passphrase !== undefined && identityFiles.length > 0) throw usage("BadPassphrase", backend, "a passphrase cannot be combined with identity files")
        await checkReadable(identityFiles)
      }
      const bufferBytes = o.bufferBytes ?? DEFAULT_BUFFER_BYTES
      const onProgress = o.onProgress ?? (() => undefined)
      const onVerbose = o.onVerbose ?? (() => undefined)
      // Descriptors: handed to age as they are when it can use them, else wrapped as streams.
      let input: ChunkInput
      let inputDescriptor: number | undefined
      if (isDescriptor(o.input)) {
        const d = o.input
        // Decryption relays the descriptor to age (after reading its first bytes); encryption
        // hands it over as it is, by name in terminal mode.
        const raw = backend === "age" && (operation === "decrypt" || passphrase === undefined || openableByName(d.fd))
        if (raw) {
          inputDescriptor = d.fd
          input = unreadable(d.description)
        } else {
          input = InputModule.fromStream(readableOf(d.fd, bufferBytes), d.description)
        }
      } else input = o.input
      let output: ChunkOutput
      let outputDescriptor: number | undefined
      if (isDescriptor(o.output)) {
        const d = o.output
        const raw = backend === "age" && (passphrase === undefined || writableByName(d.fd))
        if (raw) {
          outputDescriptor = d.fd
          output = OutputModule.toMemory()
        } else {
          output = OutputModule.toStream(writableOf(d.fd), d.description)
        }
      } else output = o.output
      await run(output.open())
      try {
        let strategyUsed: UsedStrategy | "library"
        let bytesIn: number | undefined
        let bytesOut: number | undefined
        if (backend === "age") {
          const keyArgs: Array<string> = []
          for (const r of recipients) keyArgs.push("-r", r)
          for (const f of recipientFiles) keyArgs.push("-R", f)
          for (const f of identityFiles) keyArgs.push("-i", f)
          if (operation === "encrypt" && o.armor === true && passphrase === undefined) keyArgs.push("-a")
          const r = await runCli({
            operation,
            bin: bin!,
            input,
            output,
            inputDescriptor,
            outputDescriptor,
            keyArgs,
            armor: o.armor === true,
            passphrase,
            strategy,
            tempDirectory: o.tempDirectory,
            bufferBytes,
            promptTimeoutMs: o.promptTimeoutMs ?? DEFAULT_PROMPT_TIMEOUT_MS,
            onProgress,
            onVerbose,
            signal
          })
          strategyUsed = r.strategy
          bytesIn = r.bytesIn
          bytesOut = r.bytesOut
        } else {
          onVerbose(`age-encryption library: ${operation}`)
          const fileRecipients: Array<string> = []
          for (const f of recipientFiles) fileRecipients.push(...await keyLines(f))
          const identities: Array<string> = []
          for (const f of identityFiles) identities.push(...await keyLines(f))
          for (const r of [...recipients, ...fileRecipients]) {
            if (!r.startsWith("age1")) throw new AgeError({ reason: "Unsupported", backend, detail: "the library backend only takes age1... recipients, not SSH keys" })
          }
          for (const i of identities) {
            if (!i.startsWith("AGE-SECRET-KEY-")) throw new AgeError({ reason: "Unsupported", backend, detail: "the library backend only takes AGE-SECRET-KEY-... identities, not SSH keys" })
          }
          const r = await runLib({
            operation,
            input,
            output,
            recipients: [...recipients, ...fileRecipients],
            identities,
            passphrase: passphrase === undefined ? undefined : Buffer.from(passphrase).toString("utf8"),
            armor: o.armor === true,
            bufferBytes,
            onProgress
          })
          strategyUsed = "library"
          bytesIn = r.bytesIn
          bytesOut = r.bytesOut
        }
        await run(output.commit())
        return {
          operation,
          backend,
          ageVersion: bin?.version,
          strategy: strategyUsed,
          bytesIn,
          bytesOut,
          durationMs: performance.now() - started
        }
      } catch (e) {
        await run(output.abort({ keepPartial: false })).catch(() => undefined)
        throw e
      }
    }
    // Telemetry as the engine publishes it (a no-op unless a subscriber provided the layer).
    const telemetry = yield* Telemetry.Telemetry
    const runId = randomUUID()
    const describe = (x: unknown) => (x as { description: string }).description
    const inputSize = isDescriptor(o.input) ? undefined : o.input.size
    if (telemetry.enabled) {
      yield* telemetry.publish({
        type: "run_start",
        runId,
        at: Date.now(),
        input: describe(o.input),
        output: describe(o.output),
        pipeline: [`${backend}-${operation}`],
        totalBytes: inputSize ?? null,
        totalChunks: null,
        chunkBytes: o.bufferBytes ?? DEFAULT_BUFFER_BYTES,
        resumedFrom: 0
      })
    }
    return yield* Effect.tryPromise({ try: body, catch: toFailure }).pipe(
      Effect.onExit((exit) =>
        telemetry.enabled
          ? telemetry.publish({
            type: "run_complete",
            runId,
            at: Date.now(),
            ok: exit._tag === "Success",
            bytes: exit._tag === "Success" ? exit.value.bytesIn ?? 0 : 0,
            outputBytes: exit._tag === "Success" ? exit.value.bytesOut ?? 0 : 0,
            chunks: 0,
            durationMs: performance.now() - started,
            ...(exit._tag === "Failure" ? { error: String(Cause.squash(exit.cause)) } : {})
          })
          : Effect.void
      )
    )
  })

/**
 * Encrypts `input` to `output` for recipients (`-r`, `-R`, SSH public keys with the CLI) or
 * with a passphrase (scrypt, through age's terminal prompt with the CLI backend).
 *
 * Fails with `AgeError` (`BadRecipient`, `BadPassphrase`, `Unsupported`, `AgeMissing`,
 * `AgeTooOld`, `PromptTimeout`, `Failed`) or core's `IoError` (input/output).
 */
export const encrypt = (options: EncryptOptions): Effect.Effect<AgeSummary, AgeError | IoError> => execute("encrypt", options)

/**
 * Decrypts `input` (binary or armored) to `output` with identity files or a passphrase.
 *
 * Fails with `AgeError` (`NoMatch`, `WrongPassphrase`, `HmacFailure`, `HeaderFailure`,
 * `PayloadFailure`, `ArmorFailure`: exit code 3; `BadIdentity`, `BadPassphrase`,
 * `Unsupported`, `AgeMissing`, `AgeTooOld`: exit code 2; `PromptTimeout`, `Failed`) or
 * core's `IoError`. On a payload failure a file output is removed; a stream output may
 * already hold the plaintext chunks that authenticated before the failure.
 */
export const decrypt = (options: DecryptOptions): Effect.Effect<AgeSummary, AgeError | IoError> => execute("decrypt", options)
