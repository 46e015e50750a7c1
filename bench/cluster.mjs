// Scale-out (issue 16): what the cluster costs on one machine. A throwaway PostgreSQL, one
// cluster of 1 runner, one of 2 runners (which split the machine's cores by default: same
// host), and one of 2 runners given `--workers` of half the cores each by hand (each cluster
// in its own database), and single-machine
// `cage encrypt` of the same 1 GiB file, interleaved round by round, medians. Each cluster
// run is `cage cluster submit encrypt … --wait` (a fresh client: submit, then poll until the
// output is published, fsynced). Then the rows and messages one job leaves in the database,
// against `Plan.estimate`, and a 10 GiB job on the 2 runners against `cage encrypt` of it, the
// page cache emptied before each run (`--big-gib 0` skips it, `--big-reps` rounds, default 2).
// Then a backup of a 1 GiB directory (4 files of 128 MiB, 128 of 4 MiB) into a new chunk
// store: `cage backup create` against `cage cluster submit backup --wait` on the 2 runners
// (`--backup-reps 0` skips it).
// Usage: node bench/cluster.mjs [--reps 5] [--big-gib 10] [--big-reps 2] [--backup-reps 5]. Target: 2 runners ≥ 0.8x single.
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { spawn, spawnSync } from "node:child_process"
import { CAGE, dropCaches, ensureWork, interleaved, mbps, numberOption, randomFile, ROOT, table, WORK, writeResult } from "./lib.mjs"

const { Plan, Postgres } = await import(path.join(ROOT, "packages/cluster/dist/index.js"))
const reps = numberOption("--reps", 5)
const bigGiB = numberOption("--big-gib", 10)
const backupReps = numberOption("--backup-reps", 5)
const bigReps = numberOption("--big-reps", 2)
const GiB = 1024 ** 3
ensureWork()
const input = randomFile("cluster-1g.bin", GiB)
const key = path.join(WORK, "cluster.key")
fs.rmSync(key, { force: true })
spawnSync("node", [CAGE, "keygen", "-o", key, "-q"])

const pg = await Postgres.startPostgres()
const runners = []
const psql = (db, sql) => pg.run("psql", ["-h", pg.host, "-p", String(pg.port), "-U", pg.username, "-Atc", sql, db]).trim()
const cluster = async (db, n, extra = []) => {
  psql("postgres", `create database ${db}`)
  const url = `postgres://${pg.username}@${pg.host}:${pg.port}/${db}`
  for (let i = 0; i < n; i++) runners.push(spawn("node", [CAGE, "cluster", "runner", "--listen", `127.0.0.1:${await Postgres.freePort()}`, "--db", url, ...extra], { stdio: "ignore" }))
  return url
}
const half = Math.max(1, Math.floor(os.availableParallelism() / 2))
const split = `cluster, 2 runners, --workers ${half} each`
try {
  const one = await cluster("one", 1)
  const two = await cluster("two", 2)
  const twoSplit = await cluster("twosplit", 2, ["--workers", String(half)])
  await new Promise((r) => setTimeout(r, 3000))
  const out = path.join(WORK, "cluster-out.agcm")
  const submit = (url) => [["node", CAGE, "cluster", "submit", "encrypt", input, "-o", out, "--key", key, "--db", url, "--wait", "-q"], { remove: [out, `${out}.partial`] }]
  const r = interleaved({
    "cage encrypt (one process)": [["node", CAGE, "encrypt", input, "-o", out, "--key", key, "-q"], { remove: [out] }],
    "cluster, 1 runner": submit(one),
    "cluster, 2 runners": submit(two),
    [split]: submit(twoSplit)
  }, reps)
  fs.rmSync(out, { force: true })
  const single = r["cage encrypt (one process)"].seconds
  console.log(`1 GiB, median of ${reps} interleaved runs (default durable writes; cluster runs include the client's start, submit and polling)`)
  console.log(table([
    ["run", "s", "MB/s", "vs cage encrypt", "peak RSS (client) MiB"],
    ...Object.entries(r).map(([k, v]) => [k, v.seconds.toFixed(2), mbps(GiB, v.seconds).toFixed(0), (single / v.seconds).toFixed(2) + "x", v.rssMiB.toFixed(0)])
  ]))
  const ratio = single / r["cluster, 2 runners"].seconds
  const splitRatio = single / r[split].seconds
  console.log(`2 runners / one process: ${ratio.toFixed(2)}x (target ≥ 0.80: ${ratio >= 0.8 ? "met" : "not met"}); sharing the cores (--workers ${half} each): ${splitRatio.toFixed(2)}x (${splitRatio >= 0.8 ? "met" : "not met"})`)

  // Rows and messages of one job, against the paper estimate.
  const jobs = Number(psql("two", "select count(*) from cluster_messages where tag = 'run' and entity_type = 'Workflow/cage/job'"))
  const messages = Number(psql("two", "select count(*) from cluster_messages"))
  const replies = Number(psql("two", "select count(*) from cluster_replies"))
  const payload = Number(psql("two", "select coalesce(avg(length(payload)), 0)::int from cluster_messages"))
  const plan = Plan.planJob([{ path: input, size: GiB }], { headerBytes: 66, chunkBytes: 65536, overheadBytes: 16, shortFinal: true }, 64 * 1024 * 1024)
  const est = Plan.estimate(plan)
  console.log(`one 1 GiB job: ${messages / jobs} messages and ${replies / jobs} replies measured (${jobs} jobs), ${est.messages} estimated; ${payload} bytes of payload per message on average`)
  const result = { reps, seconds: Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v.seconds])), ratio, splitRatio, perJob: { messages: messages / jobs, replies: replies / jobs, estimated: est.messages, payloadBytes: payload } }

  if (backupReps > 0) {
    const tree = path.join(WORK, "cluster-tree")
    if (!fs.existsSync(path.join(tree, "done"))) {
      fs.rmSync(tree, { recursive: true, force: true })
      fs.mkdirSync(path.join(tree, "small"), { recursive: true })
      // Truly random bytes (not randomFile's repeated block, which the store would dedup).
      const fd = fs.openSync("/dev/urandom", "r")
      const buf = Buffer.allocUnsafe(4 * 1024 ** 2)
      const write = (file, blocks) => {
        const out = fs.openSync(file, "w")
        for (let i = 0; i < blocks; i++) fs.writeSync(out, buf, 0, fs.readSync(fd, buf, 0, buf.length, null))
        fs.closeSync(out)
      }
      for (let i = 0; i < 4; i++) write(path.join(tree, `big-${i}.bin`), 32)
      for (let i = 0; i < 128; i++) write(path.join(tree, "small", `f-${i}.bin`), 1)
      fs.closeSync(fd)
      fs.writeFileSync(path.join(tree, "done"), "")
    }
    const store = path.join(WORK, "cluster-store")
    const b = interleaved({
      "cage backup create (one process)": [["node", CAGE, "backup", "create", tree, "--dir", store, "--key", key, "-q"], { remove: [store] }],
      "cluster backup, 2 runners": [["node", CAGE, "cluster", "submit", "backup", tree, "--dir", store, "--key", key, "--db", two, "--wait", "-q"], { remove: [store] }]
    }, backupReps)
    fs.rmSync(store, { recursive: true, force: true })
    const one = b["cage backup create (one process)"].seconds
    console.log(`backup of a 1 GiB directory (132 files) into a new store, median of ${backupReps} interleaved runs`)
    console.log(table([
      ["run", "s", "MB/s", "vs cage backup create"],
      ...Object.entries(b).map(([k, v]) => [k, v.seconds.toFixed(2), mbps(GiB, v.seconds).toFixed(0), (one / v.seconds).toFixed(2) + "x"])
    ]))
    result.backup = { reps: backupReps, seconds: Object.fromEntries(Object.entries(b).map(([k, v]) => [k, v.seconds])) }
  }

  if (bigGiB > 0) {
    const big = randomFile(`cluster-${bigGiB}g.bin`, bigGiB * GiB)
    const bigOut = path.join(WORK, "cluster-big.agcm")
    psql("postgres", "create database big")
    const url = `postgres://${pg.username}@${pg.host}:${pg.port}/big`
    for (let i = 0; i < 2; i++) runners.push(spawn("node", [CAGE, "cluster", "runner", "--listen", `127.0.0.1:${await Postgres.freePort()}`, "--db", url], { stdio: "ignore" }))
    await new Promise((r) => setTimeout(r, 3000))
    // Both read the source from the disk: the page cache is emptied before each run (as root),
    // else whichever ran second would find much of the source cached.
    const cold = dropCaches()
    const runs = interleaved({
      "cage encrypt (one process)": [["node", CAGE, "encrypt", big, "-o", bigOut, "--key", key, "-q"], { remove: [bigOut], coldCache: true }],
      "cluster, 2 runners": [["node", CAGE, "cluster", "submit", "encrypt", big, "-o", bigOut, "--key", key, "--db", url, "--wait", "-q"], { remove: [bigOut], coldCache: true }]
    }, bigReps)
    const t = runs["cluster, 2 runners"]
    const single = runs["cage encrypt (one process)"]
    fs.rmSync(bigOut, { force: true })
    console.log(`${bigGiB} GiB, median of ${bigReps} interleaved runs, ${cold ? "page cache emptied before each run" : "page cache NOT emptied (not root): the second command of a round may find the source cached"}`)
    console.log(table([
      ["run", "s", "MB/s", "vs cage encrypt"],
      ...Object.entries(runs).map(([k, v]) => [k, v.seconds.toFixed(1), mbps(bigGiB * GiB, v.seconds).toFixed(0), (single.seconds / v.seconds).toFixed(2) + "x"])
    ]))
    const bigPlan = Plan.planJob([{ path: big, size: bigGiB * GiB }], { headerBytes: 66, chunkBytes: 65536, overheadBytes: 16, shortFinal: true }, 64 * 1024 * 1024)
    // Per job: the database holds every run's.
    const bigJobs = Number(psql("big", "select count(*) from cluster_messages where tag = 'run' and entity_type = 'Workflow/cage/job'"))
    const m = Number(psql("big", "select count(*) from cluster_messages")) / bigJobs
    const rep = Number(psql("big", "select count(*) from cluster_replies")) / bigJobs
    const bytes = Number(psql("big", "select pg_total_relation_size('cluster_messages') + pg_total_relation_size('cluster_replies')"))
    console.log(`${bigGiB} GiB job on 2 runners: ${t.seconds.toFixed(1)} s (${mbps(bigGiB * GiB, t.seconds).toFixed(0)} MB/s), ${bigPlan.segments.length} segments; per job ${m} messages and ${rep} replies measured (${bigJobs} jobs), ${Plan.estimate(bigPlan).messages} estimated; ${(bytes / 1024).toFixed(0)} KiB of table space for them all`)
    result.big = { gib: bigGiB, reps: bigReps, coldCache: cold, seconds: t.seconds, single: single.seconds, segments: bigPlan.segments.length, messages: m, replies: rep, estimated: Plan.estimate(bigPlan).messages, tableBytes: bytes }
  }
  writeResult("cluster", result)
} finally {
  for (const r of runners) r.kill("SIGKILL")
  pg.stop()
}
