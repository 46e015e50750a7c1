/**
 * The `cage` command line. See the README's CLI reference; exit codes are in Errors.ts.
 *
 * @module
 */
import { Cause, Console, Effect } from "effect"
import { jsonErrors } from "./Errors.js"
import { format } from "node:util"
import { execFile } from "node:child_process"
import { createRequire } from "node:module"
import { Argument, Command, Flag } from "effect/cli"
import * as chunk from "./commands/chunk.js"
import { decrypt, encrypt } from "./commands/crypt.js"
import { commonFlags } from "./Flags.js"
import { auditLogFlag } from "./AuditTrail.js"
import { configShow, keygen, migrate, processorsList } from "./commands/misc.js"
import { auditCommand } from "./commands/audit.js"
import { backupCommand } from "./commands/backup.js"
import { jsonCommand } from "./commands/json.js"

export const VERSION = "0.1.0"

const json = Flag.Boolean("json").pipe(Flag.withDescription("Machine-readable JSON on stdout"), Flag.withDefault(false))
const quiet = Flag.Boolean("quiet").pipe(Flag.withAlias("q"), Flag.withDescription("No notes on stderr"), Flag.withDefault(false))

const ageFlags = {
  recipient: Flag.String("recipient").pipe(Flag.withAlias("r"), Flag.withDescription("age backend: recipient (age1…, ssh-ed25519 …); repeatable"), Flag.atLeast(0)),
  recipientsFile: Flag.String("recipients-file").pipe(Flag.withAlias("R"), Flag.withDescription("age backend: file of recipients; repeatable"), Flag.atLeast(0)),
  armor: Flag.Boolean("armor").pipe(Flag.withAlias("a"), Flag.withDescription("age backend: ASCII armor"), Flag.withDefault(false)),
  strategy: Flag.Literals("strategy", ["pipe", "tempfile", "auto"] as const).pipe(Flag.withDescription("age backend with a passphrase: how data reaches age (default auto)"), Flag.optional)
}

const encryptCommand = Command.make("encrypt", {
  ...commonFlags,
  ...ageFlags,
  auditLog: auditLogFlag,
  chunkSize: Flag.String("chunk-size").pipe(Flag.withDescription("Plaintext bytes per chunk: a power of two from 16KiB to 4MiB (default 64KiB)"), Flag.optional)
}, encrypt).pipe(Command.withDescription("Encrypt a file (AGCM v2 by default; resumable)"))

const decryptCommand = Command.make("decrypt", {
  ...commonFlags,
  auditLog: auditLogFlag,
  range: Flag.String("range").pipe(Flag.withDescription("Only plaintext bytes START:END (END exclusive)"), Flag.optional),
  legacyV1: Flag.Boolean("legacy-v1").pipe(Flag.withDescription("Accept insecure harpocrates AGCM v1 input"), Flag.withDefault(false)),
  identity: Flag.String("identity").pipe(Flag.withAlias("i"), Flag.withDescription("age backend: identity file; repeatable"), Flag.atLeast(0))
}, decrypt).pipe(Command.withDescription("Decrypt a file (never publishes unauthenticated plaintext under the final name)"))

const keygenCommand = Command.make("keygen", {
  output: Flag.String("output").pipe(Flag.withAlias("o"), Flag.withDescription("Key file to create (mode 0600; never overwritten)")),
  quiet
}, keygen).pipe(Command.withDescription("Create a new random 256-bit key file"))

const chunkCommand = Command.make("chunk").pipe(
  Command.withDescription("Chunk plans and file inspection"),
  Command.withSubcommands([
    Command.make("plan", {
      input: Argument.String("input"),
      chunkSize: Flag.String("chunk-size").pipe(Flag.withDescription("Chunk size (default 64KiB)"), Flag.optional),
      limit: Flag.Int("limit").pipe(Flag.withDescription("Chunks to list (0 = all)"), Flag.withDefault(20)),
      json
    }, chunk.plan).pipe(Command.withDescription("Print the chunk plan of a file (reads no data)")),
    Command.make("inspect", { file: Argument.String("file"), json }, chunk.inspect).pipe(Command.withDescription("Describe an AGCM header or a checkpoint"))
  ])
)

const migrateCommand = Command.make("migrate", {
  input: Argument.String("input"),
  output: Flag.String("output").pipe(Flag.withAlias("o")),
  key: Flag.String("key").pipe(Flag.withDescription("Key file of the v1 stream")),
  newKey: Flag.String("new-key").pipe(Flag.withDescription("Key file for the v2 output (default: the same key)"), Flag.optional),
  limitRate: commonFlags.limitRate,
  quiet
}, migrate).pipe(Command.withDescription("Rewrite a legacy AGCM v1 stream as AGCM v2"))

const processorsCommand = Command.make("processors").pipe(
  Command.withSubcommands([Command.make("list", { json }, processorsList).pipe(Command.withDescription("Built-in and configured processors"))])
)
const configCommand = Command.make("config").pipe(
  Command.withSubcommands([Command.make("show", { json }, configShow).pipe(Command.withDescription("The effective configuration and where each value comes from"))])
)

export const root = Command.make("cage").pipe(
  Command.withDescription("Bounded-memory, resumable, chunked file encryption"),
  Command.withSubcommands([encryptCommand, decryptCommand, keygenCommand, chunkCommand, migrateCommand, jsonCommand, backupCommand, auditCommand, processorsCommand, configCommand])
)

/**
 * What a bug report needs: Cage's version and those of Node, OpenSSL, node-pty and the `age`
 * CLI found on the PATH (`null` when missing or unloadable).
 */
export const versions = Effect.promise(async () => {
  const age = await new Promise<string | null>((resolve) =>
    execFile("age", ["--version"], { timeout: 5000 }, (e, out) => resolve(e ? null : out.trim() || null))
  )
  let nodePty: string | null = null
  try {
    nodePty = (createRequire(import.meta.url)("node-pty/package.json") as { version: string }).version
  } catch {
    nodePty = null
  }
  return { cage: VERSION, node: process.versions.node, openssl: process.versions.openssl ?? null, nodePty, age }
})

/** Runs the CLI on `argv` (without node and script). */
export const cli = (argv: ReadonlyArray<string>) => {
  // `cage --version --verbose` / `--json`: effect/cli's own --version prints the version only.
  if (argv.includes("--version") && argv.every((a) => ["--version", "--verbose", "--json"].includes(a)) && argv.length > 1) {
    return Effect.flatMap(versions, (v) =>
      Effect.sync(() => {
        if (argv.includes("--json")) process.stdout.write(JSON.stringify(v) + "\n")
        else {
          process.stdout.write(
            `cage v${v.cage}\nnode ${v.node}\nopenssl ${v.openssl ?? "unknown"}\nnode-pty ${v.nodePty ?? "not found"}\nage ${v.age ?? "not found (install it for --backend age)"}\n`
          )
        }
      }))
  }
  // effect/cli prints the whole help (to stdout) before a parse error: keep what it prints,
  // and on a usage error show only the error and one line of usage, on stderr.
  const captured: Array<{ readonly toStderr: boolean; readonly text: string }> = []
  const capturing: Console.Console = {
    ...globalThis.console,
    log: (...args: ReadonlyArray<unknown>) => void captured.push({ toStderr: false, text: format(...args) }),
    error: (...args: ReadonlyArray<unknown>) => void captured.push({ toStderr: true, text: format(...args) })
  }
  return Command.runWith(root, { version: VERSION })(argv).pipe(
    Effect.provideService(Console.Console, capturing),
    Effect.onExit((exit) =>
      Effect.sync(() => {
        const failure = exit._tag === "Failure" ? Cause.squash(exit.cause) as { _tag?: unknown; commandPath?: ReadonlyArray<string>; errors?: ReadonlyArray<{ message: string }> } : undefined
        if (failure?._tag === "ShowHelp" && failure.errors !== undefined && failure.errors.length > 0) {
          const path = (failure.commandPath ?? ["cage"]).join(" ")
          const first = failure.errors[0].message.trim().replace(/\n\s*/g, " ")
          if (jsonErrors()) process.stdout.write(JSON.stringify({ error: first, exitCode: 2, kind: "UsageError" }) + "\n")
          else process.stderr.write(`cage: error: ${first}\nusage: ${path} [flags] … (run \`${path} --help\` for the flags)\n`)
          return
        }
        for (const c of captured) (c.toStderr ? process.stderr : process.stdout).write(c.text.endsWith("\n") ? c.text : `${c.text}\n`)
      })
    )
  )
}

void Effect
