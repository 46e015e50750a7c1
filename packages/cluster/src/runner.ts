/**
 * A cluster runner process (issue 16, first cut; the `cage cluster runner` command will wrap
 * it): `node dist/runner.js --listen HOST:PORT --db HOST:PORT[/DATABASE] [--user NAME]`.
 * Registers with the runners table, takes shards, and runs segments until SIGTERM or
 * SIGINT (graceful); `kill -9` is survived by the others once its shard locks expire.
 * `--segment-delay-ms N` pauses before each segment (tests that kill a runner mid-job);
 * `--max-segments N` bounds the segments it runs at once (default: its cores); `--workers N`
 * the threads each segment's cipher runs on (default: its cores, split among the runners
 * listening on the same host).
 *
 * @module
 */
import { NodeRuntime } from "@effect/platform-node"
import { Layer } from "effect"
import { runnerLayer } from "./Cluster.js"

const arg = (name: string) => {
  const i = process.argv.indexOf(name)
  return i < 0 ? undefined : process.argv[i + 1]
}
const listen = /^(.+):(\d+)$/.exec(arg("--listen") ?? "")
const db = /^(.+):(\d+)(?:\/(.+))?$/.exec(arg("--db") ?? "")
// Whole numbers; the two counts at least 1.
const counts = ["--segment-delay-ms", "--max-segments", "--workers"].filter((name) => arg(name) !== undefined && !(name === "--segment-delay-ms" ? /^\d+$/ : /^[1-9]\d*$/).test(arg(name) ?? ""))
if (listen === null || db === null || counts.length > 0) {
  process.stderr.write(`usage: runner --listen HOST:PORT --db HOST:PORT[/DATABASE] [--user NAME]${counts.length > 0 ? ` (${counts.join(", ")}: a whole number, the counts at least 1)` : ""}\n`)
  process.exit(2)
}
NodeRuntime.runMain(Layer.launch(runnerLayer(
  { host: listen[1], port: Number(listen[2]) },
  { host: db[1], port: Number(db[2]), username: arg("--user") ?? "cage", database: db[3] ?? "postgres" },
  {
    ...(arg("--segment-delay-ms") === undefined ? {} : { segmentDelayMs: Number(arg("--segment-delay-ms")) }),
    ...(arg("--max-segments") === undefined ? {} : { maxSegments: Number(arg("--max-segments")) }),
    ...(arg("--workers") === undefined ? {} : { workers: Number(arg("--workers")) })
  }
)))
