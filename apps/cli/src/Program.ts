/**
 * Runs a command line as the main fiber of this process (the `cage` program, and the
 * cluster commands' `dist/cluster.cjs`). SIGINT, SIGTERM and SIGHUP interrupt it
 * (finalizers run: checkpoints are saved, partial outputs aborted) and the process exits
 * with 128 + the signal number (130, 143, 129) after one line saying what can be done next.
 * A closed standard output (`cage decrypt -o - f | head -c 10`) ends the run quietly with
 * 141 (128 + SIGPIPE), as `cat` would.
 *
 * @module
 */
// Deep imports: the package index pulls in HTTP, Redis and more (about 2 s of startup).
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Cause, Effect, Fiber, References } from "effect"
import type { Command } from "effect/cli"
import { report } from "./Errors.js"
import { interruptNote } from "./Io.js"

const isCliError = (e: unknown) => typeof e === "object" && e !== null && String((e as { _tag?: unknown })._tag ?? "") in cliTags
const cliTags = { UnrecognizedOption: 1, DuplicateOption: 1, MissingOption: 1, MissingArgument: 1, UnexpectedArgument: 1, InvalidValue: 1, UnknownSubcommand: 1, ValidationError: 1, ShowHelp: 1, UserError: 1 }

/** Runs `run(argv)` until it ends, then exits the process with its exit code. */
export const runProgram = (run: (argv: ReadonlyArray<string>) => Effect.Effect<unknown, unknown, Command.Environment>) => {
  const program = run(process.argv.slice(2)).pipe(
    Effect.catch((error: unknown) =>
      isCliError(error)
        // main.ts already printed the parse error and a line of usage (or the help asked for).
        ? Effect.sync(() => { process.exitCode = 2 })
        : report(error)
    ),
    Effect.provide(NodeServices.layer),
    // Cage speaks through its own lines on stderr; the libraries' info logs (effect's cluster
    // runner: "Listening on: …") only repeat them. `--log-level` (inside) still decides.
    Effect.provideService(References.MinimumLogLevel, "Warn")
  )

  const SIGNALS = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as const
  type Stop = { readonly kind: "signal"; readonly name: keyof typeof SIGNALS } | { readonly kind: "pipe" }
  let stop: Stop | undefined

  const fiber = Effect.runFork(program)
  // Keeps the event loop alive while the fiber waits on something that holds no handle.
  const keepAlive = setInterval(() => undefined, 2 ** 31 - 1)

  const interrupt = (why: Stop) => {
    if (stop !== undefined) return
    stop = why
    Effect.runFork(Fiber.interrupt(fiber))
  }
  for (const name of Object.keys(SIGNALS) as Array<keyof typeof SIGNALS>) process.on(name, () => interrupt({ kind: "signal", name }))
  // A reader that went away (EPIPE) is not an error of ours: stop, quietly. Other write errors
  // (a full disk behind `> file`) reach the failed write itself and are reported there.
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") interrupt({ kind: "pipe" })
  })

  fiber.addObserver((exit) => {
    clearInterval(keepAlive)
    let code: number
    if (exit._tag === "Success") code = Number(process.exitCode ?? 0)
    else if (Cause.hasInterruptsOnly(exit.cause) || stop !== undefined) {
      if (stop?.kind === "pipe") code = 141
      else {
        const name = stop?.name ?? "SIGINT"
        code = 128 + SIGNALS[name]
        process.stderr.write(`cage: interrupted (${name}); ${interruptNote()}\n`)
      }
    } else {
      // Typed failures were reported above; what is left is a defect: a bug, said as such.
      const defect = Cause.squash(exit.cause)
      // No stack trace for users (it can echo paths and input); CAGE_DEBUG=1 shows it.
      const where = process.env.CAGE_DEBUG === "1" && defect instanceof Error ? `\n${defect.stack}` : ""
      process.stderr.write(`cage: internal error: ${defect instanceof Error ? defect.message : String(defect)} (a bug in cage; CAGE_DEBUG=1 shows where)${where}\n`)
      code = 1
    }
    process.exit(code)
  })
}
