/**
 * `cage keygen`, `cage migrate`, `cage processors list`, `cage config show`.
 *
 * @module
 */
import { migrateV1File } from "@cage/agcm"
import { Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as os from "node:os"
import { loadSettings } from "../Config.js"
import { usage } from "../Errors.js"
import { commonFlags, jsonFlag, quietFlag } from "../Flags.js"
import { note, printJson, resolveLimitRate } from "../Io.js"
import { readKeyFile, writeNewKeyFile } from "../Keys.js"
import { listProcessors } from "../Registry.js"

export const keygen = (f: { output: string; quiet: boolean }): Effect.Effect<void, unknown> =>
  f.output === "-"
    // A secret key on standard output ends up in terminals, scrollback and logs, without
    // the 0600 mode a key file gets.
    ? usage("Output", "cage keygen writes a new key file with mode 0600: give it a path (-o FILE); it never writes a key to standard output")
    : writeNewKeyFile(f.output).pipe(Effect.andThen(note(f.quiet, `wrote a new key to ${f.output} (mode 0600). Keep it secret: without it nothing encrypted with it can be decrypted.`)))

/** Rewrites an AGCM v1 stream as v2; the new file uses `--new-key` or the same key. */
export const migrate = (f: { input: string; output: string; key: string; newKey: Option.Option<string>; limitRate: Option.Option<string>; quiet: boolean }) =>
  Effect.gen(function*() {
    const limitRate = yield* resolveLimitRate(f.limitRate, yield* loadSettings)
    const v1Key = yield* readKeyFile(f.key)
    const newKey = Option.isSome(f.newKey) ? yield* readKeyFile(f.newKey.value) : Uint8Array.from(v1Key)
    yield* migrateV1File(f.input, f.output, { v1Key, encrypt: { key: newKey }, limitRate, onWarning: (m) => void note(f.quiet, m).pipe(Effect.runSync) }).pipe(
      Effect.ensuring(Effect.sync(() => {
        v1Key.fill(0)
        newKey.fill(0)
      }))
    )
    yield* note(f.quiet, `rewrote ${f.input} (AGCM v1) as ${f.output} (AGCM v2)`)
  })

export const processorsList = (f: { json: boolean }) =>
  Effect.gen(function*() {
    const rows = yield* listProcessors(yield* loadSettings)
    if (f.json) return yield* printJson(rows)
    const lines = rows.map((r) => `${r.name.padEnd(32)} ${r.version.padEnd(8)} ${r.origin.padEnd(9)} ${r.capabilities.kind.padEnd(10)} ${r.capabilities.ordered ? "ordered  " : "any-order"} ${r.description}`)
    yield* Effect.sync(() => process.stdout.write(`${"name".padEnd(32)} ${"version".padEnd(8)} ${"origin".padEnd(9)} ${"kind".padEnd(10)} order     description\n${lines.join("\n")}\n`))
  })

export const configShow = (f: { json: boolean }) =>
  Effect.gen(function*() {
    const s = yield* loadSettings
    const entries = Object.entries(s).filter(([k]) => k !== "files" && k !== "projectDir") as Array<[string, { value: unknown; source: string }]>
    if (f.json) return yield* printJson({ files: s.files, settings: Object.fromEntries(entries) })
    // As written in cage.toml (snake_case), with the value in effect when nothing sets it.
    const keys: Record<string, readonly [string, string]> = {
      chunkSize: ["chunk_size", "65536 (64 KiB)"],
      workers: ["workers", `${os.availableParallelism()} (the available cores; 1 for encrypt or decrypt from a pipe to a pipe)`],
      limitRate: ["limit_rate", "none (no limit)"],
      backend: ["backend", ""],
      streamingStrategy: ["streaming_strategy", ""],
      plugins: ["plugins", ""],
      pipelines: ["pipelines", "the built-in pipeline of each command"],
      processorOptions: ["processors", ""],
      backupDir: ["backup.dir", ".cage-backups"],
      retention: ["backup.retention", ""],
      manifestThreshold: ["backup.manifest_threshold", ""],
      auditLog: ["audit.log", "none (no audit log)"],
      auditMaxBytes: ["audit.max_bytes", ""]
    }
    const shown = (k: string, v: unknown) => {
      const fallback = keys[k]?.[1] ?? ""
      const empty = v === undefined || v === null || (typeof v === "object" && Object.keys(v as object).length === 0)
      return empty && fallback !== "" ? fallback : JSON.stringify(v)
    }
    const lines = [`config files: ${s.files.length ? s.files.join(", ") : "(none)"}`]
    for (const [k, v] of entries) lines.push(`${(keys[k]?.[0] ?? k).padEnd(26)} ${shown(k, v.value).padEnd(40)} (${v.source})`)
    yield* Effect.sync(() => process.stdout.write(lines.join("\n") + "\n"))
  })

/** `cage keygen`. */
export const keygenCommand = Command.make("keygen", {
  output: Flag.String("output").pipe(Flag.withAlias("o"), Flag.withDescription("Key file to create (mode 0600; never overwritten)")),
  quiet: quietFlag
}, keygen).pipe(Command.withDescription("Create a new random 256-bit key file"))

/** `cage migrate`. */
export const migrateCommand = Command.make("migrate", {
  input: Argument.String("input"),
  output: Flag.String("output").pipe(Flag.withAlias("o")),
  key: Flag.String("key").pipe(Flag.withDescription("Key file of the v1 stream")),
  newKey: Flag.String("new-key").pipe(Flag.withDescription("Key file for the v2 output (default: the same key)"), Flag.optional),
  limitRate: commonFlags.limitRate,
  quiet: quietFlag
}, migrate).pipe(Command.withDescription("Rewrite a legacy AGCM v1 stream as AGCM v2"))

/** `cage processors list`. */
export const processorsCommand = Command.make("processors").pipe(
  Command.withDescription("The processors a pipeline can name"),
  Command.withSubcommands([Command.make("list", { json: jsonFlag }, processorsList).pipe(Command.withDescription("Built-in and configured processors"))])
)

/** `cage config show`. */
export const configCommand = Command.make("config").pipe(
  Command.withDescription("The effective cage.toml settings"),
  Command.withSubcommands([Command.make("show", { json: jsonFlag }, configShow).pipe(Command.withDescription("The effective configuration and where each value comes from"))])
)
