/**
 * Processors by name: the built-ins, and third-party packages listed in `cage.toml`
 * (`plugins = [...]`) resolved from the project's own node_modules.
 *
 * A plugin package's default export (or its named export `processor`) is a
 * `ProcessorFactory` from @cage/core: `{ name, apiVersion, description, capabilities,
 * make(options) }`. Cage refuses a factory built for another processor API version.
 *
 * @module
 */
import { type ChunkProcessor, PROCESSOR_API_VERSION, type ProcessorCapabilities, type ProcessorFactory, UsageError } from "@cage/core"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { builtinFactories } from "./Builtins.js"
import type { Settings } from "./Config.js"

/**
 * The `cage` executable runs this program as a `vm.Script` (to use V8's code cache), where
 * `import()` has no module loader to call (see src/bin.ts); it lends its own under this key.
 */
export const IMPORT_KEY = Symbol.for("@cage/cli/import")
const importModule = (url: string): Promise<Record<string, unknown>> => {
  const lent = (globalThis as Record<symbol, unknown>)[IMPORT_KEY] as ((u: string) => Promise<Record<string, unknown>>) | undefined
  return lent ? lent(url) : import(url) as Promise<Record<string, unknown>>
}

/** A row of `cage processors list`. */
export interface ProcessorInfo {
  readonly name: string
  readonly version: string
  readonly origin: "built-in" | "plugin"
  readonly description: string
  readonly capabilities: ProcessorCapabilities
}

/** A plugin could not be loaded. Exit code 2. */
const pluginError = (name: string, detail: string) => new UsageError({ reason: "Processor", detail: `processor plugin ${name}: ${detail}` })

/** Finds `node_modules/<name>` from `dir` upwards, and its ESM entry point. */
export const resolvePackageEntry = (name: string, dir: string): string | undefined => {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    const pkgDir = path.join(d, "node_modules", name)
    const pkgJson = path.join(pkgDir, "package.json")
    if (fs.existsSync(pkgJson)) {
      const pkg = JSON.parse(fs.readFileSync(pkgJson, "utf8")) as { exports?: unknown; main?: string; module?: string }
      const dot = typeof pkg.exports === "string" ? pkg.exports : (pkg.exports as Record<string, unknown> | undefined)?.["."] ?? pkg.exports
      const entry = typeof dot === "string"
        ? dot
        : typeof dot === "object" && dot !== null
        ? ((dot as Record<string, unknown>).import ?? (dot as Record<string, unknown>).default) as string | { default?: string } | undefined
        : undefined
      const file = typeof entry === "string" ? entry : entry?.default ?? pkg.module ?? pkg.main ?? "index.js"
      return path.join(pkgDir, file)
    }
    if (path.dirname(d) === d) return undefined
  }
}

const isFactory = (x: unknown): x is ProcessorFactory<Record<string, unknown>> =>
  typeof x === "object" && x !== null && typeof (x as ProcessorFactory).make === "function" && typeof (x as ProcessorFactory).name === "string"

/** Loads a plugin package's factory, checking its processor API version. */
export const loadPlugin = (name: string, projectDir: string): Effect.Effect<{ factory: ProcessorFactory<Record<string, unknown>>; version: string }, UsageError> =>
  Effect.gen(function*() {
    const entry = resolvePackageEntry(name, projectDir)
    if (!entry) return yield* Effect.fail(pluginError(name, `not installed: no node_modules/${name} from ${projectDir} upwards (npm install ${name})`))
    const mod = yield* Effect.tryPromise({
      try: () => importModule(pathToFileURL(entry).href),
      catch: (e) => pluginError(name, `cannot be imported from ${entry}: ${(e as Error).message}`)
    })
    const factory = isFactory(mod.default) ? mod.default : isFactory(mod.processor) ? mod.processor : undefined
    if (!factory) return yield* Effect.fail(pluginError(name, "exports no processor factory (a default export with name, apiVersion, capabilities and make(options))"))
    if (factory.apiVersion !== PROCESSOR_API_VERSION) {
      return yield* Effect.fail(pluginError(name, `was built for processor API ${factory.apiVersion}; this cage speaks ${PROCESSOR_API_VERSION}: upgrade the plugin or cage`))
    }
    // The version is the package's, also for a subpath entry such as "@acme/x/gunzip".
    const base = name.startsWith("@") ? name.split("/").slice(0, 2).join("/") : name.split("/")[0]
    const root = entry.slice(0, entry.lastIndexOf(`node_modules${path.sep}${base.split("/").join(path.sep)}`))
    const pkgJson = path.join(root, "node_modules", base, "package.json")
    const version = fs.existsSync(pkgJson) ? String(JSON.parse(fs.readFileSync(pkgJson, "utf8")).version ?? "?") : "?"
    return { factory, version }
  })

/** Creates a processor from a factory, turning a throwing factory into a clear error. */
export const instantiate = (name: string, factory: ProcessorFactory<Record<string, unknown>>, options: Record<string, unknown>) =>
  Effect.try({
    try: () => factory.make(options),
    catch: (e) => pluginError(name, `its factory failed: ${(e as Error).message}`)
  }).pipe(
    Effect.filterOrFail(
      (p: ChunkProcessor) => typeof p?.process === "function" && typeof p?.init === "function" && typeof p?.finalize === "function",
      () => pluginError(name, "its factory returned something that is not a ChunkProcessor (init/process/finalize)")
    )
  )

/** Every processor available under `settings`: built-ins first, then plugins. */
export const listProcessors = (settings: Settings): Effect.Effect<ReadonlyArray<ProcessorInfo>, UsageError> =>
  Effect.gen(function*() {
    const rows: Array<ProcessorInfo> = builtinFactories.map((b) => ({ name: b.factory.name, version: b.version, origin: "built-in" as const, description: b.factory.description, capabilities: b.factory.capabilities }))
    for (const name of settings.plugins.value) {
      const { factory, version } = yield* loadPlugin(name, settings.projectDir)
      rows.push({ name, version, origin: "plugin", description: factory.description, capabilities: factory.capabilities })
    }
    return rows
  })

/**
 * The pipeline for `operation` ("encrypt" or "decrypt"): the configured list with the keyed
 * cipher in the slot named after it (`agcm-encrypt` / `agcm-decrypt`), or the cipher alone.
 */
export const resolvePipeline = (settings: Settings, operation: string, cipher: ChunkProcessor): Effect.Effect<ReadonlyArray<ChunkProcessor>, UsageError> =>
  Effect.gen(function*() {
    const names = settings.pipelines.value[operation]
    if (!names) return [cipher]
    const where = `${settings.pipelines.source}: pipelines.${operation}`
    if (names.filter((n) => n === cipher.name).length !== 1) {
      return yield* Effect.fail(new UsageError({ reason: "Pipeline", detail: `${where} must name ${cipher.name} exactly once (got ${JSON.stringify(names)})` }))
    }
    const out: Array<ChunkProcessor> = []
    for (const name of names) {
      if (name === cipher.name) {
        out.push(cipher)
        continue
      }
      const options = settings.processorOptions.value[name] ?? {}
      const builtin = builtinFactories.find((b) => b.factory.name === name)
      if (builtin) {
        if (builtin.keyed) return yield* Effect.fail(new UsageError({ reason: "Pipeline", detail: `${where}: ${name} needs a key and cannot be used in a ${operation} pipeline` }))
        out.push(yield* instantiate(name, builtin.factory, options))
        continue
      }
      if (!settings.plugins.value.includes(name)) {
        return yield* Effect.fail(new UsageError({ reason: "Config", detail: `${where}: unknown processor "${name}" (built-ins: ${builtinFactories.map((b) => b.factory.name).join(", ")}; list npm packages under plugins = [...])` }))
      }
      const { factory } = yield* loadPlugin(name, settings.projectDir)
      out.push(yield* instantiate(name, factory, options))
    }
    return out
  })
