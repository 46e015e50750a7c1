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
import { Command } from "effect/cli"
import { chunkCommand } from "./commands/chunk.js"
import { decryptCommand, encryptCommand } from "./commands/crypt.js"
import { configCommand, keygenCommand, migrateCommand, processorsCommand } from "./commands/misc.js"
import { auditCommand } from "./commands/audit.js"
import { backupCommand } from "./commands/backup.js"
import { jsonCommand } from "./commands/json.js"
import { clusterCommandWith } from "./commands/cluster.js"
import { delegateToClusterProgram } from "./commands/clusterDelegate.js"

export const VERSION = "0.1.0"

export const root = Command.make("cage").pipe(
  Command.withDescription("Bounded-memory, resumable, chunked file encryption"),
  Command.withSubcommands([encryptCommand, decryptCommand, keygenCommand, chunkCommand, migrateCommand, jsonCommand, backupCommand, auditCommand, processorsCommand, configCommand, clusterCommandWith(delegateToClusterProgram)])
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
export const cli = (argv: ReadonlyArray<string>) => cliFor(root, argv)

/** Runs the command tree `tree` on `argv`: `--version --verbose`, and usage errors in one line. */
export const cliFor = <Name extends string, I, E, R>(tree: Command.Command<Name, I, E, R>, argv: ReadonlyArray<string>) => {
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
  return Command.runWith(tree, { version: VERSION })(argv).pipe(
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
