/**
 * Running the real `age` CLI: through pipes (recipients, identities) or through a
 * pseudo-terminal that carries only the passphrase prompts while the data goes through
 * named pipes, temporary files, or straight to/from the caller's files.
 */
import { ChunkOutput as Out } from "@cage/core"
import type { ChunkInput as InputModule, ChunkOutput as OutputModule } from "@cage/core"
type ChunkInput = InputModule.ChunkInput
type ChunkOutput = OutputModule.ChunkOutput
import { IoError } from "@cage/core"
import { Effect } from "effect"
import { execFile, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as nodePath from "node:path"
import { createRequire } from "node:module"
import type * as PtyModule from "node-pty"
import type { AgeBinary } from "../AgeBinary.js"
import { AgeError, fromAgeExit, redact } from "../Error.js"
import { ArmorDecodeError, ArmorDecoder, looksArmored } from "./armor.js"
import { drain, feed, findCat, peekDescriptor, prepend, readDescriptor, readInput, relay, type Relay, transform, watchReadBytes, watchReadPosition } from "./io.js"
import { makeFifo, makeStagingDirectory, removeStagingDirectory } from "./staging.js"

// node-pty is a native addon: load it only when a terminal is needed, so that everything
// else (recipient streams, the library backend, a bundled `cage` binary) starts without it.
let ptyModule: typeof PtyModule | undefined
const loadPty = (): typeof PtyModule => (ptyModule ??= createRequire(import.meta.url)("node-pty") as typeof PtyModule)

export type Strategy = "pipe" | "tempfile" | "auto"
export type UsedStrategy = "direct" | "pipe" | "tempfile"

export interface CliRequest {
  readonly operation: "encrypt" | "decrypt"
  readonly bin: AgeBinary
  readonly input: ChunkInput
  readonly output: ChunkOutput
  /**
   * The caller's input descriptor (stdin); `input` is then not read. Encryption hands it to
   * age as it is (its stdin, or `/proc/<pid>/fd/<n>` in terminal mode). Decryption first
   * reads the first bytes to tell armor (decoded here) from binary, which `cat` relays to
   * age after those bytes (see `relay`).
   */
  readonly inputDescriptor?: number | undefined
  /** A descriptor age should write the output to itself; `output` then receives nothing. */
  readonly outputDescriptor?: number | undefined
  /** Key arguments (`-r`, `-R`, `-i`, `-a`) without `-e/-d/-p/-o`. */
  readonly keyArgs: ReadonlyArray<string>
  readonly armor: boolean
  readonly passphrase: Uint8Array | undefined
  readonly strategy: Strategy
  readonly tempDirectory: string | undefined
  readonly bufferBytes: number
  readonly promptTimeoutMs: number
  readonly onProgress: (bytes: number) => void
  readonly onVerbose: (message: string) => void
  readonly signal: AbortSignal
}

export interface CliResult {
  readonly strategy: UsedStrategy
  /** Undefined when age read a caller's descriptor itself. */
  readonly bytesIn: number | undefined
  /** Undefined when age wrote a caller's descriptor itself. */
  readonly bytesOut: number | undefined
}

/** How another process can open one of our descriptors by name (Linux). */
export const descriptorPath = (fd: number): string => `/proc/${process.pid}/fd/${fd}`

const ENV = (): Record<string, string> => ({ PATH: process.env.PATH ?? "/usr/bin:/bin", LANG: "C.UTF-8", TERM: "dumb" })
const STDERR_LIMIT = 64 * 1024
const ARMOR_PEEK_BYTES = 1024

/** The staging file of a core `toFile` sink, when `output` is one and was just opened (empty). */
const directOutputPath = async (output: ChunkOutput): Promise<string | undefined> => {
  if (!output.resumable || output.description === "stdout" || output.position() !== 0) return undefined
  const staging = Out.partialPath(output.description)
  const st = await fs.promises.lstat(staging).catch(() => undefined)
  return st?.isFile() === true && st.size === 0 ? staging : undefined
}

/** The path of a file input whose identity still matches (age can then read it itself). */
const directInputPath = async (input: ChunkInput): Promise<string | undefined> => {
  const id = input.identity
  if (!input.randomAccess || id === undefined) return undefined
  const st = await fs.promises.stat(id.path, { bigint: true }).catch(() => undefined)
  if (st === undefined || !st.isFile() || st.ino.toString() !== id.ino || st.dev.toString() !== id.dev) return undefined
  return fs.promises.realpath(id.path)
}

/** A source of bytes for age plus whether it is a plain file age may open itself. */
interface Prepared {
  readonly directPath: string | undefined
  readonly consumed: () => number
  readonly chunks: () => AsyncIterable<Buffer>
  /** A binary (not armored) input descriptor whose first bytes `head` were already read: relay it. */
  readonly relay?: { readonly head: Buffer; readonly fd: number }
}

/** Bytes read at a time while deciding whether a descriptor's input is armored. */
const DESCRIPTOR_PEEK_BYTES = 64 * 1024
/** Whitespace-only input longer than this is decided as armor (which then fails to decode). */
const DESCRIPTOR_PEEK_LIMIT_BYTES = 1 << 20

/** Decides how age gets its input: the file itself, or our (de-armored) stream. */
const prepareInput = async (request: CliRequest): Promise<Prepared> => {
  const { bufferBytes } = request
  let consumed = 0
  // Progress and bytesIn count raw input bytes (before de-armoring).
  const input: ChunkInput = {
    ...request.input,
    read: (position, buffer, offset, length) =>
      Effect.tap(request.input.read(position, buffer, offset, length), (n) =>
        Effect.sync(() => {
          consumed = Math.max(consumed, position + n)
          request.onProgress(consumed)
        }))
  }
  if (request.inputDescriptor !== undefined) {
    const fd = request.inputDescriptor
    if (request.operation === "encrypt") return { directPath: descriptorPath(fd), consumed: () => consumed, chunks: () => readInput(input, bufferBytes) }
    // Decryption: the first bytes decide between armor and binary; they are gone from a pipe.
    const description = request.input.description
    const { head, verdict } = await peekDescriptor(fd, DESCRIPTOR_PEEK_BYTES, DESCRIPTOR_PEEK_LIMIT_BYTES, description, looksArmored)
    const all = () => prepend(head, readDescriptor(fd, bufferBytes, description, (n) => request.onProgress(head.length + n)))
    if (verdict === true) {
      const decoder = new ArmorDecoder()
      return { directPath: undefined, consumed: () => consumed, chunks: () => transform(all(), (b) => decoder.push(b), () => decoder.end()) }
    }
    return { directPath: undefined, consumed: () => consumed, chunks: all, relay: { head, fd } }
  }
  const direct = await directInputPath(input)
  if (request.operation === "encrypt") {
    return { directPath: direct, consumed: () => consumed, chunks: () => readInput(input, bufferBytes) }
  }
  const peekSize = Math.max(ARMOR_PEEK_BYTES, bufferBytes)
  const it = readInput(input, peekSize)
  const first = await it.next()
  const head = first.done ? Buffer.alloc(0) : first.value
  const armored = looksArmored(head, head.length < peekSize) === true
  if (!armored && direct !== undefined) {
    await it.return(undefined)
    return { directPath: direct, consumed: () => consumed, chunks: () => readInput(input, bufferBytes) }
  }
  const raw = () => prepend(head, it)
  if (!armored) return { directPath: undefined, consumed: () => consumed, chunks: raw }
  const decoder = new ArmorDecoder()
  return { directPath: undefined, consumed: () => consumed, chunks: () => transform(raw(), (b) => decoder.push(b), () => decoder.end()) }
}

const armorFailure = (e: ArmorDecodeError) => new AgeError({ reason: "ArmorFailure", backend: "age", detail: e.message })

/** Our own failures while moving data (input I/O, armor, output I/O) win over age's complaint about them. */
const ownFailure = (e: unknown): AgeError | IoError => {
  if (e instanceof ArmorDecodeError) return armorFailure(e)
  if (e instanceof IoError || e instanceof AgeError) return e
  return new IoError({ reason: "Unknown", operation: "copy", path: "age", detail: e instanceof Error ? e.message : String(e) })
}

/** Settles every promise; the first rejection (in argument order) is rethrown after all are done. */
const allSettledFirstError = async (promises: ReadonlyArray<Promise<unknown>>): Promise<void> => {
  const results = await Promise.allSettled(promises)
  for (const r of results) if (r.status === "rejected") throw r.reason
}

/** Progress of a relay: the bytes read before it plus what its `cat` has read. */
const watchRelay = (get: () => Relay | undefined, headBytes: number, onProgress: (n: number) => void) =>
  watchReadBytes(() => get()?.pid(), (n) => onProgress(headBytes + n))

/** Recipient/identity mode: age's stdin and stdout are pipes or the caller's files. */
const runPiped = async (request: CliRequest): Promise<CliResult> => {
  const { output, bufferBytes } = request
  const prepared = await prepareInput(request)
  const outPath = request.outputDescriptor === undefined ? await directOutputPath(output) : undefined
  // The caller's descriptor goes to age as it is, unless decryption already read from it.
  const passDescriptor = request.inputDescriptor !== undefined && prepared.directPath !== undefined
  const inFd = passDescriptor ? request.inputDescriptor : prepared.directPath === undefined ? undefined : fs.openSync(prepared.directPath, "r")
  const outFd = request.outputDescriptor ?? (outPath === undefined ? undefined : fs.openSync(outPath, "r+"))
  const args = [request.operation === "encrypt" ? "-e" : "-d", ...request.keyArgs]
  request.onVerbose(`age ${request.bin.version}: ${request.operation} through ${inFd !== undefined ? "the input file" : prepared.relay && findCat() !== null ? "a pipe relayed by cat" : "a pipe"} to ${outFd === undefined ? "a pipe" : "the output file"}`)
  const child = spawn(request.bin.path, args, { stdio: [inFd ?? "pipe", outFd ?? "pipe", "pipe"], env: ENV() })
  // The child has its own copies; the caller's descriptors stay open.
  if (inFd !== undefined && !passDescriptor) fs.closeSync(inFd)
  if (outFd !== undefined && request.outputDescriptor === undefined) fs.closeSync(outFd)
  let stderr = ""
  child.stderr!.setEncoding("utf8")
  child.stderr!.on("data", (d: string) => {
    if (stderr.length < STDERR_LIMIT) stderr += d
  })
  let relayed: Relay | undefined
  const abort = () => {
    child.kill("SIGTERM")
    relayed?.stop()
  }
  request.signal.addEventListener("abort", abort)
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal }))
  )
  // Once age is gone, nothing reads what the relay's cat writes: stop it (with an idle
  // input it would otherwise wait in read() until the producer writes again).
  void exited.then(() => relayed?.stop())
  const stopWatch = child.pid === undefined
    ? () => undefined
    : prepared.relay !== undefined
    ? watchRelay(() => relayed, prepared.relay.head.length, request.onProgress)
    : passDescriptor
    ? watchReadBytes(child.pid, request.onProgress)
    : prepared.directPath !== undefined
    ? watchReadPosition(child.pid, prepared.directPath, request.onProgress)
    : () => undefined
  let bytesIn = 0
  let bytesOut = 0
  const feeding = child.stdin && prepared.relay
    ? (relayed = relay(prepared.relay.head, prepared.relay.fd, child.stdin as net.Socket, request.input.description, request.onProgress)).done.catch((e) => {
      child.kill("SIGTERM")
      throw ownFailure(e)
    })
    : child.stdin
    ? feed(prepared.chunks(), child.stdin, () => undefined).then(() => { bytesIn = prepared.consumed() })
      .catch((e) => {
        child.kill("SIGTERM")
        throw ownFailure(e)
      })
    : Promise.resolve()
  const draining = child.stdout
    ? drain(child.stdout, output, bufferBytes).then((n) => { bytesOut = n }).catch((e) => {
      child.kill("SIGTERM")
      throw ownFailure(e)
    })
    : Promise.resolve()
  try {
    await allSettledFirstError([feeding, draining])
    const { code, signal } = await exited
    if (request.signal.aborted) throw new AgeError({ reason: "Failed", backend: "age", detail: "interrupted" })
    if (code !== 0) throw fromAgeExit(code, signal, stderr, { operation: request.operation, passphrase: false })
  } finally {
    stopWatch()
    relayed?.stop()
    request.signal.removeEventListener("abort", abort)
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
  }
  if (prepared.directPath !== undefined) bytesIn = request.input.size ?? 0
  if (outPath !== undefined) bytesOut = (await fs.promises.stat(outPath)).size
  if (request.inputDescriptor === undefined) request.onProgress(bytesIn)
  return {
    strategy: inFd !== undefined && outFd !== undefined ? "direct" : "pipe",
    bytesIn: request.inputDescriptor === undefined ? bytesIn : undefined,
    bytesOut: request.outputDescriptor === undefined ? bytesOut : undefined
  }
}

/** Polls `stty -a` on the terminal until echo is off (age's ReadPassword turned it off). */
const waitEchoOff = async (ptsName: string, deadline: number, alive: () => boolean): Promise<boolean> => {
  for (;;) {
    const settings = await new Promise<string>((resolve) =>
      execFile("stty", ["-F", ptsName, "-a"], { env: ENV() }, (err, stdout) => resolve(err ? "" : String(stdout)))
    )
    if (/(^|[\s;])-echo([\s;]|$)/.test(settings)) return true
    if (!alive() || Date.now() > deadline) return false
    await new Promise((r) => setTimeout(r, 2))
  }
}

/**
 * Test hook: receives the raw terminal output of every passphrase run (before redaction),
 * so tests can prove the passphrase never appears in it. Unset in production.
 */
export const terminalSpy: { current: ((raw: string) => void) | undefined } = { current: undefined }

/** age 1.x prompts ("Enter passphrase (leave empty to autogenerate a secure one):", "Confirm passphrase:", "Enter passphrase:"). */
const PROMPT = /(enter|confirm|type)[^\n]*passphrase[^\n]*:\s*$/i

interface PtyOutcome {
  readonly code: number | null
  readonly signal: string | null
  readonly transcript: string
  readonly timedOut: boolean
}

/**
 * Runs age in a pseudo-terminal and types the passphrase at each prompt, once echo is off.
 * The transcript is returned redacted; it is never logged.
 */
const runInTerminal = (
  request: CliRequest,
  args: ReadonlyArray<string>,
  answers: number,
  started: (pid: number) => void,
  /** A regular file for age's standard output, opened without truncation (see runWithPassphrase). */
  stdoutFile?: string
): Promise<PtyOutcome> =>
  new Promise((resolve) => {
    const secret = Buffer.from(request.passphrase!).toString("utf8")
    // The terminal is age's stdin, stdout and stderr; `sh` only opens the output file on
    // stdout (`1<>`: read-write, no O_TRUNC) and then becomes age (`exec`).
    const [file, argv] = stdoutFile === undefined
      ? [request.bin.path, [...args]]
      : ["/bin/sh", ["-c", 'out="$1"; shift; exec "$@" 1<>"$out"', "sh", stdoutFile, request.bin.path, ...args]]
    const term = loadPty().spawn(file, argv, { name: "dumb", cols: 400, rows: 24, cwd: os.tmpdir(), env: ENV() })
    started(term.pid)
    let transcript = ""
    let lastAnswerAt = 0
    let answered = 0
    let typing = false
    let exited = false
    let timedOut = false
    let deadline = Date.now() + request.promptTimeoutMs
    const timer = setInterval(() => {
      if (!exited && answered < answers && Date.now() > deadline) {
        timedOut = true
        term.kill("SIGKILL")
      }
    }, 100)
    const consider = () => {
      if (typing || exited || answered >= answers) return
      if (!PROMPT.test(transcript.slice(lastAnswerAt))) return
      typing = true
      void waitEchoOff((term as unknown as { ptsName: string }).ptsName, deadline, () => !exited).then((off) => {
        typing = false
        if (exited) return
        if (!off) {
          // Never type a passphrase that the terminal would echo back.
          timedOut = true
          term.kill("SIGKILL")
          return
        }
        term.write(`${secret}\r`)
        answered++
        lastAnswerAt = transcript.length
        deadline = Date.now() + request.promptTimeoutMs
        consider()
      })
    }
    term.onData((d) => {
      terminalSpy.current?.(d)
      transcript += d
      if (transcript.length > STDERR_LIMIT) {
        const cut = transcript.length - STDERR_LIMIT
        transcript = transcript.slice(cut)
        lastAnswerAt = Math.max(0, lastAnswerAt - cut)
      }
      consider()
    })
    const abort = () => term.kill("SIGTERM")
    request.signal.addEventListener("abort", abort)
    term.onExit(({ exitCode, signal }) => {
      exited = true
      clearInterval(timer)
      request.signal.removeEventListener("abort", abort)
      // node-pty may deliver the last output just after the exit event.
      setTimeout(() => {
        resolve({
          code: signal ? null : exitCode,
          signal: signal ? String(signal) : null,
          transcript: redact(transcript, request.passphrase),
          timedOut
        })
      }, 20)
    })
  })

const killQuietly = (pid: number) => {
  try {
    if (pid > 0) process.kill(pid, "SIGTERM")
  } catch {
    // Already gone.
  }
}

/** Opens the write end of a FIFO once age has opened its read end (ENXIO until then). */
const openFifoWriter = async (path: string, alive: () => boolean): Promise<net.Socket | undefined> => {
  for (;;) {
    try {
      const fd = fs.openSync(path, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK)
      return new net.Socket({ fd, readable: false, writable: true })
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENXIO") throw e
      if (!alive()) return undefined
      await new Promise((r) => setTimeout(r, 5))
    }
  }
}

/** Passphrase mode: the terminal carries the prompts; data goes by path (file, FIFO or temp file). */
const runWithPassphrase = async (request: CliRequest): Promise<CliResult> => {
  const { output, bufferBytes } = request
  const prepared = await prepareInput(request)
  const outDirect = request.outputDescriptor !== undefined ? descriptorPath(request.outputDescriptor) : await directOutputPath(output)
  const bothDirect = prepared.directPath !== undefined && outDirect !== undefined
  let strategy: UsedStrategy = bothDirect ? "direct" : request.strategy === "tempfile" ? "tempfile" : "pipe"
  let dir: string | undefined
  const cleanup: Array<() => void> = []
  try {
    if (strategy !== "direct") {
      dir = await makeStagingDirectory(request.tempDirectory)
      if (strategy === "pipe") {
        try {
          await makeFifo(nodePath.join(dir, "probe"))
        } catch {
          if (request.strategy === "pipe") throw new AgeError({ reason: "Unsupported", backend: "age", detail: "cannot create named pipes here (mkfifo failed); use --streaming-strategy tempfile" })
          strategy = "tempfile"
        }
      }
    }
    request.onVerbose(`age ${request.bin.version}: ${request.operation} with a passphrase, strategy ${strategy}${request.strategy === "auto" ? " (auto)" : ""}`)
    let inPath = prepared.directPath
    let outPath = outDirect
    let bytesIn = 0
    let bytesOut = 0
    let alive = true
    let relayed: Relay | undefined
    let cancelled = false
    let pid = -1
    const tasks: Array<Promise<unknown>> = []
    if (inPath === undefined) {
      inPath = nodePath.join(dir!, "in")
      if (strategy === "pipe") {
        await makeFifo(inPath)
      } else {
        // Staged input: plaintext (encrypt) or ciphertext (decrypt) in a 0600 file in a 0700 directory.
        const h = await fs.promises.open(inPath, "wx", 0o600)
        const w = h.createWriteStream()
        await feed(prepared.chunks(), w, () => undefined).catch((e) => { throw ownFailure(e) })
        bytesIn = prepared.consumed()
      }
    }
    if (outPath === undefined) {
      outPath = nodePath.join(dir!, "out")
      if (strategy === "pipe") await makeFifo(outPath)
      else await fs.promises.writeFile(outPath, new Uint8Array(0), { mode: 0o600, flag: "wx" })
    }
    // Opening the read end with O_NONBLOCK never blocks; Linux reports no hang-up before a writer came.
    const outSocket = strategy === "pipe" && outDirect === undefined
      ? new net.Socket({ fd: fs.openSync(outPath, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK), readable: true, writable: false })
      : undefined
    if (outSocket) {
      cleanup.push(() => outSocket.destroy())
      tasks.push(drain(outSocket, output, bufferBytes).then((n) => { bytesOut = n }).catch((e) => {
        // We destroyed the socket ourselves because age failed: age's error is the one to report.
        if (cancelled && (e as NodeJS.ErrnoException).code === "ERR_STREAM_PREMATURE_CLOSE") return
        killQuietly(pid)
        throw ownFailure(e)
      }))
    }
    if (strategy === "pipe" && prepared.directPath === undefined) {
      const fifo = inPath
      tasks.push((async () => {
        const sock = await openFifoWriter(fifo, () => alive)
        if (sock === undefined) return
        cleanup.push(() => sock.destroy())
        if (prepared.relay) {
          const r = (relayed = relay(prepared.relay.head, prepared.relay.fd, sock, request.input.description, request.onProgress))
          cleanup.push(r.stop)
          await r.done
          return
        }
        await feed(prepared.chunks(), sock, () => undefined)
        bytesIn = prepared.consumed()
      })().catch((e) => {
        killQuietly(pid)
        throw ownFailure(e)
      }))
    }
    // Our own staging file goes to age as its standard output, opened without truncation:
    // `-o` on an existing file means O_TRUNC, and ext4 then flushes the whole output when age
    // closes it (its replace-via-truncate heuristic): measured 15–30% slower on 1 GiB.
    // (A FIFO or a caller's descriptor keeps `-o`.)
    const stdoutFile = request.outputDescriptor === undefined && (outDirect !== undefined || strategy === "tempfile") ? outPath : undefined
    const outputArgs = stdoutFile === undefined ? ["-o", outPath] : []
    const args = request.operation === "encrypt"
      ? ["-p", ...(request.armor ? ["-a"] : []), ...outputArgs, inPath]
      : ["-d", ...outputArgs, inPath]
    let stopWatch = (): void => undefined
    const outcome = await runInTerminal(request, args, request.operation === "encrypt" ? 2 : 1, (p) => {
      pid = p
      if (prepared.relay !== undefined) stopWatch = watchRelay(() => relayed, prepared.relay.head.length, request.onProgress)
      else if (request.inputDescriptor !== undefined && prepared.directPath !== undefined) stopWatch = watchReadBytes(p, request.onProgress)
      else if (prepared.directPath !== undefined) stopWatch = watchReadPosition(p, prepared.directPath, request.onProgress)
    }, stdoutFile)
    alive = false
    stopWatch()
    // age is gone: a relay still running has nobody to write to (see runPiped).
    relayed?.stop()
    if (outcome.code !== 0) {
      cancelled = true
      // Unblock our side of the FIFOs: age is gone, nobody will read or write them any more.
      for (const c of cleanup) c()
    } else if (outSocket) {
      // age opens its output lazily and never opens it for an empty plaintext: a writer that
      // comes and goes after age's exit delivers the end-of-file the reader waits for.
      try {
        fs.closeSync(fs.openSync(outPath, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK))
      } catch {
        // ENXIO: our reader already saw age's end-of-file and closed.
      }
    }
    await allSettledFirstError(tasks)
    if (request.signal.aborted) throw new AgeError({ reason: "Failed", backend: "age", detail: "interrupted" })
    if (outcome.timedOut) {
      throw new AgeError({ reason: "PromptTimeout", backend: "age", detail: `no passphrase prompt with echo off within ${request.promptTimeoutMs} ms` })
    }
    if (outcome.code !== 0) throw fromAgeExit(outcome.code, outcome.signal, outcome.transcript, { operation: request.operation, passphrase: true })
    if (strategy === "tempfile" && outDirect === undefined) {
      bytesOut = await drain(fs.createReadStream(outPath, { highWaterMark: bufferBytes }), output, bufferBytes).catch((e) => { throw ownFailure(e) })
    }
    if (prepared.directPath !== undefined) bytesIn = request.input.size ?? 0
    if (outDirect !== undefined && request.outputDescriptor === undefined) bytesOut = (await fs.promises.stat(outDirect)).size
    if (request.inputDescriptor === undefined) request.onProgress(bytesIn)
    return {
      strategy,
      bytesIn: request.inputDescriptor === undefined ? bytesIn : undefined,
      bytesOut: request.outputDescriptor === undefined ? bytesOut : undefined
    }
  } finally {
    for (const c of cleanup) c()
    if (dir !== undefined) await removeStagingDirectory(dir)
  }
}

/** Runs one age operation. The caller has opened `output` and commits or aborts it. */
export const runCli = (request: CliRequest): Promise<CliResult> =>
  request.passphrase === undefined ? runPiped(request) : runWithPassphrase(request)
