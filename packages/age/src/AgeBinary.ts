/**
 * Locating the `age` CLI and its version.
 *
 * Search order: the explicit `bin` option (from the CLI flag or the config file), then the
 * `CAGE_AGE_BIN` environment variable, then `age` on `PATH`. A missing binary or one older
 * than {@link MIN_AGE_VERSION} is one `AgeError` (`AgeMissing` / `AgeTooOld`) with the
 * install hint.
 *
 * @module
 */
import { Effect } from "effect"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { AgeError } from "./Error.js"

/** Oldest age accepted: 1.0.0 fixed the file format's final-chunk rules and the armor. */
export const MIN_AGE_VERSION = "1.0.0"

/** A located age binary. */
export interface AgeBinary {
  /** Absolute path of `age`. */
  readonly path: string
  /** Version reported by `age --version`, without the leading `v` (e.g. `"1.1.1"`). */
  readonly version: string
}

/** Options of {@link findAge}. */
export interface FindAgeOptions {
  /** Explicit path or command name (config / flag). Default: `CAGE_AGE_BIN`, then `age` on `PATH`. */
  readonly bin?: string | undefined
  /** Environment to read `CAGE_AGE_BIN` and `PATH` from. Default `process.env`. */
  readonly env?: NodeJS.ProcessEnv | undefined
}

const isExecutable = (p: string): boolean => {
  try {
    fs.accessSync(p, fs.constants.X_OK)
    return fs.statSync(p).isFile()
  } catch {
    return false
  }
}

/** Resolves a command name against `PATH` (a name containing `/` is taken as a path). */
const resolveCommand = (cmd: string, env: NodeJS.ProcessEnv): string | undefined => {
  if (cmd.includes("/")) return isExecutable(cmd) ? nodePath.resolve(cmd) : undefined
  for (const dir of (env.PATH ?? "").split(":")) {
    if (dir === "") continue
    const p = nodePath.join(dir, cmd)
    if (isExecutable(p)) return p
  }
  return undefined
}

/** Compares dotted versions numerically: negative when `a < b`. */
export const compareVersions = (a: string, b: string): number => {
  const pa = a.split(/[.+-]/).map((x) => Number.parseInt(x, 10))
  const pb = b.split(/[.+-]/).map((x) => Number.parseInt(x, 10))
  for (let i = 0; i < 3; i++) {
    const d = (Number.isFinite(pa[i]) ? pa[i]! : 0) - (Number.isFinite(pb[i]) ? pb[i]! : 0)
    if (d !== 0) return d
  }
  return 0
}

/** Finds `age` and reads its version. Fails with `AgeMissing` or `AgeTooOld`. */
export const findAge = (options: FindAgeOptions = {}): Effect.Effect<AgeBinary, AgeError> =>
  Effect.gen(function*() {
    const env = options.env ?? process.env
    const requested = options.bin ?? (env.CAGE_AGE_BIN !== undefined && env.CAGE_AGE_BIN !== "" ? env.CAGE_AGE_BIN : "age")
    const path = resolveCommand(requested, env)
    if (path === undefined) {
      return yield* Effect.fail(new AgeError({ reason: "AgeMissing", backend: "age", detail: `looked for ${JSON.stringify(requested)}` }))
    }
    // One `age --version` per binary and modification time per process.
    const stamp = `${path}\0${fs.statSync(path).mtimeMs}`
    const known = versions.get(stamp)
    if (known !== undefined) return { path, version: known }
    const out = yield* Effect.callback<string, AgeError>((resume) => {
      execFile(path, ["--version"], { timeout: 10_000, env: {} }, (err, stdout) => {
        if (err) resume(Effect.fail(new AgeError({ reason: "AgeMissing", backend: "age", detail: `${path} --version failed` })))
        else resume(Effect.succeed(String(stdout).trim()))
      })
    })
    // age prints "v1.1.1", "1.1.1" (Debian) or "(devel)"; a development build is accepted as new.
    const version = /v?(\d+\.\d+\.\d+)/.exec(out)?.[1] ?? (out.includes("devel") ? "999.0.0" : undefined)
    if (version === undefined) {
      return yield* Effect.fail(new AgeError({ reason: "AgeTooOld", backend: "age", detail: `${path} reports an unknown version` }))
    }
    if (compareVersions(version, MIN_AGE_VERSION) < 0) {
      return yield* Effect.fail(new AgeError({ reason: "AgeTooOld", backend: "age", detail: `${path} is ${version}, need ${MIN_AGE_VERSION} or later` }))
    }
    versions.set(stamp, version)
    return { path, version }
  })

const versions = new Map<string, string>()
