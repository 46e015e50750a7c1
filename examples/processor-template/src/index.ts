/**
 * @acme/cage-processor-redact: a template for third-party Cage processors.
 *
 * The default export is the `ProcessorFactory` that `cage` loads when `cage.toml` lists
 * this package under `plugins`.
 *
 * @module
 */
import { redactFactory } from "./Redact.js"

export { RedactError, type RedactErrorReason } from "./Error.js"
export { MAX_PATTERN_BYTES, NAME, redact, redactCapabilities, redactFactory, type RedactOptions, VERSION } from "./Redact.js"

export default redactFactory
