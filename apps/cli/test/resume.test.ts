import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as pty from "node-pty"
import { describe, expect, it } from "vitest"
import { BIN, cage, cageAsync, dir, f, key, useKeyedDir, writeRandom } from "./helpers.js"

useKeyedDir()

const sha = (file: string) => createHash("sha256").update(fs.readFileSync(file)).digest("hex")
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Starts an encryption and kills it with `signal` once a checkpoint covers at least `minBytes`. */
const interrupt = async (args: ReadonlyArray<string>, signal: NodeJS.Signals, minBytes: number) => {
  const child = cageAsync(args)
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code, sig) => resolve(sig === "SIGKILL" ? -9 : code)))
  const ckpt = f("in.agcm.cage-checkpoint")
  let killed = false
  for (let i = 0; i < 3000 && child.exitCode === null; i++) {
    if (fs.existsSync(ckpt)) {
      const done = (() => {
        try {
          return JSON.parse(fs.readFileSync(ckpt, "utf8")).inputBytes as number
        } catch {
          return 0 // mid-rename: read again
        }
      })()
      if (done >= minBytes) {
        killed = child.kill(signal)
        break
      }
    }
    await sleep(5)
  }
  return { killed, code: await exited }
}

// Rate-limited (64 MiB/s) so a kill triggered by a checkpoint lands mid-run on any machine.
const encryptArgs = () => ["encrypt", "--key", key, "--workers", "1", "--chunk-size", "16KiB", "--checkpoint-interval", "10", "--limit-rate", "64MiB", "--no-fsync", "-q", f("in")]

describe("kill -9 and resume with a real cage process", () => {
  it("resumes after repeated kill -9 and decrypts to the original; the header never changes", async () => {
    const size = 64 << 20
    writeRandom(f("in"), size)
    let header: Buffer | undefined
    let kills = 0
    let finished = false
    let killedAfterPublish = false
    for (const fraction of [0.15, 0.4, 0.7]) {
      const r = await interrupt(encryptArgs(), "SIGKILL", fraction * size)
      // Finished first, or the kill landed after the output was published: nothing to resume.
      if (!r.killed || fs.existsSync(f("in.agcm"))) {
        finished = true
        killedAfterPublish = r.killed
        break
      }
      kills++
      expect(r.code).toBe(-9)
      expect(fs.existsSync(f("in.agcm.partial"))).toBe(true)
      const h = fs.readFileSync(f("in.agcm.partial")).subarray(0, 66)
      if (header) expect(h.equals(header)).toBe(true)
      header = h
    }
    // Rate-limited runs cannot finish between the checkpoint check and the kill.
    expect(kills).toBe(3)
    expect(finished).toBe(false)
    if (!finished) {
      const last = cage([...encryptArgs(), "--json"])
      expect(last.stderr).toBe("")
      expect(last.code).toBe(0)
      expect(JSON.parse(last.stdout.toString()).resumedFrom).toBeGreaterThan(0)
    }
    expect(fs.readFileSync(f("in.agcm")).subarray(0, 66).equals(header!)).toBe(true)
    // A kill between publishing and cleaning up may leave the staging name or the checkpoint.
    if (!killedAfterPublish) {
      expect(fs.existsSync(f("in.agcm.partial"))).toBe(false)
      expect(fs.existsSync(f("in.agcm.cage-checkpoint"))).toBe(false)
    }
    expect(cage(["decrypt", "-q", "--key", key, "-o", f("out"), f("in.agcm")]).code).toBe(0)
    expect(sha(f("out"))).toBe(sha(f("in")))
  })

  it("kill -9 at random moments, resumed each time, gives output byte-identical to one resumed run from the same salt", async () => {
    writeRandom(f("in"), 16 << 20)
    // The first checkpoint fixes the salt (and so every nonce): keep a copy of that state.
    expect((await interrupt(encryptArgs(), "SIGKILL", 0)).killed).toBe(true)
    fs.copyFileSync(f("in.agcm.partial"), f("s0.partial"))
    fs.copyFileSync(f("in.agcm.cage-checkpoint"), f("s0.ckpt"))
    // Each kill lands at a random point of what is left (from the .partial's size), at most
    // 90% of the way: at 8 MiB/s the last 10% take 200 ms, so every kill lands mid-run.
    const slowArgs = () => encryptArgs().map((a) => (a === "64MiB" ? "8MiB" : a))
    const sizeOf = (p: string) => (fs.existsSync(p) ? fs.statSync(p).size : 0)
    let kills = 0
    for (let i = 0; i < 4; i++) {
      const child = cageAsync(slowArgs())
      const done = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
      const from = sizeOf(f("in.agcm.partial"))
      const at = from + Math.random() * Math.max(0, 0.9 * (16 << 20) - from)
      while (child.exitCode === null && sizeOf(f("in.agcm.partial")) < at) await sleep(2)
      child.kill("SIGKILL")
      const code = await done
      expect(code).toBe(null) // killed, not finished
      expect(fs.existsSync(f("in.agcm"))).toBe(false)
      kills++
    }
    expect(kills).toBe(4)
    if (!fs.existsSync(f("in.agcm"))) expect(cage(encryptArgs()).code).toBe(0)
    const interrupted = sha(f("in.agcm"))
    fs.renameSync(f("in.agcm"), f("interrupted.agcm"))
    fs.copyFileSync(f("s0.partial"), f("in.agcm.partial"))
    fs.copyFileSync(f("s0.ckpt"), f("in.agcm.cage-checkpoint"))
    expect(cage(encryptArgs()).code).toBe(0)
    expect(sha(f("in.agcm"))).toBe(interrupted)
    expect(cage(["decrypt", "-q", "--key", key, "-o", f("out"), f("in.agcm")]).code).toBe(0)
    expect(sha(f("out"))).toBe(sha(f("in")))
  })

  it("Ctrl-C (SIGINT) exits 130, keeps the checkpoint, and the run resumes", async () => {
    writeRandom(f("in"), 24 << 20)
    const r = await interrupt(encryptArgs(), "SIGINT", 2 << 20)
    expect(r.killed).toBe(true)
    expect(r.code).toBe(130)
    expect(fs.existsSync(f("in.agcm.cage-checkpoint"))).toBe(true)
    expect(cage(encryptArgs()).code).toBe(0)
    expect(cage(["decrypt", "-q", "--key", key, "-o", f("out"), f("in.agcm")]).code).toBe(0)
    expect(sha(f("out"))).toBe(sha(f("in")))
  })

  it("refuses to resume when the source changed (exit 5) and loses nothing", async () => {
    writeRandom(f("in"), 24 << 20)
    expect((await interrupt(encryptArgs(), "SIGKILL", 2 << 20)).killed).toBe(true)
    const fd = fs.openSync(f("in"), "r+")
    fs.writeSync(fd, Buffer.from("changed"), 0, 7, 100)
    fs.closeSync(fd)
    const partialBefore = sha(f("in.agcm.partial"))
    const r = cage(encryptArgs())
    expect(r.code).toBe(5)
    expect(r.stderr).toContain("changed")
    expect(r.stderr).toContain("--no-resume")
    expect(sha(f("in.agcm.partial"))).toBe(partialBefore)
    expect(fs.existsSync(f("in.agcm.cage-checkpoint"))).toBe(true)
    expect(cage([...encryptArgs(), "--no-resume"]).code).toBe(0)
    expect(cage(["decrypt", "-q", "--key", key, "-o", f("out"), f("in.agcm")]).code).toBe(0)
    expect(sha(f("out"))).toBe(sha(f("in")))
  })
})

describe("a real terminal", () => {
  const run = (args: ReadonlyArray<string>, answers: ReadonlyArray<[RegExp, string]> = []) =>
    new Promise<{ output: string; code: number }>((resolve) => {
      const term = pty.spawn(process.execPath, [BIN, ...args], { cols: 120, rows: 30, cwd: dir, env: process.env as Record<string, string> })
      let output = ""
      let next = 0
      term.onData((d) => {
        output += d
        if (next < answers.length && answers[next][0].test(output)) {
          const answer = answers[next++][1]
          // age-style echo race: give the prompt a moment to switch echo off before answering
          setTimeout(() => term.write(answer + "\r"), 100)
        }
      })
      term.onExit(({ exitCode }) => resolve({ output, code: exitCode }))
    })

  it("shows a live progress bar with percent, MiB/s and an ETA", async () => {
    writeRandom(f("in"), 64 << 20)
    const r = await run(["encrypt", "--key", key, "--workers", "1", f("in")])
    expect(r.code).toBe(0)
    expect(r.output).toMatch(/\d+% \|/)
    expect(r.output).toContain("MiB/s")
    // No estimate before there is a rate: no frame of the bar shows 0% with "ETA 0s".
    const frames = r.output.split(/\r|\n|\u001b\[1G/)
    expect(frames.some((x) => /^\S+ \S+\s+0% \|/.test(x.replace(/\u001b\[[0-9;?]*[A-Za-z]/g, "")))).toBe(true)
    expect(frames.filter((x) => /\s0% \|.*ETA 0s/.test(x))).toEqual([])
    expect(r.output).toContain("ETA")
  })

  it("prompts for a passphrase without echo, twice on encrypt", async () => {
    fs.writeFileSync(f("in"), "prompted")
    const secret = "tty-secret-passphrase-42"
    const r = await run(["encrypt", f("in")], [[/Passphrase: $/, secret], [/Confirm passphrase: $/, secret]])
    expect(r.code).toBe(0)
    expect(r.output).not.toContain(secret)
    fs.writeFileSync(f("pass"), secret + "\n", { mode: 0o600 })
    expect(cage(["decrypt", "-q", "--passphrase-file", f("pass"), "-o", f("out"), f("in.agcm")]).code).toBe(0)
    expect(fs.readFileSync(f("out"), "utf8")).toBe("prompted")
    const mismatch = await run(["encrypt", "--force", f("in")], [[/Passphrase: $/, secret], [/Confirm passphrase: $/, "other"]])
    expect(mismatch.code).toBe(2)
    expect(mismatch.output).toContain("do not match")
  })
})
