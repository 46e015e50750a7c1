/**
 * @cage/age: age encryption for Cage through the real `age` CLI (pipes and a
 * pseudo-terminal) or the age-encryption library.
 *
 * @module
 */
export * from "./Age.js"
export * from "./AgeBinary.js"
export * from "./Error.js"
export * from "./Processor.js"
