/**
 * @acme/cage-processor-gzip: an example third-party Cage processor.
 *
 * The default export is the compressor's factory, which is what `cage` loads when
 * `cage.toml` names this package; `inverse` points to the decompressor's factory.
 *
 * @module
 */
import { gunzipFactory, gzipFactory } from "./Gzip.js"

export { GzipError, type GzipErrorReason } from "./Error.js"
export {
  DEFAULT_LEVEL,
  DEFAULT_MAX_MEMBER_BYTES,
  GUNZIP_NAME,
  gunzip,
  gunzipCapabilities,
  gunzipFactory,
  type GunzipOptions,
  gzip,
  gzipCapabilities,
  gzipFactory,
  GZIP_NAME,
  type GzipOptions,
  VERSION
} from "./Gzip.js"

/** The package's factory: `{ name, apiVersion, description, capabilities, make(options) }`, plus its `inverse`. */
const factory = { ...gzipFactory, inverse: gunzipFactory }
export default factory
