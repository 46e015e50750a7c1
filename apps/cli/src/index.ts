/**
 * @cage/cli: the `cage` command line as a library (for tests and embedding).
 *
 * @module
 */
export { cli, root, VERSION } from "./main.js"
export * as Config from "./Config.js"
export * as Keys from "./Keys.js"
export * as Registry from "./Registry.js"
