// A plugin transform before the cipher: `cage encrypt` re-chunks the transform's output into
// AGCM's chunks (two stages), and `cage decrypt` runs the inverse chain. The plugin is the
// repository's third-party example, @acme/cage-processor-gzip, loaded from the project's
// node_modules as a user's would be.
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { makeDecryptor } from "@cage/agcm"
import { parseKeyText } from "../src/Keys.js"
import { bytesRead, cage, cageAsync, dir, f, key, useKeyedDir } from "./helpers.js"

const GZIP = "@acme/cage-processor-gzip"
const example = path.resolve(__dirname, "../../../examples/cage-processor-gzip")
const sha = (file: string) => createHash("sha256").update(fs.readFileSync(file)).digest("hex")

/** SQL-like text (compresses about 10:1), `lines` lines. */
const writeText = (file: string, lines: number) => {
  const words = ["alpha", "beta", "gamma", "delta", "select", "insert", "values", "null"]
  const out: Array<string> = []
  for (let i = 0; i < lines; i++) out.push(`INSERT INTO t VALUES (${i}, '${words[i % 8]}', '${words[(i * 7) % 8]}', ${(i * 2654435761) % 1000003});\n`)
  fs.writeFileSync(file, out.join(""))
}

useKeyedDir()
const project = () => {
  fs.mkdirSync(f("node_modules/@acme"), { recursive: true })
  fs.symlinkSync(example, f(`node_modules/${GZIP}`))
  fs.writeFileSync(f("cage.toml"), [
    `plugins = ["${GZIP}", "${GZIP}/gunzip"]`,
    "[pipelines.encrypt]",
    `processors = ["digest", "${GZIP}", "agcm-encrypt"]`,
    "[pipelines.decrypt]",
    `processors = ["agcm-decrypt", "${GZIP}/gunzip"]`,
    ""
  ].join("\n"))
}

describe("gzip → agcm-encrypt, and agcm-decrypt → gunzip", () => {
  it("round-trips to the same SHA-256, smaller than plain AGCM, with each stage's bytes in the summary", () => {
    writeText(f("dump.sql"), 120_000)
    const plain = cage(["encrypt", "--key", "k.key", "-q", "-o", "plain.agcm", "dump.sql"], { cwd: dir })
    expect(plain.code).toBe(0)
    project()
    const enc = cage(["encrypt", "--key", "k.key", "--json", "dump.sql"], { cwd: dir })
    expect(enc.stderr).toBe("")
    expect(enc.code).toBe(0)
    const summary = JSON.parse(enc.stdout.toString())
    const size = fs.statSync(f("dump.sql")).size
    expect(summary.bytesProcessed).toBe(size)
    expect(summary.results.digest.hex).toBe(sha(f("dump.sql")))
    expect(summary.stages.map((s: { processors: Array<string> }) => s.processors)).toEqual([["digest", GZIP], ["agcm-encrypt"]])
    expect(summary.stages[0].inputBytes).toBe(size)
    expect(summary.stages[1].inputBytes).toBe(summary.stages[0].outputBytes)
    expect(summary.stages[1].outputBytes).toBe(fs.statSync(f("dump.sql.agcm")).size)
    expect(fs.statSync(f("dump.sql.agcm")).size).toBeLessThan(fs.statSync(f("plain.agcm")).size / 4)
    const dec = cage(["decrypt", "--key", "k.key", "-q", "-o", "back.sql", "dump.sql.agcm"], { cwd: dir })
    expect(dec.stderr).toBe("")
    expect(dec.code).toBe(0)
    expect(sha(f("back.sql"))).toBe(sha(f("dump.sql")))
    // The header records the gzip; inspect shows it without the key.
    const inspected = cage(["chunk", "inspect", "--json", "dump.sql.agcm"], { cwd: dir })
    expect(JSON.parse(inspected.stdout.toString()).transforms).toEqual([GZIP])
  })

  it("decrypt refuses, in cage.toml's terms, a pipeline that does not undo the recorded gzip, and --range on such a file", () => {
    writeText(f("dump.sql"), 20_000)
    project()
    expect(cage(["encrypt", "--key", "k.key", "-q", "dump.sql"], { cwd: dir }).code).toBe(0)
    // No decrypt pipeline: the bytes would be the gzip stream, published as if they were the dump.
    fs.writeFileSync(f("cage.toml"), `plugins = ["${GZIP}", "${GZIP}/gunzip"]\n`)
    const bare = cage(["decrypt", "--key", "k.key", "-o", "out.sql", "dump.sql.agcm"], { cwd: dir })
    expect(bare.code).toBe(2)
    expect(bare.stderr.toString()).toContain(`dump.sql.agcm holds the output of ${GZIP} (recorded in its header)`)
    expect(bare.stderr.toString()).toContain(`set processors = ["agcm-decrypt", "${GZIP}/gunzip"] under [pipelines.decrypt] in ${f("cage.toml")}`)
    // The plugin that undoes it is not installed: say that, not a pipeline it cannot build.
    fs.writeFileSync(f("cage.toml"), `plugins = ["${GZIP}"]\n`)
    const missing = cage(["decrypt", "--key", "k.key", "-o", "out.sql", "dump.sql.agcm"], { cwd: dir })
    expect(missing.code).toBe(2)
    expect(missing.stderr.toString()).toContain(`no processor listed in plugins of ${f("cage.toml")} undoes ${GZIP}`)
    const range = cage(["decrypt", "--key", "k.key", "--range", "0:100", "-o", "out.sql", "dump.sql.agcm"], { cwd: dir })
    expect(range.code).toBe(2)
    expect(range.stderr.toString()).toContain("--range would read bytes of that output, not of your data")
    for (const r of [bare, missing, range]) expect(r.stderr.toString()).not.toMatch(/\n\s+at /)
    expect(fs.readdirSync(dir).filter((n) => n.startsWith("out.sql"))).toEqual([])
  })

  /** Hex of pseudo-random bytes: text that gzip halves, so the cipher stage has several segments. */
  const writeHex = (file: string, bytes: number) => {
    let x = 0x9e3779b9
    const b = Buffer.alloc(bytes / 2)
    for (let i = 0; i < b.length; i++) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5
      b[i] = x & 0xff
    }
    fs.writeFileSync(file, b.toString("hex"))
  }
  /** The gzip stream inside an AGCM file (the CLI refuses to give it: its header records the gzip). */
  const gzipStreamOf = async (agcm: string) => {
    const d = makeDecryptor({ key: parseKeyText(fs.readFileSync(key, "utf8"))!, workers: 1 })
    try {
      return Buffer.concat([...(await d.write(fs.readFileSync(agcm))), ...(await d.end())])
    } finally {
      await d.close()
    }
  }
  /** Starts `cage encrypt` rate-limited to about 3 s, and kills it with `signal` once `share` of the input was read. */
  const interrupt = async (signal: NodeJS.Signals, share: number) => {
    const size = fs.statSync(f("dump.sql")).size
    const child = cageAsync(["encrypt", "--key", "k.key", "--checkpoint-interval", "10", "--limit-rate", String(Math.ceil(size / 3)), "dump.sql"], dir)
    let stderr = ""
    child.stderr!.on("data", (d) => (stderr += d))
    const closed = new Promise<number | null>((r) => child.on("close", (c) => r(c)))
    // Counted from the moment the output's staging file appears (the run has started, so
    // what the process read to start up is left out); the engine preads the input.
    const tick = () => new Promise((r) => setTimeout(r, 5))
    while (child.exitCode === null && !fs.existsSync(f("dump.sql.agcm.partial"))) await tick()
    const started = bytesRead(child.pid!)
    while (child.exitCode === null && bytesRead(child.pid!) - started < size * share) await tick()
    expect(child.exitCode, "the signal must land mid-run").toBe(null)
    child.kill(signal)
    return { code: await closed, stderr }
  }

  for (const share of [0.25, 0.5, 0.75]) {
    it(`kill -9 once ${share * 100}% of the input was read, then the same command: it resumes, and the gzip stream inside is the uninterrupted run's`, async () => {
      writeHex(f("dump.sql"), 12 << 20)
      project()
      expect(cage(["encrypt", "--key", "k.key", "-q", "-o", "ref.agcm", "dump.sql"], { cwd: dir }).code).toBe(0)
      const reference = await gzipStreamOf(f("ref.agcm"))
      const killed = await interrupt("SIGKILL", share)
      expect(killed.code).toBe(null)
      expect(fs.existsSync(f("dump.sql.agcm"))).toBe(false)
      const again = cage(["encrypt", "--key", "k.key", "--json", "dump.sql"], { cwd: dir })
      expect(again.stderr).toBe("")
      expect(again.code).toBe(0)
      const summary = JSON.parse(again.stdout.toString())
      // By three quarters the cipher stage has checkpointed (its chunks trail the input by the pipe at most).
      if (share === 0.75) expect(summary.resumedFrom).toBeGreaterThan(0)
      expect(fs.readdirSync(dir).filter((n) => n.startsWith("dump.sql.agcm"))).toEqual(["dump.sql.agcm"])
      expect((await gzipStreamOf(f("dump.sql.agcm"))).equals(reference)).toBe(true)
      expect(cage(["decrypt", "--key", "k.key", "-q", "-o", "back.sql", "dump.sql.agcm"], { cwd: dir }).code).toBe(0)
      expect(sha(f("back.sql"))).toBe(sha(f("dump.sql")))
    })
  }

  it("Ctrl-C mid-run keeps what a resume needs and says so; the rerun completes it", async () => {
    writeHex(f("dump.sql"), 12 << 20)
    project()
    const stopped = await interrupt("SIGINT", 0.5)
    expect(stopped.code).toBe(130)
    expect(stopped.stderr).toContain("run the same command again to resume")
    expect(fs.existsSync(f("dump.sql.agcm"))).toBe(false)
    const again = cage(["encrypt", "--key", "k.key", "-q", "dump.sql"], { cwd: dir })
    expect(again.code).toBe(0)
    expect(cage(["decrypt", "--key", "k.key", "-q", "-o", "back.sql", "dump.sql.agcm"], { cwd: dir }).code).toBe(0)
    expect(sha(f("back.sql"))).toBe(sha(f("dump.sql")))
  })
})
