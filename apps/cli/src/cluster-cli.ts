#!/usr/bin/env node
/**
 * The cluster commands' program (bundled as `dist/cluster.cjs`): `cage cluster …` runs it
 * instead of `cli.cjs` (src/bin.ts), and `cli.cjs` runs it as a child process with the same
 * arguments when global flags come first (`commands/clusterDelegate.ts`), so the
 * PostgreSQL client and the cluster runtime load only for cluster commands.
 *
 * @module
 */
import { Command } from "effect/cli"
import { clusterCommandWith } from "./commands/cluster.js"
import { clusterHandlers } from "./commands/clusterRun.js"
import { cliFor } from "./main.js"
import { runProgram } from "./Program.js"

// Run by `cage` (CAGE_PARENT_PID): when that process dies, `kill -9` included, this one
// dies the same way within 100 ms, as if they were one process (Linux has no exec for Node).
const parent = Number(process.env.CAGE_PARENT_PID ?? 0)
if (parent > 0) {
  setInterval(() => {
    if (process.ppid !== parent) process.kill(process.pid, "SIGKILL")
  }, 100).unref()
}

const tree = Command.make("cage").pipe(Command.withSubcommands([clusterCommandWith(clusterHandlers)]))

runProgram((argv) => cliFor(tree, argv))
