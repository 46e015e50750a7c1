/**
 * @cage/streamsweep: streaming RFC 8259 JSON validation, safe chunk boundaries and
 * bounded forensic metadata, over `@cage/core` inputs and as chunk processors.
 *
 * @module
 */
export * from "./Error.js"
export * from "./Validate.js"
export * from "./Boundaries.js"
export * from "./Inspect.js"
export * from "./Processors.js"
