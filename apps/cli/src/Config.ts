/**
 * Per-project configuration: `cage.toml`.
 *
 * Where it is found: `$CAGE_CONFIG` when set (that file only); otherwise the user file
 * `$XDG_CONFIG_HOME/cage/config.toml` (or `~/.config/cage/config.toml`) and then the nearest
 * `cage.toml` from the working directory up, the project file overriding the user file key
 * by key. Flags override configuration; configuration overrides defaults.
 *
 * Decoded with effect Schema: an error names the file, the key and what was expected.
 *
 * ```toml
 * chunk_size = "64KiB"          # bytes, or with a unit
 * workers = 2
 * limit_rate = "100MiB"         # input bytes per second (encrypt, decrypt, backup create)
 * backend = "agcm"              # agcm | age | age-lib
 * streaming_strategy = "auto"   # pipe | tempfile | auto (age backend)
 * plugins = ["@acme/cage-processor-gzip"]   # npm packages from this project's node_modules
 *
 * [pipelines.encrypt]
 * processors = ["json-validate", "agcm-encrypt"]
 *
 * [processors."@acme/cage-processor-gzip"]
 * level = 6
 *
 * [backup]
 * dir = ".cage-backups"
 * retention = "keep_last:3"
 * manifest_threshold = "500MB"      # per-chunk digests from this size up (default 0: always)
 *
 * [audit]
 * log = "cage-audit.jsonl"
 * ```
 *
 * @module
 */
import { parsePolicy } from "@cage/backup"
import { Size, UsageError } from "@cage/core"
import { Effect, Schema } from "effect"
import { Toml } from "effect/encoding"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

/** A size as written in the file: bytes, or a string with a unit ("64KiB"). */
const SizeSetting = Schema.Union([Schema.Number, Schema.String])
const Names = Schema.Array(Schema.String)

/** The file schema (snake_case keys as written in TOML). Unknown keys are errors. */
export const ConfigFile = Schema.Struct({
  chunk_size: Schema.optionalKey(SizeSetting),
  workers: Schema.optionalKey(Schema.Int),
  limit_rate: Schema.optionalKey(SizeSetting),
  backend: Schema.optionalKey(Schema.Literals(["agcm", "age", "age-lib"])),
  streaming_strategy: Schema.optionalKey(Schema.Literals(["pipe", "tempfile", "auto"])),
  plugins: Schema.optionalKey(Names),
  pipelines: Schema.optionalKey(Schema.Record(Schema.String, Schema.Struct({ processors: Names }))),
  processors: Schema.optionalKey(Schema.Record(Schema.String, Schema.Record(Schema.String, Schema.Json))),
  backup: Schema.optionalKey(Schema.Struct({
    dir: Schema.optionalKey(Schema.String),
    retention: Schema.optionalKey(Schema.String),
    manifest_threshold: Schema.optionalKey(SizeSetting)
  })),
  audit: Schema.optionalKey(Schema.Struct({
    log: Schema.optionalKey(Schema.String),
    max_bytes: Schema.optionalKey(SizeSetting)
  }))
})
export type ConfigFile = typeof ConfigFile.Type

/** A setting's value and where it came from (`default`, a file path, or `flag`). */
export interface Sourced<A> {
  readonly value: A
  readonly source: string
}

/** The effective configuration. Sizes are bytes. */
export interface Settings {
  readonly files: ReadonlyArray<string>
  /** Directory of the project file (plugins resolve from its node_modules), else cwd. */
  readonly projectDir: string
  readonly chunkSize: Sourced<number | undefined>
  readonly workers: Sourced<number | undefined>
  /** Input read rate cap in bytes per second (`limit_rate`), or none. */
  readonly limitRate: Sourced<number | undefined>
  readonly backend: Sourced<"agcm" | "age" | "age-lib">
  readonly streamingStrategy: Sourced<"pipe" | "tempfile" | "auto">
  readonly plugins: Sourced<ReadonlyArray<string>>
  readonly pipelines: Sourced<{ readonly [operation: string]: ReadonlyArray<string> }>
  readonly processorOptions: Sourced<{ readonly [name: string]: { readonly [k: string]: unknown } }>
  readonly backupDir: Sourced<string | undefined>
  readonly retention: Sourced<string>
  readonly manifestThreshold: Sourced<number>
  readonly auditLog: Sourced<string | undefined>
  readonly auditMaxBytes: Sourced<number>
}

/** A configuration file is unreadable or invalid. Exit code 2. */
export const configError = (file: string, detail: string) => new UsageError({ reason: "Config", detail: `${file}: ${detail}` })

const decodeFile = (file: string) =>
  Effect.gen(function*() {
    const text = yield* Effect.try({ try: () => fs.readFileSync(file, "utf8"), catch: (e) => configError(file, `cannot read (${(e as NodeJS.ErrnoException).code})`) })
    const raw = yield* Effect.try({ try: () => Toml.parse(text), catch: (e) => configError(file, `not valid TOML: ${(e as Error).message}`) })
    const data = JSON.parse(JSON.stringify(raw)) as unknown
    // Unknown keys are mistakes (a typo silently ignored would change what runs).
    const c = yield* Schema.decodeUnknownEffect(ConfigFile)(data, { onExcessProperty: "error" }).pipe(
      Effect.mapError((e) => configError(file, explainIssue(e.message, text, data)))
    )
    // Values checked only when used (retention by `backup prune`) are checked here too.
    if (c.backup?.retention !== undefined) {
      const bad = yield* Effect.try({ try: () => parsePolicy(c.backup!.retention!), catch: (e) => e as Error }).pipe(Effect.flip, Effect.option)
      if (bad._tag === "Some") return yield* Effect.fail(configError(file, `backup.retention ${where(text, "retention")}: ${bad.value.message}`.replace(" :", ":")))
    }
    return c
  })

/** `(line N) ` of the first line assigning `key` or opening table `key`, or "". */
const where = (text: string, key: string): string => {
  const lines = text.split(/\r?\n/)
  const quoted = key.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
  const i = lines.findIndex((l) => new RegExp(`^\\s*("?${quoted}"?\\s*=|\\[+\\s*"?${quoted}"?\\s*[\\].])`).test(l))
  return i >= 0 ? `(line ${i + 1}) ` : ""
}

/** Known keys at a path of the schema (top level, or inside one of its tables). */
const knownKeys = (path: ReadonlyArray<string>): ReadonlyArray<string> => {
  if (path.length === 0) return Object.keys(ConfigFile.fields)
  if (path.length === 1 && path[0] === "backup") return ["dir", "retention", "manifest_threshold"]
  if (path.length === 1 && path[0] === "audit") return ["log", "max_bytes"]
  if (path.length === 2 && path[0] === "pipelines") return ["processors"]
  return []
}

/**
 * A Schema issue (`Expected no excess property at ["backup"]["retentoin"]`) in the terms of
 * the file: `unknown key retentoin in [backup] (line 2); known keys: dir, retention, …`, or
 * `workers (line 1): expected number, found "two" (a string)`.
 */
const explainIssue = (message: string, text: string, data: unknown): string => {
  const m = /Expected (.+?) at ((?:\["[^"]*"\])+)/.exec(message.replace(/\n\s*/g, " "))
  if (!m) return message.replace(/\n\s*/g, " ")
  const path = [...m[2].matchAll(/\["([^"]*)"\]/g)].map((x) => x[1])
  const key = path[path.length - 1]
  const at = where(text, key)
  if (m[1] === "no excess property") {
    const table = path.length > 1 ? ` in [${path.slice(0, -1).join(".")}]` : ""
    return `unknown key ${key}${table} ${at}; known keys: ${knownKeys(path.slice(0, -1)).join(", ")}`.replace(" ;", ";")
  }
  let found: unknown = data
  for (const p of path) found = (found as Record<string, unknown> | undefined)?.[p]
  const kind = Array.isArray(found) ? "an array" : found === null ? "null" : `a ${typeof found}`
  return `${path.join(".")} ${at}: expected ${m[1]}, found ${JSON.stringify(found)} (${kind})`.replace(" :", ":")
}

/** Config files in precedence order (lowest first). */
export const findConfigFiles = (cwd = process.cwd(), env = process.env): ReadonlyArray<string> => {
  if (env.CAGE_CONFIG) return [env.CAGE_CONFIG]
  const files: Array<string> = []
  const xdg = env.XDG_CONFIG_HOME || path.join(os.homedir(), ".config")
  const user = path.join(xdg, "cage", "config.toml")
  if (fs.existsSync(user)) files.push(user)
  for (let dir = path.resolve(cwd); ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, "cage.toml")
    if (fs.existsSync(candidate)) {
      files.push(candidate)
      break
    }
    if (path.dirname(dir) === dir) break
  }
  return files
}

const sizeOf = (file: string, key: string, v: number | string) =>
  typeof v === "number"
    ? Effect.succeed(v)
    : Effect.fromNullishOr(Size.parse(v)).pipe(Effect.mapError(() => configError(file, `${key}: "${v}" is not a size (examples: 65536, "64KiB", "500MB")`)))

const positiveSizeOf = (file: string, key: string, v: number | string) =>
  Effect.flatMap(sizeOf(file, key, v), (n) => n > 0 ? Effect.succeed(n) : Effect.fail(configError(file, `${key}: expected a positive size, got ${JSON.stringify(v)}`)))

/** Loads the effective settings. Fails with a `UsageError` naming the file and key. */
export const loadSettingsFrom = (cwd = process.cwd(), env = process.env): Effect.Effect<Settings, UsageError> =>
  Effect.gen(function*() {
    const files = findConfigFiles(cwd, env)
    let s: Settings = {
      files,
      projectDir: cwd,
      chunkSize: { value: undefined, source: "default" },
      workers: { value: undefined, source: "default" },
      limitRate: { value: undefined, source: "default" },
      backend: { value: "agcm", source: "default" },
      streamingStrategy: { value: "auto", source: "default" },
      plugins: { value: [], source: "default" },
      pipelines: { value: {}, source: "default" },
      processorOptions: { value: {}, source: "default" },
      backupDir: { value: undefined, source: "default" },
      retention: { value: "keep_last:3", source: "default" },
      manifestThreshold: { value: 0, source: "default" },
      auditLog: { value: undefined, source: "default" },
      auditMaxBytes: { value: 64 * 1024 * 1024, source: "default" }
    }
    for (const file of files) {
      const c = yield* decodeFile(file)
      const at = <A>(value: A) => ({ value, source: file })
      const rel = (p: string) => path.resolve(path.dirname(file), p)
      if (c.workers !== undefined && c.workers < 1) return yield* Effect.fail(configError(file, `workers: expected an integer >= 1, got ${c.workers}`))
      s = {
        ...s,
        projectDir: path.dirname(path.resolve(file)),
        ...(c.chunk_size !== undefined ? { chunkSize: at(yield* sizeOf(file, "chunk_size", c.chunk_size)) } : {}),
        ...(c.workers !== undefined ? { workers: at(c.workers) } : {}),
        ...(c.limit_rate !== undefined ? { limitRate: at(yield* positiveSizeOf(file, "limit_rate", c.limit_rate)) } : {}),
        ...(c.backend !== undefined ? { backend: at(c.backend) } : {}),
        ...(c.streaming_strategy !== undefined ? { streamingStrategy: at(c.streaming_strategy) } : {}),
        ...(c.plugins !== undefined ? { plugins: at(c.plugins) } : {}),
        ...(c.pipelines !== undefined
          ? { pipelines: at({ ...s.pipelines.value, ...Object.fromEntries(Object.entries(c.pipelines).map(([k, v]) => [k, v.processors])) }) }
          : {}),
        ...(c.processors !== undefined ? { processorOptions: at({ ...s.processorOptions.value, ...c.processors }) } : {}),
        ...(c.backup?.dir !== undefined ? { backupDir: at(rel(c.backup.dir)) } : {}),
        ...(c.backup?.retention !== undefined ? { retention: at(c.backup.retention) } : {}),
        ...(c.backup?.manifest_threshold !== undefined ? { manifestThreshold: at(yield* sizeOf(file, "backup.manifest_threshold", c.backup.manifest_threshold)) } : {}),
        ...(c.audit?.log !== undefined ? { auditLog: at(rel(c.audit.log)) } : {}),
        ...(c.audit?.max_bytes !== undefined ? { auditMaxBytes: at(yield* sizeOf(file, "audit.max_bytes", c.audit.max_bytes)) } : {})
      }
    }
    return s
  })

/** The settings for this process (cwd and environment). */
export const loadSettings = loadSettingsFrom()
