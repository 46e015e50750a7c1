/**
 * A streaming redactor as a Cage chunk processor, written only against @cage/core's public
 * API: every occurrence of `pattern` (its UTF-8 bytes) becomes as many `*` bytes, so the
 * output is exactly as long as the input. Occurrences are found left to right and do not
 * overlap (like `String.prototype.replaceAll`), whatever the chunks are.
 *
 * An occurrence may straddle chunks, so chunks come in order (`ordered: true`) and the
 * processor holds back the end of a chunk that could still be the start of an occurrence.
 * Those held bytes are always equal to the first `held` bytes of the pattern (that is why
 * they are held), so the state between chunks is two counters, never input bytes: the
 * snapshot is `{ held, redactions }` and a resumed run rebuilds the held bytes from the
 * pattern (`resumable: true`). Checkpoints must not hold plaintext, so a processor whose
 * state is data declares `resumable: false` instead (see docs/writing-a-processor.md §3).
 *
 * @module
 */
import { type ChunkProcessor, type JsonValue, PROCESSOR_API_VERSION, type ProcessorCapabilities, type ProcessorFactory } from "@cage/core"
import { Effect } from "effect"
import { RedactError } from "./Error.js"

/** This package's version, recorded in checkpoints (a test keeps it equal to package.json). */
export const VERSION = "0.1.0"
/** The registry name: the npm package name (a test keeps it equal to package.json). */
export const NAME = "@acme/cage-processor-redact"
/** Longest accepted pattern, in UTF-8 bytes: bounds the bytes held between chunks. */
export const MAX_PATTERN_BYTES = 1024
/** The byte that replaces every byte of an occurrence: `*`. */
const MASK = 0x2a

/** Options of {@link redact}. They are recorded in checkpoints and audit logs. */
export interface RedactOptions {
  /** The text to redact, compared byte for byte (UTF-8); 1 to 1024 bytes. Required. */
  readonly pattern: string
}

/** Capabilities of {@link redact}: in order (occurrences straddle chunks), snapshot-resumable. */
export const redactCapabilities: ProcessorCapabilities = { kind: "transform", ordered: true, resumable: true, deterministic: true }

const patternBytes = (value: unknown): Buffer => {
  if (typeof value !== "string" || value.length === 0) {
    throw new RedactError({ reason: "BadOption", detail: `pattern must be a non-empty string, got ${value === undefined ? "none" : typeof value === "string" ? "an empty string" : `a ${typeof value}`}` })
  }
  const bytes = Buffer.from(value, "utf8")
  if (bytes.length > MAX_PATTERN_BYTES) {
    throw new RedactError({ reason: "BadOption", detail: `pattern is ${bytes.length} bytes long (UTF-8), the maximum is ${MAX_PATTERN_BYTES}` })
  }
  return bytes
}

/** The length of the longest suffix of `bytes`, starting at `from` or later, that is a proper prefix of `pattern`. */
const partialOccurrence = (bytes: Buffer, from: number, pattern: Buffer): number => {
  for (let k = Math.min(pattern.length - 1, bytes.length - from); k > 0; k--) {
    if (bytes.compare(pattern, 0, k, bytes.length - k, bytes.length) === 0) return k
  }
  return 0
}

/** What a snapshot must look like for a pattern of `length` bytes. */
const isState = (s: unknown, length: number): s is { held: number; redactions: number } => {
  const { held, redactions } = (s ?? {}) as { held?: unknown; redactions?: unknown }
  return Number.isSafeInteger(held) && (held as number) >= 0 && (held as number) < length && Number.isSafeInteger(redactions) && (redactions as number) >= 0
}

/**
 * A redactor: each occurrence of `options.pattern` becomes `*` bytes of the same length.
 * `finalize` returns the held bytes as the trailer and `{ redactions }` (occurrences
 * replaced) as its result.
 *
 * @throws RedactError `BadOption` (exit code 2) when `pattern` is missing, empty, not a
 *   string, or longer than {@link MAX_PATTERN_BYTES} bytes.
 */
export const redact = (options: RedactOptions): ChunkProcessor => {
  const pattern = patternBytes((options as Partial<RedactOptions> | undefined)?.pattern)
  // The input's last `held` bytes not yet emitted: they equal pattern[0, held).
  let held = 0
  let redactions = 0
  return {
    name: NAME,
    version: VERSION,
    apiVersion: PROCESSOR_API_VERSION,
    capabilities: redactCapabilities,
    options: { pattern: options.pattern },
    init: (context) =>
      Effect.suspend(() => {
        held = 0
        redactions = 0
        if (context.resume === undefined) return Effect.void
        if (!isState(context.resume, pattern.length)) {
          return Effect.fail(new RedactError({ reason: "BadSnapshot", detail: `the checkpoint holds no state of ${NAME} ${VERSION} for this pattern: ${JSON.stringify(context.resume)}` }))
        }
        held = context.resume.held
        redactions = context.resume.redactions
        return Effect.void
      }),
    process: (_chunk, data) =>
      Effect.sync(() => {
        // A copy: `data` is the engine's buffer, valid only until this effect completes.
        const bytes = Buffer.allocUnsafe(held + data.length)
        pattern.copy(bytes, 0, 0, held)
        bytes.set(data, held)
        let next = 0
        for (let at = bytes.indexOf(pattern); at !== -1; at = bytes.indexOf(pattern, next)) {
          bytes.fill(MASK, at, at + pattern.length)
          next = at + pattern.length
          redactions++
        }
        held = partialOccurrence(bytes, next, pattern)
        return bytes.subarray(0, bytes.length - held)
      }),
    // What is still held cannot be an occurrence (it is shorter than the pattern): emit it as is.
    finalize: () => Effect.sync(() => ({ trailer: Buffer.from(pattern.subarray(0, held)), result: { redactions } })),
    snapshot: (): JsonValue => ({ held, redactions })
  }
}

/** The factory `cage` loads (the package's default export). */
export const redactFactory: ProcessorFactory<RedactOptions> = {
  name: NAME,
  apiVersion: PROCESSOR_API_VERSION,
  description: "replaces every occurrence of a pattern with * bytes of the same length (output as long as input)",
  capabilities: redactCapabilities,
  make: redact
}
