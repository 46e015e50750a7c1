// `cage cluster` end to end (issue 16): a throwaway PostgreSQL, two `cage cluster runner`
// processes on loopback, jobs submitted, watched and cancelled through the CLI; outputs read
// back by the single-machine `cage decrypt`; refusals in the user's terms.
import { Postgres } from "@cage/cluster"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BIN, cage, cageAsync, tempDir, writeRandom } from "./helpers.js"

let pg: Postgres.Postgres
let db: string
let dir: string
const runners: Array<ChildProcess> = []

beforeAll(async () => {
  pg = await Postgres.startPostgres()
  db = `postgres://${pg.username}@${pg.host}:${pg.port}/${pg.database}`
  dir = tempDir()
  // The first seals and opens on 2 threads (its own and a pool worker), the second on its
  // own only (given: the default would split the cores): the jobs below are byte-identical either way.
  for (let i = 0; i < 2; i++) runners.push(cageAsync(["cluster", "runner", "--listen", `127.0.0.1:${await Postgres.freePort()}`, "--db", db, "--workers", i === 0 ? "2" : "1"]))
  expect(cage(["keygen", "-o", path.join(dir, "k.key"), "-q"]).code).toBe(0)
}, 60_000)

afterAll(() => {
  for (const r of runners) r.kill("SIGKILL")
  pg?.stop()
  fs.rmSync(dir, { recursive: true, force: true })
})

/** Stops the runners, then submits an encryption of a new random file of `size` bytes in 1 MiB segments. */
const submitWithoutRunners = (name: string, size: number) => {
  for (const r of runners.splice(0)) r.kill("SIGTERM")
  const src = path.join(dir, name)
  writeRandom(src, size)
  const key = path.join(dir, "k.key")
  const r = cage(["cluster", "submit", "encrypt", src, "--key", key, "--db", db, "--segment-size", "1MiB"])
  expect(r.code).toBe(0)
  return { src, key, job: r.stdout.toString().trim() }
}

describe("cage cluster", () => {
  it("submit --wait encrypts across the runners; cage decrypt reads the output; status reports the job; the database never holds the key", () => {
    const src = path.join(dir, "a.bin")
    writeRandom(src, 9 * 1024 * 1024 + 4321)
    const key = path.join(dir, "k.key")
    const r = cage(["cluster", "submit", "encrypt", src, "--key", key, "--db", db, "--segment-size", "1MiB", "--wait", "--json"])
    expect(r.stderr).toBe("")
    expect(r.code).toBe(0)
    const result = JSON.parse(r.stdout.toString())
    expect(result).toMatchObject({ state: "done", segments: 10, done: 10, failed: [], output: `${src}.agcm` })
    expect(fs.existsSync(`${src}.agcm.partial`)).toBe(false)
    expect(fs.statSync(`${src}.agcm`).mode & 0o777).toBe(0o600)
    expect(cage(["decrypt", `${src}.agcm`, "-o", path.join(dir, "a.out"), "--key", key, "-q"]).code).toBe(0)
    expect(fs.readFileSync(path.join(dir, "a.out")).equals(fs.readFileSync(src))).toBe(true)
    const s = cage(["cluster", "status", result.job, "--db", db])
    expect(s.code).toBe(0)
    expect(s.stdout.toString()).toContain("done, published")
    expect(s.stdout.toString()).toContain("segments 10/10 done")
    // Who did what: the segments per runner add up to the job.
    const perRunner = [...s.stdout.toString().matchAll(/^ {2}runner 127\.0\.0\.1:\d+: (\d+) segments?/gm)].map((m) => Number(m[1]))
    expect(perRunner.length).toBeGreaterThanOrEqual(1)
    expect(perRunner.reduce((a, b) => a + b, 0)).toBe(10)
    expect(result.runners.reduce((n: number, r: { bytes: number }) => n + r.bytes, 0)).toBe(9 * 1024 * 1024 + 4321)
    // An ended job's rate is its own, up to its last segment: the same a second later.
    expect(s.stdout.toString()).toMatch(/\n {2}\d+\.\d MiB\/s from submit to its last segment\n/)
    const rate = () => JSON.parse(cage(["cluster", "status", result.job, "--db", db, "--json"]).stdout.toString()).bytesPerSecond as number
    const before = rate()
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1100)
    expect([before > 0, rate()]).toEqual([true, before])
    const keyText = fs.readFileSync(key, "utf8")
    const dump = pg.run("pg_dump", ["-h", pg.host, "-p", String(pg.port), "-U", pg.username, "--data-only", pg.database])
    expect(dump).toContain(result.job)
    for (const line of keyText.split("\n").filter((l) => l.startsWith("cage-key-1:"))) {
      const b64 = line.slice("cage-key-1:".length).trim()
      const raw = Buffer.from(b64, "base64url")
      for (const form of [b64, raw.toString("hex"), raw.toString("base64")]) expect(dump).not.toContain(form)
    }
  }, 120_000)

  it("submit decrypt: the runners decrypt an AGCM file (cage encrypt's) byte for byte; a damaged chunk fails the job naming it, and nothing is published", () => {
    const src = path.join(dir, "f.bin")
    writeRandom(src, 5 * 1024 * 1024 + 999)
    const key = path.join(dir, "k.key")
    expect(cage(["encrypt", src, "-o", `${src}.agcm`, "--key", key, "-q"]).code).toBe(0)
    let r = cage(["cluster", "submit", "decrypt", `${src}.agcm`, "-o", path.join(dir, "f.out"), "--key", key, "--db", db, "--segment-size", "1MiB", "--wait", "--json"])
    expect([r.code, r.stderr]).toEqual([0, ""])
    expect(JSON.parse(r.stdout.toString())).toMatchObject({ state: "done", segments: 6, done: 6, bytes: 5 * 1024 * 1024 + 999 })
    expect(fs.readFileSync(path.join(dir, "f.out")).equals(fs.readFileSync(src))).toBe(true)
    expect(fs.statSync(path.join(dir, "f.out")).mode & 0o777).toBe(0o600)
    // One byte of chunk 37 (of 81 chunks of 64 KiB) flipped: the job fails naming that chunk.
    const damaged = path.join(dir, "g.agcm")
    const bytes = fs.readFileSync(`${src}.agcm`)
    const headerBytes = bytes.length - (5 * 1024 * 1024 + 999) - 81 * 16
    bytes[headerBytes + 37 * (65536 + 16) + 1000] ^= 1
    fs.writeFileSync(damaged, bytes)
    r = cage(["cluster", "submit", "decrypt", damaged, "-o", path.join(dir, "g.out"), "--key", key, "--db", db, "--segment-size", "1MiB", "--wait"])
    expect(r.code).toBe(3)
    // Segments of 1 MiB of ciphertext hold 15 chunks: chunk 37 is in segment 2.
    expect(r.stderr.split("\n").at(-2)).toMatch(/^cage: error: job [0-9a-f]+ failed: segment 2 \(\S+g\.agcm, chunks 30\.\.44\) on runner 127\.0\.0\.1:\d+: chunk 37 failed authentication.*; nothing published under \S+g\.out$/)
    expect(fs.existsSync(path.join(dir, "g.out"))).toBe(false)
    expect(fs.existsSync(path.join(dir, "g.out.partial"))).toBe(false)
    // Status names the failed segment once, with its chunks, its runner and the chunk.
    const failedJob = /job ([0-9a-f]+) failed/.exec(r.stderr)?.[1] ?? ""
    const st = cage(["cluster", "status", failedJob, "--db", db]).stdout.toString()
    expect(st).toMatch(/\n {2}failed: segment 2 \(\S+g\.agcm, chunks 30\.\.44\) on runner 127\.0\.0\.1:\d+: chunk 37 failed authentication/)
    expect(st).not.toMatch(/\) failed: segment 2 \(/)
    // Per runner too: the one that ran it counts it failed (text and --json).
    expect(st).toMatch(/\n {2}runner 127\.0\.0\.1:\d+: \d+ segments? \(\d+\.\d MiB\), 1 failed\n/)
    const perRunner = (JSON.parse(cage(["cluster", "status", failedJob, "--db", db, "--json"]).stdout.toString()) as { runners: Array<{ failed: number }> }).runners.map((x) => x.failed)
    expect([perRunner.filter((n) => n === 1).length, perRunner.reduce((a, b) => a + b, 0)]).toEqual([1, 1])
    // Once: the header gives the exit code, not the segment's error again.
    expect(st.startsWith(`job ${failedJob}: failed (exit 3)\n`)).toBe(true)
    expect(st.match(/chunk 37 failed authentication/g)).toHaveLength(1)
    // One failed segment: the others, stopped by the job's end (its OUT.partial removed), are not failures.
    expect(JSON.parse(cage(["cluster", "status", failedJob, "--db", db, "--json"]).stdout.toString())).toMatchObject({ failedCount: 1 })
    // In the list of jobs: its state with its exit code.
    expect(cage(["cluster", "status", "--db", db]).stdout.toString()).toMatch(new RegExp(`\n${failedJob}  failed \\(exit 3\\) +\\d+/\\d+ segments  `))
    // Another key: refused before anything is created.
    const other = path.join(dir, "other.key")
    expect(cage(["keygen", "-o", other, "-q"]).code).toBe(0)
    r = cage(["cluster", "submit", "decrypt", `${src}.agcm`, "-o", path.join(dir, "h.out"), "--key", other, "--db", db])
    expect(r.code).toBe(3)
    expect(r.stderr).toContain(`(--key ${other})`)
    expect(fs.existsSync(path.join(dir, "h.out.partial"))).toBe(false)
  }, 120_000)

  it("several files are one job: each published beside its source and read back; a refusal of any file leaves nothing behind", () => {
    const key = path.join(dir, "k.key")
    const sizes = [0, 1_500_000, 3 * 1024 * 1024 + 3]
    const inputs = sizes.map((size, i) => {
      const file = path.join(dir, `m${i}.bin`)
      writeRandom(file, size)
      return file
    })
    const submit = (args: ReadonlyArray<string>) => cage(["cluster", "submit", ...args, "--key", key, "--db", db])
    let r = submit(["encrypt", ...inputs, "-o", path.join(dir, "x.agcm")])
    expect([r.code, r.stderr]).toEqual([2, "cage: error: -o names one output, but 3 files were given: leave -o out (each FILE gets its own output)\n"])
    r = submit(["encrypt", inputs[0], inputs[1], inputs[0]])
    expect([r.code, r.stderr]).toEqual([2, `cage: error: ${inputs[0]}.agcm is the output of two files of this job\n`])
    fs.writeFileSync(`${inputs[2]}.agcm`, "mine")
    r = submit(["encrypt", ...inputs])
    expect([r.code, r.stderr]).toEqual([2, `cage: error: ${inputs[2]}.agcm exists (cluster jobs never replace a file)\n`])
    expect(fs.readFileSync(`${inputs[2]}.agcm`, "utf8")).toBe("mine")
    fs.rmSync(`${inputs[2]}.agcm`)
    for (const i of inputs) expect(fs.existsSync(`${i}.agcm.partial`)).toBe(false)

    r = submit(["encrypt", ...inputs, "--segment-size", "1MiB", "--wait", "--json"])
    expect([r.code, r.stderr]).toEqual([0, ""])
    const result = JSON.parse(r.stdout.toString())
    expect(result).toMatchObject({ state: "done", failed: [], files: inputs.map((i) => ({ source: i, output: `${i}.agcm` })) })
    // Segments of 16 chunks of 64 KiB: 1 (the empty file's one empty chunk) + 2 (23 chunks) + 4 (49 chunks).
    expect([result.segments, result.done]).toEqual([7, 7])
    for (const i of inputs) expect(fs.existsSync(`${i}.agcm.partial`)).toBe(false)
    // The single-machine cage decrypt reads them (the largest here; the job below decrypts all).
    expect(cage(["decrypt", `${inputs[2]}.agcm`, "-o", `${inputs[2]}.out`, "--key", key, "-q"]).code).toBe(0)
    expect(fs.readFileSync(`${inputs[2]}.out`).equals(fs.readFileSync(inputs[2]))).toBe(true)
    // Decrypt them back as one job, each INPUT.agcm to INPUT.
    const back = path.join(dir, "back")
    fs.mkdirSync(back)
    for (const i of inputs) fs.copyFileSync(`${i}.agcm`, path.join(back, `${path.basename(i)}.agcm`))
    r = submit(["decrypt", ...inputs.map((i) => path.join(back, `${path.basename(i)}.agcm`)), "--segment-size", "1MiB", "--wait", "-q"])
    expect([r.code, r.stderr]).toEqual([0, ""])
    for (const i of inputs) expect(fs.readFileSync(path.join(back, path.basename(i))).equals(fs.readFileSync(i))).toBe(true)
    r = submit(["decrypt", inputs[1]])
    expect([r.code, r.stderr]).toEqual([2, `cage: error: ${inputs[1]} does not end in .agcm: give -o OUT (with one input), or rename it\n`])
    // A later file refused while the job stages its outputs (not AGCM; another key's file):
    // the output staged for the file before it goes too, and no job is submitted.
    const later = path.join(dir, "later")
    fs.mkdirSync(later)
    fs.copyFileSync(`${inputs[1]}.agcm`, path.join(later, "good.agcm"))
    fs.writeFileSync(path.join(later, "plain.agcm"), "not an AGCM file: just a line of text that is long enough to hold a header\n".repeat(4))
    const otherKey = path.join(later, "other.key")
    expect(cage(["keygen", "-o", otherKey, "-q"]).code).toBe(0)
    expect(cage(["encrypt", inputs[1], "-o", path.join(later, "foreign.agcm"), "--key", otherKey, "-q"]).code).toBe(0)
    r = submit(["decrypt", path.join(later, "good.agcm"), path.join(later, "plain.agcm")])
    expect([r.code, r.stderr]).toEqual([3, `cage: error: ${path.join(later, "plain.agcm")}: not an AGCM file: no AGCM magic\n`])
    r = submit(["decrypt", path.join(later, "good.agcm"), path.join(later, "foreign.agcm")])
    expect(r.code).toBe(3)
    expect(r.stderr).toMatch(new RegExp(`^cage: error: ${path.join(later, "foreign.agcm").replace(/[.]/g, "\\.")}: .*\\(--key ${key.replace(/[.]/g, "\\.")}\\)\n$`))
    expect(fs.readdirSync(later).sort()).toEqual(["foreign.agcm", "good.agcm", "other.key", "plain.agcm"])
  }, 120_000)

  it("refuses in the user's terms: an output that exists or is being written, a bad key file, a missing input, a bad --db (unreachable, no such database), an unknown job", async () => {
    const src = path.join(dir, "b.bin")
    writeRandom(src, 100_000)
    const key = path.join(dir, "k.key")
    for (const [flag, value, range] of [["--workers", "0", "from 1 to 256"], ["--workers", "257", "from 1 to 256"], ["--max-segments", "0", "at least 1"]]) {
      const bad = cage(["cluster", "runner", "--listen", "127.0.0.1:1", "--db", db, flag, value])
      expect([bad.code, bad.stderr]).toEqual([2, `cage: error: ${flag} ${value}: ${range}\n`])
    }
    fs.writeFileSync(path.join(dir, "b.bin.agcm"), "mine")
    let r = cage(["cluster", "submit", "encrypt", src, "--key", key, "--db", db])
    expect([r.code, r.stderr]).toEqual([2, `cage: error: ${path.join(dir, "b.bin.agcm")} exists (cluster jobs never replace a file)\n`])
    expect(fs.readFileSync(path.join(dir, "b.bin.agcm"), "utf8")).toBe("mine")
    fs.writeFileSync(path.join(dir, "c.agcm.partial"), "another job's")
    r = cage(["cluster", "submit", "encrypt", src, "-o", path.join(dir, "c.agcm"), "--key", key, "--db", db])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("c.agcm.partial exists: another job writes")
    expect(fs.readFileSync(path.join(dir, "c.agcm.partial"), "utf8")).toBe("another job's")
    r = cage(["cluster", "submit", "encrypt", src, "-o", path.join(dir, "d.agcm"), "--key", src, "--db", db])
    expect([r.code, r.stderr]).toEqual([2, `cage: error: --key ${src}: not a key file\n`])
    r = cage(["cluster", "submit", "encrypt", src, "-o", path.join(dir, "d.agcm"), "--key", path.join(dir, "nokey"), "--db", db])
    expect([r.code, r.stderr]).toEqual([2, `cage: error: --key ${path.join(dir, "nokey")}: read failed: no such file or directory\n`])
    r = cage(["cluster", "submit", "encrypt", src, "-o", path.join(dir, "d.agcm"), "--key", dir, "--db", db])
    expect([r.code, r.stderr]).toEqual([2, `cage: error: --key ${dir}: read failed: is a directory\n`])
    // `-` at either end: refused (the runners read and write files), nothing staged, not even `-.partial`.
    for (const [args, stream] of [
      [["encrypt", "-", "--key", key], "- (standard input)"],
      [["encrypt", src, "-o", "-", "--key", key], "-o - (standard output)"],
      [["decrypt", "-", "-o", "back", "--key", key], "- (standard input)"],
      [["decrypt", `${src}.agcm`, "-o", "-", "--key", key], "-o - (standard output)"],
      [["backup", "-", "--key", key], "- (standard input)"]
    ] as const) {
      r = cage(["cluster", "submit", ...args, "--db", db], { cwd: dir })
      expect(r.code).toBe(2)
      expect(r.stderr).toMatch(new RegExp(`^cage: error: ${stream.replace(/[()]/g, "\\$&")}: a cluster job's runners read and write files on a filesystem they all see`))
    }
    expect(fs.readdirSync(dir).filter((n) => n.startsWith("-"))).toEqual([])
    // A runner whose --listen address is taken: the flag and the reason, exit 4, nothing registered.
    const taken = net.createServer()
    const port = await Postgres.freePort()
    await new Promise<void>((resolve) => taken.listen(port, "127.0.0.1", resolve))
    try {
      r = cage(["cluster", "runner", "--listen", `127.0.0.1:${port}`, "--db", db])
      expect(r.code).toBe(4)
      expect(r.stderr).toContain(`cage: error: --listen 127.0.0.1:${port}: the address is in use (another runner, or another program, listens there): give another port\n`)
    } finally {
      taken.close()
    }
    // A runner says what it is on stderr and nothing on stdout, from its start to its stop
    // (effect's "Listening on: …" info log was written there, at its exit).
    const out = fs.openSync(path.join(dir, "runner.out"), "w")
    const quiet = spawn(process.execPath, [BIN, "cluster", "runner", "--listen", `127.0.0.1:${port}`, "--db", db], { stdio: ["ignore", out, "pipe"] })
    fs.closeSync(out)
    let said = ""
    quiet.stderr?.on("data", (d: Buffer) => (said += d.toString()))
    while (!said.includes("Ctrl-C stops it")) await new Promise((r) => setTimeout(r, 50))
    await new Promise((r) => setTimeout(r, 1000))
    quiet.kill("SIGINT")
    expect(await new Promise((r) => quiet.on("exit", r))).toBe(130)
    expect(said).toBe(`cage: cluster runner on 127.0.0.1:${port}, database ${pg.host}:${pg.port}/${pg.database}; Ctrl-C stops it (its segments move to the other runners)\ncage: interrupted (SIGINT); this runner stopped; its shards and segments move to the other runners\n`)
    expect(fs.readFileSync(path.join(dir, "runner.out"), "utf8")).toBe("")
    // An address that is not this machine's (TEST-NET-1, RFC 5737).
    r = cage(["cluster", "runner", "--listen", `192.0.2.1:${port}`, "--db", db])
    expect(r.code).toBe(4)
    expect(r.stderr).toContain(`cage: error: --listen 192.0.2.1:${port}: not an address of this machine\n`)
    r = cage(["cluster", "submit", "encrypt", path.join(dir, "none"), "--key", key, "--db", db])
    expect(r.code).toBe(4)
    expect(r.stderr).toContain(`${path.join(dir, "none")}: `)
    r = cage(["cluster", "status", "0123456789abcdef", "--db", db])
    expect([r.code, r.stderr]).toEqual([3, "cage: error: no job 0123456789abcdef in this cluster\n"])
    r = cage(["cluster", "status", "0123456789abcdef", "--db", `postgres://cage:secret@${pg.host}:${pg.port}/postgres`])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("a password on the command line")
    expect(r.stderr).not.toContain("secret")
    r = cage(["cluster", "status", "0123456789abcdef", "--db", `postgres://cage@${pg.host}:${pg.port}/postgres?sslmode=require`])
    expect([r.code, r.stderr]).toEqual([2, "cage: error: --db: connection parameters (password, sslmode, …) are not supported yet: use postgres://USER@HOST:PORT/DATABASE\n"])
    // A server that is not there, and one without that database: the user's --db, exit 4, no internal error.
    const closed = await Postgres.freePort()
    r = cage(["cluster", "status", "0123456789abcdef", "--db", `postgres://cage@127.0.0.1:${closed}/postgres`])
    expect([r.code, r.stderr]).toEqual([4, `cage: error: --db postgres://cage@127.0.0.1:${closed}/postgres: cannot use the cluster's PostgreSQL (PgConnection: Failed to connect: connect ECONNREFUSED 127.0.0.1:${closed})\n`])
    // The same through the main bundle (a global flag before `cluster`: cli.cjs parses, then runs the cluster bundle as a child).
    r = cage(["--log-level", "none", "cluster", "status", "0123456789abcdef", "--db", `postgres://cage@127.0.0.1:${closed}/postgres`])
    expect([r.code, r.stderr]).toEqual([4, `cage: error: --db postgres://cage@127.0.0.1:${closed}/postgres: cannot use the cluster's PostgreSQL (PgConnection: Failed to connect: connect ECONNREFUSED 127.0.0.1:${closed})\n`])
    r = cage(["cluster", "submit", "encrypt", src, "-o", path.join(dir, "d.agcm"), "--key", key, "--db", `postgres://${pg.username}@${pg.host}:${pg.port}/nosuchdb`])
    expect(r.code).toBe(4)
    expect(r.stderr).toMatch(/^cage: error: --db postgres:\/\/\S+\/nosuchdb: cannot use the cluster's PostgreSQL \(.*database "nosuchdb" does not exist\)\n$/)
    for (const out of ["d.agcm", "d.agcm.partial", "none.agcm.partial"]) expect(fs.existsSync(path.join(dir, out))).toBe(false)
  }, 60_000)

  it("a job submitted while no runner is up says so, and is stored for the first runner to start", () => {
    // A database no runner has ever used: none can be up, whatever the other tests left.
    pg.run("createdb", ["-h", pg.host, "-p", String(pg.port), "-U", pg.username, "lonely"])
    const lonely = `postgres://${pg.username}@${pg.host}:${pg.port}/lonely`
    const src = path.join(dir, "lonely.bin")
    writeRandom(src, 200_000)
    expect(cage(["cluster", "status", "--db", lonely]).stdout.toString()).toBe("no job in this cluster\n")
    const r = cage(["cluster", "submit", "encrypt", src, "--key", path.join(dir, "k.key"), "--db", lonely])
    expect(r.code).toBe(0)
    const job = r.stdout.toString().trim()
    expect(r.stderr).toBe(`cage: no runner is up in this cluster: job ${job} starts once one is (cage cluster runner --listen HOST:PORT --db ${lonely}, on each machine)\n`)
    const s = cage(["cluster", "status", job, "--db", lonely, "--json"])
    expect(JSON.parse(s.stdout.toString())).toMatchObject({ state: "running", done: 0 })
    // -q says nothing.
    const q = cage(["cluster", "submit", "encrypt", src, "-o", path.join(dir, "lonely2.agcm"), "--key", path.join(dir, "k.key"), "--db", lonely, "-q"])
    expect([q.code, q.stderr]).toEqual([0, ""])
    // The list: newest first; past 20 jobs, the 20 most recent.
    const line = (id: string, output: string) => `${id}  ${"running".padEnd(16)}${"0/1".padStart(9)} segments  ${src} → ${path.join(dir, output)}`
    const ids = [job, q.stdout.toString().trim()]
    expect(cage(["cluster", "status", "--db", lonely]).stdout.toString()).toBe(
      ["2 jobs, newest first (cage cluster status JOB for one):", line(ids[1], "lonely2.agcm"), line(ids[0], "lonely.bin.agcm")].join("\n") + "\n"
    )
    for (let i = 3; i <= 21; i++) {
      const more = cage(["cluster", "submit", "encrypt", src, "-o", path.join(dir, `lonely${i}.agcm`), "--key", path.join(dir, "k.key"), "--db", lonely, "-q"])
      expect(more.code).toBe(0)
      ids.push(more.stdout.toString().trim())
    }
    const list = cage(["cluster", "status", "--db", lonely]).stdout.toString().trimEnd().split("\n")
    expect(list[0]).toBe("the 20 most recent of 21 jobs (cage cluster status JOB for one):")
    expect(list.slice(1)).toEqual(ids.slice(1).reverse().map((id, i) => line(id, `lonely${21 - i}.agcm`)))
    const json = JSON.parse(cage(["cluster", "status", "--db", lonely, "--json"]).stdout.toString()) as { jobs: Array<{ job: string; state: string }>; total: number }
    expect([json.total, json.jobs.map((x) => x.job)]).toEqual([21, ids.slice(1).reverse()])
    // A stored request this version cannot read (another version's, or damaged): named at
    // the end of the list, which still shows the others; alone, the job is refused with why.
    const newest = ids[20]
    pg.run("psql", ["-h", pg.host, "-p", String(pg.port), "-U", pg.username, "-qAtc", `UPDATE cluster_messages SET payload = '{"not":"a job"}' WHERE message_id = 'Workflow/cage/job/${newest}/run/'`, "lonely"])
    const mixed = cage(["cluster", "status", "--db", lonely])
    expect(mixed.code).toBe(0)
    const rows = mixed.stdout.toString().trimEnd().split("\n")
    expect(rows[0]).toBe("the 20 most recent of 21 jobs (cage cluster status JOB for one):")
    expect(rows.slice(1)).toEqual([...ids.slice(1, 20).reverse().map((id, i) => line(id, `lonely${20 - i}.agcm`)), `${newest}  unreadable: its stored request is not a Cage job this version reads`])
    const mixedJson = JSON.parse(cage(["cluster", "status", "--db", lonely, "--json"]).stdout.toString()) as { jobs: Array<{ job: string }>; unreadable: Array<{ id: string }> }
    expect([mixedJson.jobs.length, mixedJson.unreadable.map((u) => u.id)]).toEqual([19, [newest]])
    const alone = cage(["cluster", "status", newest, "--db", lonely])
    expect([alone.code, alone.stderr]).toEqual([3, `cage: error: job ${newest}: its stored request is not a Cage job this version reads\n`])
  }, 120_000)

  it("cancel stops a job and removes its staged output; nothing is published", async () => {
    // No runner while the job is submitted and cancelled: it cannot have finished first.
    const { src, key, job } = submitWithoutRunners("e.bin", 4 * 1024 * 1024)
    expect(fs.existsSync(`${src}.agcm.partial`)).toBe(true)
    const c = cage(["cluster", "cancel", job, "--db", db])
    expect([c.code, c.stderr]).toEqual([0, `cage: job ${job} cancelled; ${src}.agcm.partial removed, nothing published\n`])
    expect(fs.existsSync(`${src}.agcm.partial`)).toBe(false)
    // No runner has taken the cancel up yet: the job is "cancelling", alone and in the list of jobs.
    const one = cage(["cluster", "status", job, "--db", db])
    expect(one.stdout.toString()).toContain(`job ${job}: cancelling (cancel asked it to stop; it stops once a runner takes the request up)`)
    expect(one.stdout.toString()).toContain("  segments 0/5 done (0.0% of 4194304 bytes), 0 running, 5 not started (cancelled: they write nothing)\n")
    const listed = () => {
      const r = cage(["cluster", "status", "--db", db, "--json"])
      expect(r.code).toBe(0)
      const all = JSON.parse(r.stdout.toString()) as { jobs: Array<{ job: string; state: string; source: string }>; total: number }
      expect(all.total).toBeGreaterThanOrEqual(all.jobs.length)
      return all.jobs.find((x) => x.job === job)
    }
    expect(listed()).toMatchObject({ state: "cancelling", source: src })
    const text = cage(["cluster", "status", "--db", db])
    expect(text.stdout.toString()).toMatch(/^(\d+ jobs?, newest first|the \d+ most recent of \d+ jobs) \(cage cluster status JOB for one\):\n/)
    expect(text.stdout.toString()).toMatch(new RegExp(`\n${job}  cancelling +0/\\d+ segments  ${src.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} → `))
    // Runners started after the cancel find nothing to run for it, and publish nothing.
    for (let i = 0; i < 2; i++) runners.push(cageAsync(["cluster", "runner", "--listen", `127.0.0.1:${await Postgres.freePort()}`, "--db", db]))
    await new Promise((r) => setTimeout(r, 8000))
    expect(fs.existsSync(`${src}.agcm`)).toBe(false)
    const s = cage(["cluster", "status", job, "--db", db, "--json"])
    // Whatever of it the new runners ran stopped, or wrote nothing: none failed.
    expect(JSON.parse(s.stdout.toString())).toMatchObject({ state: "cancelled", exitCode: 130, failedCount: 0 })
    expect(listed()).toMatchObject({ state: "cancelled" })
    expect(cage(["cluster", "status", "--db", db]).stdout.toString()).toMatch(new RegExp(`\n${job}  cancelled +0/5 segments  `))
    expect(cage(["cluster", "status", job, "--db", db]).stdout.toString()).toContain(`job ${job}: cancelled\n`)
    const again = cage(["cluster", "cancel", job, "--db", db])
    expect([again.code, again.stderr]).toEqual([2, `cage: error: job ${job} already ended (cancelled): nothing to cancel\n`])
    // The same output submitted again: the cancelled job's segments (run now by the new
    // runners, or still queued) never write into the new job's staged file.
    const r2 = cage(["cluster", "submit", "encrypt", src, "--key", key, "--db", db, "--segment-size", "1MiB", "--wait", "-q"])
    expect([r2.code, r2.stderr]).toEqual([0, ""])
    expect(cage(["decrypt", `${src}.agcm`, "-o", path.join(dir, "e.out"), "--key", key, "-q"]).code).toBe(0)
    expect(fs.readFileSync(path.join(dir, "e.out")).equals(fs.readFileSync(src))).toBe(true)
  }, 60_000)

  it("a source that changes before its segments run fails the job with exit 4, naming it; nothing is published", async () => {
    const { src, job } = submitWithoutRunners("m.bin", 3 * 1024 * 1024)
    fs.appendFileSync(src, "one more line")
    for (let i = 0; i < 2; i++) runners.push(cageAsync(["cluster", "runner", "--listen", `127.0.0.1:${await Postgres.freePort()}`, "--db", db]))
    const w = cage(["cluster", "status", job, "--db", db, "--wait", "-q"])
    expect(w.code).toBe(4)
    expect(w.stderr).toMatch(new RegExp(`^cage: error: job ${job} failed: segment \\d+ \\(${src.replace(/[.]/g, "\\.")}, chunks \\d+\\.\\.\\d+\\) on runner 127\\.0\\.0\\.1:\\d+: ${src.replace(/[.]/g, "\\.")} changed while it was being read \\(size in bytes: was 3145728, now 3145741`))
    expect(fs.existsSync(`${src}.agcm`)).toBe(false)
    expect(fs.existsSync(`${src}.agcm.partial`)).toBe(false)
  }, 60_000)

  it("publish is all or nothing: a later file's final name taken while the job ran fails the job before any output is published, and that file is left as it is", async () => {
    for (const r of runners.splice(0)) r.kill("SIGTERM")
    const key = path.join(dir, "k.key")
    const srcs = ["p1.bin", "p2.bin"].map((n) => path.join(dir, n))
    for (const src of srcs) writeRandom(src, 2 * 1024 * 1024 + 5)
    const r = cage(["cluster", "submit", "encrypt", ...srcs, "--key", key, "--db", db, "--segment-size", "1MiB", "-q"])
    expect([r.code, r.stderr]).toEqual([0, ""])
    const job = r.stdout.toString().trim()
    fs.writeFileSync(`${srcs[1]}.agcm`, "the user's own file")
    for (let i = 0; i < 2; i++) runners.push(cageAsync(["cluster", "runner", "--listen", `127.0.0.1:${await Postgres.freePort()}`, "--db", db]))
    const w = cage(["cluster", "status", job, "--db", db, "--wait", "-q"])
    expect(w.code).toBe(4)
    expect(w.stderr).toContain(`publish ${srcs[1]}.agcm: ${srcs[1]}.agcm exists: it is not this job's output, and is left as it is; nothing published`)
    // The first file was ready to publish: it is not, and its staged output went with the job.
    expect(fs.existsSync(`${srcs[0]}.agcm`)).toBe(false)
    expect(fs.readFileSync(`${srcs[1]}.agcm`, "utf8")).toBe("the user's own file")
    for (const src of srcs) expect(fs.existsSync(`${src}.agcm.partial`)).toBe(false)
  }, 60_000)

  /** A small tree: files of 0 bytes to 3 MiB in two directories, and a symlink. */
  const makeTree = (root: string) => {
    fs.mkdirSync(path.join(root, "sub"), { recursive: true })
    for (const [name, size] of [["empty", 0], ["one", 1], ["a.bin", 3 * 1024 * 1024 + 7], ["sub/b.bin", 200_000], ["sub/c.bin", 65_536]] as const) writeRandom(path.join(root, name), size)
    fs.symlinkSync("a.bin", path.join(root, "link"))
  }

  it("a backup job holds the store: other writers are refused naming the job; cancel writes no generation and hands the store back", async () => {
    const src = path.join(dir, "held")
    makeTree(src)
    const backups = path.join(dir, "held-backups")
    const key = path.join(dir, "k.key")
    for (const r of runners.splice(0)) r.kill("SIGTERM")
    const r = cage(["cluster", "submit", "backup", src, "--dir", backups, "--key", key, "--db", db, "-q"])
    expect([r.code, r.stderr]).toEqual([0, ""])
    const job = r.stdout.toString().trim()
    let other = cage(["backup", "create", src, "--dir", backups, "--key", key, "-q"])
    expect(other.code).toBe(6)
    expect(other.stderr).toContain(`being written by cluster job ${job}`)
    other = cage(["cluster", "submit", "backup", src, "--dir", backups, "--key", key, "--db", db])
    expect(other.code).toBe(6)
    expect(other.stderr).toContain(`being written by cluster job ${job}`)
    const c = cage(["cluster", "cancel", job, "--db", db])
    expect([c.code, c.stderr]).toEqual([0, `cage: job ${job} cancelled; no generation written (cage backup prune removes what its segments stored)\n`])
    const made = cage(["backup", "create", src, "--dir", backups, "--key", key, "-q"])
    expect([made.code, made.stderr]).toEqual([0, ""])
    for (let i = 0; i < 2; i++) runners.push(cageAsync(["cluster", "runner", "--listen", `127.0.0.1:${await Postgres.freePort()}`, "--db", db]))
    // Refusals in the user's terms: a file instead of a directory, a key that does not open the store.
    let bad = cage(["cluster", "submit", "backup", path.join(src, "a.bin"), "--dir", backups, "--key", key, "--db", db])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain("is not a directory (cluster backups take a directory")
    const wrong = path.join(dir, "wrong.key")
    expect(cage(["keygen", "-o", wrong, "-q"]).code).toBe(0)
    bad = cage(["cluster", "submit", "backup", src, "--dir", backups, "--key", wrong, "--db", db])
    expect(bad.code).toBe(3)
    expect(bad.stderr).toContain(`--key ${wrong} does not open the backup store in ${backups}`)
  }, 60_000)

  it("submit backup --wait stores a directory across the runners; cage backup list, verify --deep and restore read the generation; the next job reads only what changed", () => {
    const src = path.join(dir, "tree")
    makeTree(src)
    const backups = path.join(dir, "backups")
    const key = path.join(dir, "k.key")
    const r = cage(["cluster", "submit", "backup", src, "--dir", backups, "--key", key, "--db", db, "--segment-size", "1MiB", "--wait", "--json"])
    expect([r.code, r.stderr]).toEqual([0, ""])
    const result = JSON.parse(r.stdout.toString())
    expect(result).toMatchObject({ kind: "backup", state: "done", source: src, output: backups, failed: [], backup: { generation: 1, files: 5, filesRead: 5, changed: [] } })
    expect(result.segments).toBe(5) // a.bin in four pieces of 1 MiB, the other files together
    const list = cage(["backup", "list", src, "--dir", backups, "--key", key])
    expect(list.stdout.toString()).toMatch(/^1 +store dir +complete/m)
    const v = cage(["backup", "verify", src, "--dir", backups, "--key", key, "--deep"])
    expect([v.code, v.stderr]).toEqual([0, expect.stringContaining("generation 1 of")])
    const out = path.join(dir, "tree.out")
    expect(cage(["backup", "restore", src, "--dir", backups, "--key", key, "-o", out, "-q"]).code).toBe(0)
    for (const name of ["empty", "one", "a.bin", "sub/b.bin", "sub/c.bin"]) expect(fs.readFileSync(path.join(out, name)).equals(fs.readFileSync(path.join(src, name))), name).toBe(true)
    expect(fs.readlinkSync(path.join(out, "link"))).toBe("a.bin")
    const s = cage(["cluster", "status", result.job, "--db", db])
    expect(s.stdout.toString()).toContain("done, generation 1 stored")
    fs.appendFileSync(path.join(src, "sub", "c.bin"), "more")
    const next = cage(["cluster", "submit", "backup", src, "--dir", backups, "--key", key, "--db", db, "--wait"])
    expect(next.code).toBe(0)
    expect(next.stderr.toString()).toMatch(/stored generation 2 of .* 5 files \(1 read\)/)
  }, 120_000)
})
