/**
 * Sequential reading of a `ChunkInput` through one reused buffer: memory is the buffer,
 * whatever the input size.
 *
 * @internal
 */
import { ChunkInput, type IoError } from "@cage/core"
import * as Effect from "effect/Effect"

/** Read size for whole-input operations, in bytes (1 MiB: large enough to amortise each read). */
export const DEFAULT_READ_BYTES = 1 << 20

/**
 * Reads `input` from byte 0 to its end and hands each filled range to `onBytes(buffer,
 * length, position)`. `onBytes` returns false to stop early (an error it recorded).
 * Returns the number of bytes read.
 */
export const feed = (
  input: ChunkInput.ChunkInput,
  onBytes: (buffer: Uint8Array, length: number, position: number) => boolean,
  readBytes = DEFAULT_READ_BYTES
): Effect.Effect<number, IoError> =>
  Effect.gen(function*() {
    const buffer = new Uint8Array(readBytes)
    let position = 0
    for (;;) {
      const n = yield* input.read(position, buffer, 0, readBytes)
      if (n === 0) return position
      const more = onBytes(buffer, n, position)
      position += n
      if (!more) return position
    }
  })

/** Opens `path`, runs `use` on it, and closes it whatever happens. */
export const withFile = <A, E>(
  path: string,
  use: (input: ChunkInput.ChunkInput) => Effect.Effect<A, E>
): Effect.Effect<A, E | IoError> =>
  Effect.acquireUseRelease(ChunkInput.fromFile(path), use, (input) => input.close())
