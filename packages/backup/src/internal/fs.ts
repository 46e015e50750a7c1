/** File helpers shared by the modules of this package. @internal */
import { ChunkOutput } from "@cage/core"
import type { Effect } from "effect"
import * as nodePath from "node:path"

export { fromSystemError, type IoError } from "@cage/core"

/** fsyncs the directory holding `path`, so a rename or unlink in it is durable. */
export const syncDirectoryOf = (path: string): Effect.Effect<void> => ChunkOutput.syncDirectory(nodePath.dirname(nodePath.resolve(path)))
