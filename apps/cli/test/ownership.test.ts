/**
 * One writer per output, inputs that change under a run, signals and leftovers: real `cage`
 * processes (issue 18). Runs are slowed with --limit-rate so that "mid-run" is a fact of the
 * schedule, not of this machine's speed.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import { describe, expect, it } from "vitest"
import { BIN, cage, dir, f, key, useKeyedDir, writeRandom } from "./helpers.js"

useKeyedDir()

const sha = (file: string) => createHash("sha256").update(fs.readFileSync(file)).digest("hex")
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const ls = () => fs.readdirSync(dir).sort()

interface Finished {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stderr: string
  readonly endedAt: number
}
const start = (args: ReadonlyArray<string>): { child: ChildProcess; done: Promise<Finished> } => {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "ignore", "pipe"] })
  let stderr = ""
  child.stderr!.on("data", (d) => (stderr += d))
  const done = new Promise<Finished>((resolve) => child.on("close", (code, signal) => resolve({ code, signal, stderr, endedAt: Date.now() })))
  return { child, done }
}
const size = (p: string) => {
  try {
    return fs.statSync(p).size
  } catch {
    return -1
  }
}
/** Waits until `p` holds at least `bytes` bytes, or the run ended (false). */
const waitForSize = async (p: string, bytes: number, run: { child: ChildProcess }) => {
  while (run.child.exitCode === null && run.child.signalCode === null) {
    if (size(p) >= bytes) return true
    await sleep(2)
  }
  return false
}

describe("one writer per output: 8 runs started at once, 10 rounds", () => {
  const rounds = 10
  const writers = 8
  // 2 MiB at 1 MiB/s: the winner runs for 2 s, far longer than 8 node start-ups.
  const limited = ["--limit-rate", "1MiB", "--checkpoint-interval", "100", "-q"]

  const race = async (args: () => ReadonlyArray<string>, out: string, check: () => void) => {
    for (let round = 0; round < rounds; round++) {
      const runs = Array.from({ length: writers }, () => start(args()))
      const results = await Promise.all(runs.map((r) => r.done))
      const winners = results.filter((r) => r.code === 0)
      const losers = results.filter((r) => r.code !== 0)
      expect(winners.length, `round ${round}: ${results.map((r) => `${r.code} ${r.stderr}`).join(" | ")}`).toBe(1)
      for (const l of losers) {
        expect(l.code).toBe(6)
        expect(l.stderr).toMatch(new RegExp(`^cage: error: ${out.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} is being written by another cage process, pid \\d+ \\(since [^)]+\\)\\n$`))
        // Refused at once, before reading: while the winner (2 s of rate-limited reading)
        // still ran. A loser that had waited for it would have found the output published.
        expect(l.endedAt).toBeLessThan(winners[0].endedAt)
      }
      check()
      fs.rmSync(out)
    }
  }

  it("encrypt: exactly one exits 0 and its output round-trips; the others exit 6 at once; nothing stray", async () => {
    writeRandom(f("in"), 2 << 20)
    await race(() => ["encrypt", "--key", key, ...limited, "-o", f("same.agcm"), f("in")], f("same.agcm"), () => {
      expect(ls()).toEqual(["in", "k.key", "same.agcm"])
      expect(cage(["decrypt", "-q", "--key", key, "-o", f("rt"), f("same.agcm")]).code).toBe(0)
      expect(sha(f("rt"))).toBe(sha(f("in")))
      fs.rmSync(f("rt"))
    })
  }, 180_000)

  it("decrypt: exactly one exits 0 with the plaintext; the others exit 6 at once; nothing stray", async () => {
    writeRandom(f("in"), 2 << 20)
    expect(cage(["encrypt", "-q", "--key", key, "-o", f("in.agcm"), f("in")]).code).toBe(0)
    await race(() => ["decrypt", "--key", key, ...limited, "-o", f("d.out"), f("in.agcm")], f("d.out"), () => {
      expect(ls()).toEqual(["d.out", "in", "in.agcm", "k.key"])
      expect(sha(f("d.out"))).toBe(sha(f("in")))
    })
  }, 180_000)

  it("a lock left by kill -9 does not block: the rerun resumes at once", async () => {
    writeRandom(f("in"), 3 << 20)
    const args = ["encrypt", "--key", key, ...limited, "--json", "-o", f("o.agcm"), f("in")]
    const run = start(args)
    // Killed once a checkpoint exists (its presence is the proof resume has something to do).
    while (!fs.existsSync(f("o.agcm.cage-checkpoint"))) await sleep(2)
    run.child.kill("SIGKILL")
    await run.done
    expect(ls()).toEqual(["in", "k.key", "o.agcm.cage-checkpoint", "o.agcm.cage-lock", "o.agcm.partial"])
    const again = spawnSync(process.execPath, [BIN, ...args])
    expect(again.stderr.toString()).toBe("")
    expect(again.status).toBe(0)
    expect(JSON.parse(again.stdout.toString()).resumedFrom).toBeGreaterThan(0)
    expect(ls()).toEqual(["in", "k.key", "o.agcm"])
  }, 60_000)
})

describe("two resumes of one checkpoint are two writers", () => {
  it("8 resumes started at once after kill -9: one resumes and finishes, the others exit 6 at once", async () => {
    writeRandom(f("in"), 2 << 20)
    // 2 MiB at 512 KiB/s: after the kill at the first checkpoint, 3 s or more remain.
    const args = ["encrypt", "--key", key, "--limit-rate", "512KiB", "--checkpoint-interval", "100", "--json", "-o", f("o.agcm"), f("in")]
    const first = start(args)
    while (!fs.existsSync(f("o.agcm.cage-checkpoint"))) await sleep(2)
    first.child.kill("SIGKILL")
    await first.done
    const runs = Array.from({ length: 8 }, () => {
      const child = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "pipe", "pipe"] })
      let stdout = ""
      child.stdout!.on("data", (d) => (stdout += d))
      return new Promise<{ code: number | null; stdout: string }>((r) => child.on("close", (code) => r({ code, stdout })))
    })
    const results = await Promise.all(runs)
    const winners = results.filter((r) => r.code === 0)
    expect(winners.length).toBe(1)
    expect(JSON.parse(winners[0].stdout).resumedFrom).toBeGreaterThan(0)
    for (const r of results.filter((x) => x.code !== 0)) {
      expect(r.code).toBe(6)
      // --json: the refusal is JSON on stdout too.
      expect(JSON.parse(r.stdout)).toMatchObject({ exitCode: 6, kind: "LockBusy" })
    }
    expect(ls()).toEqual(["in", "k.key", "o.agcm"])
    expect(cage(["decrypt", "-q", "--key", key, "-o", f("rt"), f("o.agcm")]).code).toBe(0)
    expect(sha(f("rt"))).toBe(sha(f("in")))
  }, 60_000)
})

describe("an input rewritten at random offsets at random moments: never a mixed output", () => {
  it("20 runs: exit 0 only with one consistent version; otherwise exit 4, nothing left; the same command then succeeds", async () => {
    const total = 2 << 20
    const counts = { changedMidRun: 0, consistent: 0 }
    for (let run = 0; run < 20; run++) {
      writeRandom(f("in"), total)
      const before = fs.readFileSync(f("in"))
      const args = ["encrypt", "--key", key, "--limit-rate", "2MiB", "--checkpoint-interval", "100", "-q", "-o", f("o.agcm"), f("in")]
      const r = start(args)
      // The moment is chosen from the .partial's size, so it always lands while the run reads.
      const at = Math.floor(total * (0.1 + 0.6 * Math.random()))
      const reached = await waitForSize(f("o.agcm.partial"), at, r)
      expect(reached).toBe(true)
      const fd = fs.openSync(f("in"), "r+")
      for (let k = 0; k < 3; k++) fs.writeSync(fd, randomBytes(4096), 0, 4096, Math.floor(Math.random() * (total - 4096)))
      fs.closeSync(fd)
      const after = fs.readFileSync(f("in"))
      const res = await r.done
      if (res.code === 0) {
        counts.consistent++
        expect(cage(["decrypt", "-q", "--key", key, "-o", f("rt"), f("o.agcm")]).code).toBe(0)
        const rt = fs.readFileSync(f("rt"))
        expect(rt.equals(before) || rt.equals(after)).toBe(true)
        fs.rmSync(f("rt"))
      } else {
        counts.changedMidRun++
        expect(res.code).toBe(4)
        expect(res.stderr).toMatch(new RegExp(`^cage: error: ${f("in")} changed while it was being read \\(`))
        expect(ls()).toEqual(["in", "k.key"])
        const again = cage(args)
        expect(again.code).toBe(0)
        expect(cage(["decrypt", "-q", "--key", key, "-o", f("rt"), f("o.agcm")]).code).toBe(0)
        expect(fs.readFileSync(f("rt")).equals(after)).toBe(true)
        fs.rmSync(f("rt"))
      }
      fs.rmSync(f("o.agcm"))
      expect(ls()).toEqual(["in", "k.key"])
    }
    // Every change landed while the input was being read: none may have gone unnoticed.
    expect(counts).toEqual({ changedMidRun: 20, consistent: 0 })
  }, 180_000)
})
