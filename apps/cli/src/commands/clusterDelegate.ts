/**
 * How the `cage` program runs a cluster command that reached `cli.cjs` (`cage cluster …`
 * itself goes straight to `cluster.cjs`: src/bin.ts; this path serves global flags before
 * `cluster`, such as `cage --log-level debug cluster status`): it has parsed and checked the
 * flags, then runs `dist/cluster.cjs` (the cluster commands' own bundle, with the PostgreSQL client and
 * the cluster runtime) on the same arguments, with the same standard streams, and exits
 * with its exit code. Keeping that code out of `cli.cjs` saves every other command ~25 ms of
 * start-up (bench/startup.mjs).
 *
 * @module
 */
import { Effect } from "effect"
import { spawn } from "node:child_process"
import * as os from "node:os"
import * as path from "node:path"
import type { ClusterHandlers } from "./cluster.js"

// `cli.cjs` and `cluster.cjs` are built side by side into dist/ (tsup.config.ts).
const program = () => path.join(__dirname, "cluster.cjs")

const delegate = (): Effect.Effect<void, unknown> =>
  Effect.callback<void>((resume) => {
    // CAGE_PARENT_PID: the child dies with this process (`kill -9` of a runner's pid).
    const child = spawn(process.execPath, [program(), ...process.argv.slice(2)], { stdio: "inherit", env: { ...process.env, CAGE_PARENT_PID: String(process.pid) } })
    const codeOf = (code: number | null, signal: NodeJS.Signals | null) => code ?? 128 + (signal ? (os.constants.signals[signal] ?? 0) : 0)
    child.once("error", (e) => resume(Effect.die(e)))
    child.once("exit", (code, signal) => {
      process.exitCode = codeOf(code, signal)
      resume(Effect.void)
    })
    // Interrupted (Ctrl-C reaches both processes; a signal sent to this one alone is passed
    // on): wait for the child to finish its own shutdown, then exit as it did, quietly, since
    // it said what happened.
    return Effect.callback<void>((done) => {
      if (child.exitCode !== null || child.signalCode !== null) return done(Effect.void)
      child.kill("SIGTERM")
      child.once("exit", (code, signal) => process.exit(codeOf(code, signal)))
    })
  })

/** Every cluster command runs in `dist/cluster.cjs`. */
export const delegateToClusterProgram: ClusterHandlers = {
  runner: delegate,
  submitEncrypt: delegate,
  submitBackup: delegate,
  submitDecrypt: delegate,
  status: delegate,
  cancel: delegate
}
