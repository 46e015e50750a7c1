/**
 * @cage/core: the chunk engine behind Cage.
 *
 * @module
 */
// One way to import each concept: its module as a namespace (`ChunkSpec.planRegion`,
// `ChunkSpec.Framing`, `Size.parse`), as effect does (`Option.Option`).
export * as ChunkSpec from "./ChunkSpec.js"
export * as ContentDefined from "./ContentDefined.js"
export * as Size from "./Size.js"
export * from "./ChunkProcessor.js"
export * as ChunkInput from "./ChunkInput.js"
export * as ChunkOutput from "./ChunkOutput.js"
export * from "./Error.js"
export * as Checkpoint from "./Checkpoint.js"
export * as Lock from "./Lock.js"
export { LockBusy } from "./Lock.js"
export * as Progress from "./Progress.js"
export * as RateLimit from "./RateLimit.js"
export * as Telemetry from "./Telemetry.js"
export type { TelemetryEvent } from "./Telemetry.js"
export * from "./Engine.js"
export { digest, digestFactory, type DigestOptions } from "./Digest.js"
