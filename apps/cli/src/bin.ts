#!/usr/bin/env node
/**
 * Entry point of the `cage` binary.
 *
 * @module
 */
// Deep imports: the package index pulls in HTTP, Redis and more (about 2 s of startup).
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Cause, Effect } from "effect"
import { report } from "./Errors.js"
import { cli } from "./main.js"

const isCliError = (e: unknown) => typeof e === "object" && e !== null && String((e as { _tag?: unknown })._tag ?? "") in cliTags
const cliTags = { UnrecognizedOption: 1, DuplicateOption: 1, MissingOption: 1, MissingArgument: 1, UnexpectedArgument: 1, InvalidValue: 1, UnknownSubcommand: 1, ValidationError: 1, ShowHelp: 1, UserError: 1 }

const program = cli(process.argv.slice(2)).pipe(
  Effect.catch((error: unknown) =>
    isCliError(error)
      // effect/cli already printed the help and the parse error.
      ? Effect.sync(() => { process.exitCode = 2 })
      : report(error)
  ),
  Effect.provide(NodeServices.layer)
)

NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  teardown: (exit, onExit) => {
    if (exit._tag === "Success") return onExit(Number(process.exitCode ?? 0))
    if (Cause.hasInterruptsOnly(exit.cause)) {
      process.stderr.write("cage: interrupted; run the same command again to resume\n")
      return onExit(130)
    }
    // Typed failures were reported above; what is left is a defect: a bug, said as such.
    const defect = Cause.squash(exit.cause)
    process.stderr.write(`cage: internal error: ${defect instanceof Error ? defect.stack ?? defect.message : String(defect)}\n`)
    onExit(1)
  }
})
