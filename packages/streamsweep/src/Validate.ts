/**
 * Streaming RFC 8259 validation in bounded memory.
 *
 * The validator is a byte-level state machine fed chunk by chunk: it never decodes text,
 * checks UTF-8 strictly (RFC 8259 §8.1 requires UTF-8; well-formedness per Unicode Table
 * 3-7: no overlongs, no encoded surrogates, nothing above U+10FFFF), rejects `\u` escapes
 * that leave a surrogate unpaired, and refuses nesting deeper than `maxDepth`. Its memory
 * is a few integers plus one byte per open container.
 *
 * @module
 */
import type { ChunkInput, IoError } from "@cage/core"
import * as Effect from "effect/Effect"
import { type JsonSyntaxError, StreamSweepUsageError } from "./Error.js"
import { feed, withFile } from "./internal/feed.js"
import { DEFAULT_MAX_DEPTH, type ValidateOptions, type ValidationReport, Validator } from "./Validator.js"

export {
  DEFAULT_MAX_DEPTH,
  type JsonFormat,
  modeOf,
  type ValidateOptions,
  type ValidationReport,
  validateBytes,
  Validator
} from "./Validator.js"

/** @internal */
export const checkDepth = (maxDepth: number | undefined): Effect.Effect<number, StreamSweepUsageError> => {
  const d = maxDepth ?? DEFAULT_MAX_DEPTH
  return Number.isSafeInteger(d) && d >= 1
    ? Effect.succeed(d)
    : Effect.fail(new StreamSweepUsageError({ reason: "Option", detail: `maxDepth must be a positive integer, got ${maxDepth}` }))
}

/**
 * Validates a whole input, reading it sequentially from byte 0 into one reused buffer.
 *
 * @returns the {@link ValidationReport}.
 * @throws JsonSyntaxError (exit code 3) at the first error, with byte offset, line, column and what was expected.
 * @throws IoError (exit code 4) when the input cannot be read.
 * @throws StreamSweepUsageError (exit code 2) for a bad `maxDepth`.
 */
export const validate = (
  input: ChunkInput.ChunkInput,
  options: ValidateOptions = {}
): Effect.Effect<ValidationReport, JsonSyntaxError | IoError | StreamSweepUsageError> =>
  Effect.gen(function*() {
    const maxDepth = yield* checkDepth(options.maxDepth)
    const v = new Validator({ format: options.format ?? "document", maxDepth, input: input.description })
    yield* feed(input, (buf, n) => v.push(buf, 0, n), options.readBytes)
    if (v.error === undefined) v.end()
    const error = v.error
    if (error !== undefined) return yield* Effect.fail(error)
    return v.report()
  })

/**
 * Validates the file at `path` (see {@link validate}). This is what `cage json validate FILE` runs.
 *
 * @throws JsonSyntaxError (3), IoError (4: not found, permission, directory), StreamSweepUsageError (2).
 */
export const validateFile = (
  path: string,
  options: ValidateOptions = {}
): Effect.Effect<ValidationReport, JsonSyntaxError | IoError | StreamSweepUsageError> =>
  withFile(path, (input) => validate(input, options))
