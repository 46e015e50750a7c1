/**
 * `cage cluster runner|submit|status|cancel`: one job across many machines (issue 16), on
 * Effect Cluster with PostgreSQL (`@cage/cluster`). `--db` names the cluster's database as
 * `postgres://USER@HOST:PORT/DATABASE`; a password never goes on the command line (use the
 * server's trust/peer rules for local use; password support is not built yet).
 *
 * This module holds the commands' flags and help only. The `cage` program hands a cluster
 * command to a second bundle, `dist/cluster.cjs` (`../cluster-cli.ts`, handlers in
 * `./clusterRun.ts`), run as a child process: the PostgreSQL client and the cluster runtime
 * would otherwise cost every other command ~25 ms of start-up.
 *
 * @module
 */
import type { Effect } from "effect"
import { Argument, Command, Flag } from "effect/cli"

const db = Flag.String("db").pipe(Flag.withDescription("The cluster's PostgreSQL: postgres://USER@HOST:PORT/DATABASE (no password)"))
const json = Flag.Boolean("json").pipe(Flag.withDescription("Machine-readable JSON on stdout"), Flag.withDefault(false))
const quiet = Flag.Boolean("quiet").pipe(Flag.withAlias("q"), Flag.withDescription("No progress bar or notes"), Flag.withDefault(false))

const runnerFlags = {
  listen: Flag.String("listen").pipe(Flag.withDescription("HOST:PORT this runner listens on; other runners reach it there")),
  maxSegments: Flag.Int("max-segments").pipe(Flag.withDescription("Segments this runner works on at once (default: its cores); bounds its memory"), Flag.optional),
  workers: Flag.Int("workers").pipe(Flag.withDescription("Threads each encrypt or decrypt segment runs on (default: the machine's cores, split among the runners listening on its host; 1 = the runner's own thread)"), Flag.optional),
  db
}

const submitFlags = {
  key: Flag.String("key").pipe(Flag.withDescription("Key file: the same path on every runner (each runner reads it itself; the key never enters the database)")),
  segmentSize: Flag.String("segment-size").pipe(Flag.withDescription("Bytes per segment, one activity each (default 64MiB)"), Flag.optional),
  db,
  wait: Flag.Boolean("wait").pipe(Flag.withDescription("Show the job's progress and exit with its exit code"), Flag.withDefault(false)),
  json,
  quiet
}

const encryptFlags = {
  input: Argument.String("input").pipe(Argument.withDescription("Files to encrypt, on a filesystem every runner sees (one job for all)"), Argument.atLeast(1)),
  output: Flag.String("output").pipe(Flag.withAlias("o"), Flag.withDescription("Output file, with one input (default INPUT.agcm for each); staged as OUT.partial, never replaces a file"), Flag.optional),
  ...submitFlags
}

const decryptFlags = {
  input: Argument.String("input").pipe(Argument.withDescription("AGCM v2 files to decrypt, on a filesystem every runner sees (one job for all)"), Argument.atLeast(1)),
  output: Flag.String("output").pipe(
    Flag.withAlias("o"),
    Flag.withDescription("Output file, with one input (default: each INPUT without its .agcm); staged as OUT.partial (0600), published only once every chunk authenticated"),
    Flag.optional
  ),
  ...submitFlags
}

const backupFlags = {
  input: Argument.String("input").pipe(Argument.withDescription("Directory to back up, on a filesystem every runner sees")),
  dir: Flag.String("dir").pipe(Flag.withDescription("Backup directory, the same path on every runner (default: [backup] dir in cage.toml, else ./.cage-backups)"), Flag.optional),
  rehash: Flag.Boolean("rehash").pipe(Flag.withDescription("Read every file, even those whose size, times and inode match the previous generation"), Flag.withDefault(false)),
  ...submitFlags
}

const statusFlags = {
  job: Argument.String("job").pipe(Argument.withDescription("Job id (as submit printed it); without it, the 20 most recent jobs"), Argument.optional),
  db,
  wait: Flag.Boolean("wait").pipe(Flag.withDescription("Show the job's progress until it ends and exit with its exit code (with JOB)"), Flag.withDefault(false)),
  json,
  quiet
}

const cancelFlags = {
  job: Argument.String("job").pipe(Argument.withDescription("Job id")),
  db,
  quiet
}

type Parsed<F extends Command.Command.Config> = Command.Command.Config.Infer<F>

/** What each cluster command does once its flags are parsed. */
export interface ClusterHandlers {
  readonly runner: (f: Parsed<typeof runnerFlags>) => Effect.Effect<void, unknown>
  readonly submitEncrypt: (f: Parsed<typeof encryptFlags>) => Effect.Effect<void, unknown>
  readonly submitDecrypt: (f: Parsed<typeof decryptFlags>) => Effect.Effect<void, unknown>
  readonly submitBackup: (f: Parsed<typeof backupFlags>) => Effect.Effect<void, unknown>
  readonly status: (f: Parsed<typeof statusFlags>) => Effect.Effect<void, unknown>
  readonly cancel: (f: Parsed<typeof cancelFlags>) => Effect.Effect<void, unknown>
}

/** `cage cluster …`, with `h` doing the work. */
export const clusterCommandWith = (h: ClusterHandlers) =>
  Command.make("cluster").pipe(
    Command.withDescription("One job across many machines (Effect Cluster on PostgreSQL)"),
    Command.withSubcommands([
      Command.make("runner", runnerFlags, h.runner).pipe(Command.withDescription("Run segments of cluster jobs on this machine until Ctrl-C")),
      Command.make("submit").pipe(
        Command.withDescription("Start a job on the cluster"),
        Command.withSubcommands([
          Command.make("encrypt", encryptFlags, h.submitEncrypt).pipe(Command.withDescription("Encrypt files across the cluster's runners, one job (AGCM v2, byte-identical to cage encrypt)")),
          Command.make("decrypt", decryptFlags, h.submitDecrypt).pipe(
            Command.withDescription("Decrypt AGCM files across the cluster's runners, one job (a damaged chunk fails the job, naming it; nothing is published)")
          ),
          Command.make("backup", backupFlags, h.submitBackup).pipe(
            Command.withDescription("Back up a directory into the chunk store across the cluster's runners (one generation, as cage backup create writes; restore and verify it with cage backup)")
          )
        ])
      ),
      Command.make("status", statusFlags, h.status).pipe(Command.withDescription("A job's segments done and failed, and its result; without JOB, the most recent jobs")),
      Command.make("cancel", cancelFlags, h.cancel).pipe(Command.withDescription("Stop a job; its staged output is removed (a backup writes no generation)"))
    ])
  )

