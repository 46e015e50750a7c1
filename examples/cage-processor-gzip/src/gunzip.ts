/**
 * `@acme/cage-processor-gzip/gunzip`: the decompressor as its own plugin entry, so a
 * `cage.toml` decrypt pipeline can name it (`"@acme/cage-processor-gzip/gunzip"`).
 * The default export is its `ProcessorFactory`.
 *
 * @module
 */
import { gunzipFactory } from "./Gzip.js"

export { gunzip, gunzipFactory, type GunzipOptions } from "./Gzip.js"
export { GzipError } from "./Error.js"
export default gunzipFactory
