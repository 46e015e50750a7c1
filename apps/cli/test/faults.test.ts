/**
 * Faults with real processes (issue 14 §4): kill -9 at 20 random moments of encrypt,
 * decrypt, backup create and migrate, each resumed (or rerun) to a result identical to an
 * uninterrupted run; eight backup creates on one registry at once; a full filesystem under
 * a backup. Every kill is triggered by progress (the output's size) on a rate-limited run,
 * so it lands mid-run on any machine.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { BIN, cage, dir, f, key, useKeyedDir, writeRandom } from "./helpers.js"

useKeyedDir()

const MiB = 1 << 20
const KILLS = 20
const sha = (file: string) => createHash("sha256").update(fs.readFileSync(file)).digest("hex")
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const sizeOf = (p: string) => (fs.existsSync(p) ? fs.statSync(p).size : 0)
const exited = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null

/**
 * Starts `cage args`, kills it with SIGKILL once `watch` (a function giving the current
 * progress in bytes) passes a random point between where it starts and 90% of `total`.
 * Returns how the process ended: "killed", or its exit code if it ended first.
 */
const killMidRun = async (args: ReadonlyArray<string>, progress: () => number, total: number) => {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "ignore", "pipe"] })
  let stderr = ""
  child.stderr!.on("data", (d) => (stderr += d))
  const done = new Promise<void>((r) => child.on("close", () => r()))
  const from = progress()
  const at = from + Math.random() * Math.max(0, 0.9 * total - from)
  while (!exited(child) && progress() < at) await sleep(1)
  const killed = !exited(child) && child.kill("SIGKILL")
  await done
  return { killed, code: child.exitCode, stderr }
}

describe("kill -9 at 20 random moments, then resume", () => {
  it("encrypt: byte-identical to one uninterrupted resume from the first checkpoint (same salt)", async () => {
    writeRandom(f("in"), 8 * MiB)
    const args = ["encrypt", "--key", key, "--chunk-size", "16KiB", "--limit-rate", "16MiB", "--checkpoint-interval", "20", "--no-fsync", "-q", f("in")]
    const partial = f("in.agcm.partial")
    // The first checkpoint fixes the salt: keep that state to replay it without kills.
    const first = spawn(process.execPath, [BIN, ...args], { stdio: "ignore" })
    while (!fs.existsSync(f("in.agcm.cage-checkpoint"))) await sleep(1)
    first.kill("SIGKILL")
    await new Promise((r) => first.on("close", r))
    fs.copyFileSync(partial, f("s0.partial"))
    fs.copyFileSync(f("in.agcm.cage-checkpoint"), f("s0.ckpt"))
    for (let k = 1; k < KILLS; k++) {
      const r = await killMidRun(args, () => sizeOf(partial), 8 * MiB)
      expect(r.killed, `kill ${k}: ${r.stderr}`).toBe(true)
    }
    const last = cage([...args.filter((a) => a !== "-q"), "--json"])
    expect(last.code).toBe(0)
    expect(JSON.parse(last.stdout.toString()).resumedFrom).toBeGreaterThan(0)
    const interrupted = sha(f("in.agcm"))
    fs.renameSync(f("in.agcm"), f("interrupted.agcm"))
    fs.copyFileSync(f("s0.partial"), partial)
    fs.copyFileSync(f("s0.ckpt"), f("in.agcm.cage-checkpoint"))
    expect(cage(args).code).toBe(0)
    expect(sha(f("in.agcm"))).toBe(interrupted)
    expect(cage(["decrypt", "-q", "--key", key, "-o", f("rt"), f("in.agcm")]).code).toBe(0)
    expect(sha(f("rt"))).toBe(sha(f("in")))
  }, 120_000)

  it("decrypt: the plaintext, byte for byte", async () => {
    writeRandom(f("in"), 8 * MiB)
    expect(cage(["encrypt", "-q", "--key", key, "--chunk-size", "16KiB", f("in")]).code).toBe(0)
    const args = ["decrypt", "--key", key, "--limit-rate", "16MiB", "--checkpoint-interval", "20", "--no-fsync", "-q", "-o", f("out"), f("in.agcm")]
    for (let k = 0; k < KILLS; k++) {
      const r = await killMidRun(args, () => sizeOf(f("out.partial")), 8 * MiB)
      expect(r.killed, `kill ${k}: ${r.stderr}`).toBe(true)
    }
    expect(cage(args).code).toBe(0)
    expect(sha(f("out"))).toBe(sha(f("in")))
    expect(fs.readdirSync(dir).sort()).toEqual(["in", "in.agcm", "k.key", "out"])
  }, 120_000)

  it("backup create, then backup resume: a complete generation that verifies and restores to the source", async () => {
    writeRandom(f("in"), 8 * MiB)
    const bdir = f("b")
    const common = ["--copy", "--key", key, "--dir", bdir, "--limit-rate", "16MiB", "-q", f("in")]
    // The generation's staging file: its size is the encryption's progress.
    const progress = () => {
      if (!fs.existsSync(bdir)) return 0
      const p = fs.readdirSync(bdir).find((n) => n.endsWith(".cage.partial"))
      return p ? sizeOf(path.join(bdir, p)) : 0
    }
    const first = await killMidRun(["backup", "create", ...common], progress, 8 * MiB)
    expect(first.killed, first.stderr).toBe(true)
    for (let k = 1; k < KILLS; k++) {
      const r = await killMidRun(["backup", "resume", ...common], progress, 8 * MiB)
      expect(r.killed, `kill ${k}: ${r.stderr}`).toBe(true)
    }
    const done = cage(["backup", "resume", ...common])
    expect(done.stderr).toBe("")
    expect(done.code).toBe(0)
    const list = JSON.parse(cage(["backup", "list", "--json", "--dir", bdir]).stdout.toString())
    expect(list.map((g: { generation: number; status: string }) => [g.generation, g.status])).toEqual([[1, "complete"]])
    expect(cage(["backup", "verify", "--dir", bdir, f("in")]).code).toBe(0)
    expect(cage(["backup", "restore", "-q", "--key", key, "--dir", bdir, "-o", f("restored"), f("in")]).code).toBe(0)
    expect(sha(f("restored"))).toBe(sha(f("in")))
  }, 120_000)

  it("migrate (not resumable): each rerun starts over and the result decrypts to the v1 plaintext", async () => {
    const vectors = path.resolve(__dirname, "../../../../shared/vectors/harpocrates-v1")
    const v = (JSON.parse(fs.readFileSync(path.join(vectors, "vectors.json"), "utf8")) as Array<{ name: string; key: string; file: string; plaintextFile: string }>)
      .find((x) => x.name === "v1_12_cs4096_len1048576")!
    fs.writeFileSync(f("v1.key"), `${v.key}\n`, { mode: 0o600 })
    const args = ["migrate", path.join(vectors, v.file), "-o", f("m.agcm"), "--key", f("v1.key"), "--limit-rate", "1MiB", "-q"]
    for (let k = 0; k < KILLS; k++) {
      const r = await killMidRun(args, () => sizeOf(f("m.agcm.partial")), MiB)
      expect(r.killed, `kill ${k}: ${r.stderr}`).toBe(true)
      expect(fs.existsSync(f("m.agcm"))).toBe(false)
    }
    expect(cage(args).code).toBe(0)
    expect(cage(["decrypt", "-q", "--key", f("v1.key"), "-o", f("m.plain"), f("m.agcm")]).code).toBe(0)
    expect(sha(f("m.plain"))).toBe(sha(path.join(vectors, v.plaintextFile)))
    expect(fs.readdirSync(dir).sort()).toEqual(["k.key", "m.agcm", "m.plain", "v1.key"])
  }, 120_000)
})

describe("backups under contention and on a full disk", () => {
  it("8 full-copy backup creates of one file on one registry at once, 20 rounds: no generation lost, the registry parses", async () => {
    writeRandom(f("in"), 256 * 1024)
    const bdir = f("b")
    let expected = 0
    for (let round = 0; round < 20; round++) {
      const runs = Array.from({ length: 8 }, () => {
        const child = spawn(process.execPath, [BIN, "backup", "create", "--copy", "-q", "--key", key, "--dir", bdir, f("in")], { stdio: ["ignore", "ignore", "pipe"] })
        let stderr = ""
        child.stderr!.on("data", (d) => (stderr += d))
        return new Promise<{ code: number | null; stderr: string }>((r) => child.on("close", (code) => r({ code, stderr })))
      })
      for (const r of await Promise.all(runs)) expect(r.code, r.stderr).toBe(0)
      expected += 8
      const list = cage(["backup", "list", "--json", "--dir", bdir])
      expect(list.code).toBe(0)
      const gens = JSON.parse(list.stdout.toString()) as Array<{ generation: number; status: string }>
      expect(gens.map((g) => g.generation)).toEqual(Array.from({ length: expected }, (_, i) => i + 1))
      expect(gens.every((g) => g.status === "complete")).toBe(true)
    }
    expect(cage(["backup", "verify", "--dir", bdir, f("in")]).code).toBe(0)
  }, 300_000)

  it("4 store backup creates at once, 10 rounds: each one completes or is refused at once (exit 6, naming the store and the other process); none is lost, numbers never repeat", async () => {
    const bdir = f("b")
    let expected = 0
    for (let round = 0; round < 10; round++) {
      writeRandom(f("in"), 2 * MiB)
      const runs = Array.from({ length: 4 }, () => {
        const child = spawn(process.execPath, [BIN, "backup", "create", "-q", "--key", key, "--dir", bdir, f("in")], { stdio: ["ignore", "ignore", "pipe"] })
        let stderr = ""
        child.stderr!.on("data", (d) => (stderr += d))
        return new Promise<{ code: number | null; stderr: string }>((r) => child.on("close", (code) => r({ code, stderr })))
      })
      for (const r of await Promise.all(runs)) {
        if (r.code === 0) expected++
        else {
          expect(r.code, r.stderr).toBe(6)
          expect(r.stderr).toContain(`${bdir} is being written by another cage process`)
        }
      }
      const list = cage(["backup", "list", "--json", "--key", key, "--dir", bdir])
      expect(list.code).toBe(0)
      const gens = JSON.parse(list.stdout.toString()) as Array<{ generation: number; format: string }>
      expect(gens.map((g) => g.generation)).toEqual(Array.from({ length: expected }, (_, i) => i + 1))
    }
    expect(expected).toBeGreaterThanOrEqual(10)
    expect(cage(["backup", "verify", "--deep", "--key", key, "--dir", bdir]).code).toBe(0)
  }, 300_000)

  for (const kind of ["copy", "store"] as const) {
    it(`backup create${kind === "copy" ? " --copy" : ""} onto a full filesystem: exit 4 naming the file, the previous generation intact; after space is freed it succeeds`, () => {
      const mnt = f("mnt")
      fs.mkdirSync(mnt)
      const m = spawnSync("mount", ["-t", "tmpfs", "-o", "size=12m", "tmpfs", mnt], { encoding: "utf8" })
      expect(m.status, `mount: ${m.stderr}`).toBe(0)
      try {
        const flags = kind === "copy" ? ["--copy"] : []
        writeRandom(f("small"), 4 * MiB)
        const bdir = path.join(mnt, "b")
        expect(cage(["backup", "create", ...flags, "-q", "--key", key, "--dir", bdir, f("small")]).code).toBe(0)
        writeRandom(f("small"), 10 * MiB) // the next generation no longer fits
        const r = cage(["backup", "create", ...flags, "-q", "--key", key, "--dir", bdir, f("small")])
        expect(r.code).toBe(4)
        expect(r.stderr.split("\n")[0]).toMatch(new RegExp(`^cage: error: ${bdir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}/\\S+: \\S+ failed: no space left on device$`))
        const list = JSON.parse(cage(["backup", "list", "--json", "--key", key, "--dir", bdir]).stdout.toString()) as Array<{ generation: number; status?: string }>
        expect(list.map((g) => g.generation)).toEqual(kind === "copy" ? [1, 2] : [1])
        expect(cage(["backup", "verify", "--deep", "--key", key, "--generation", "1", "--dir", bdir, f("small")]).code).toBe(0)
        expect(spawnSync("mount", ["-o", "remount,size=64m", mnt]).status).toBe(0)
        const again = cage(["backup", kind === "copy" ? "resume" : "create", "-q", "--key", key, "--dir", bdir, f("small")])
        const ok = again.code === 0 ? again : cage(["backup", "create", ...flags, "-q", "--key", key, "--dir", bdir, f("small")])
        expect(ok.stderr).toBe("")
        expect(ok.code).toBe(0)
        expect(cage(["backup", "restore", "-q", "--key", key, "--dir", bdir, "-o", f("restored"), f("small")]).code).toBe(0)
        expect(sha(f("restored"))).toBe(sha(f("small")))
        if (kind === "store") {
          // The failed run left no pack behind: the store holds what the two generations need.
          const used = Number(spawnSync("du", ["-sb", path.join(bdir, "packs")], { encoding: "utf8" }).stdout.split("\t")[0])
          expect(used).toBeLessThan(15 * MiB)
        }
      } finally {
        spawnSync("umount", [mnt])
      }
    })
  }
})
