/** The README's first command, `pnpm demo`: it shows every step it names, or fails saying which. */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { tempDir, writeRandom } from "./helpers.js"

const DEMO = fileURLToPath(new URL("../../../scripts/demo.sh", import.meta.url))
let dir: string
beforeEach(() => {
  dir = tempDir()
})
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

const demo = (env: NodeJS.ProcessEnv = {}) => {
  const r = spawnSync("bash", [DEMO], { env: { ...process.env, TMPDIR: dir, ...env }, encoding: "utf8", maxBuffer: 1 << 26 })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, lastLine: `${r.stdout}${r.stderr}`.trim().split("\n").at(-1) }
}

describe("pnpm demo", () => {
  it("interrupts the encryption with kill -9 mid-run, resumes it, decrypts and reads a range; leaves nothing behind", () => {
    const r = demo()
    expect(r.stderr).not.toContain("FAILED")
    expect(r.code).toBe(0)
    expect(r.stderr).toMatch(/cage: resuming from \S+input\.bin\.agcm\.cage-checkpoint: at chunk [1-9]\d*, /)
    expect(r.stdout.trim().split("\n").at(-1)).toMatch(
      /^== OK: interrupted with kill -9 at \d+%; resumed from the checkpoint; decrypted and verified byte for byte; read 1 MiB from the middle with --range$/
    )
    expect(fs.readdirSync(dir)).toEqual([])
  }, 120_000)

  it("fails naming the step, instead of claiming it, when the encryption finishes before the kill", () => {
    // A small input and no effective rate limit: the run ends before its first checkpoint.
    writeRandom(path.join(dir, "small.bin"), 1 << 20)
    const r = demo({ CAGE_DEMO_INPUT: path.join(dir, "small.bin"), CAGE_DEMO_RATE: String(1e12) })
    expect(r.code).toBe(1)
    expect(r.lastLine).toBe("== FAILED: interrupt: the encryption was not killed mid-run (it exited with status 0 before the kill landed)")
    expect(r.stdout).not.toContain("== OK")
    expect(fs.readdirSync(dir)).toEqual(["small.bin"])
  }, 60_000)
})

const DEMO_CLUSTER = fileURLToPath(new URL("../../../scripts/demo-cluster.mjs", import.meta.url))

describe("pnpm demo:cluster", () => {
  it("encrypts 512 MiB on 3 runners with one kill -9 mid-job, byte-identical to a single-machine run, and stops everything it started", () => {
    const r = spawnSync(process.execPath, [DEMO_CLUSTER], { encoding: "utf8", maxBuffer: 1 << 26 })
    expect(r.stderr).toBe("")
    expect(r.status).toBe(0)
    const lines = r.stdout.trim().split("\n")
    expect(lines.at(-1)).toMatch(/^cluster demo: OK \{"bytes":536870912,"segments":33,/)
    const kill = lines.find((l) => l.startsWith("== kill -9 runner"))
    const m = /^== kill -9 runner 127\.0\.0\.1:(\d+) at [\d.]+ s \((\d+)\/33 segments done\)$/.exec(kill ?? "")
    expect(m, kill).not.toBeNull()
    expect(Number(m![2])).toBeGreaterThanOrEqual(1)
    expect(Number(m![2])).toBeLessThan(33)
    const sums = lines.filter((l) => l.startsWith("== SHA-256")).map((l) => /[0-9a-f]{64}/.exec(l)?.[0])
    expect(sums).toHaveLength(2)
    expect(sums[0]).toMatch(/^[0-9a-f]{64}$/)
    expect(sums[0]).toBe(sums[1])
    // Its temp directory (input, outputs, key) is gone, and so are the runners and the server.
    const work = /in (\S+cage-cluster-demo-\S+)$/.exec(lines[0])![1]
    expect(fs.existsSync(work)).toBe(false)
    const ports = [...r.stdout.matchAll(/127\.0\.0\.1:(\d+)/g)].map((x) => x[1])
    const listening = spawnSync("ss", ["-ltnH"], { encoding: "utf8" }).stdout
    for (const port of ports) expect(listening).not.toContain(`127.0.0.1:${port} `)
  }, 180_000)
})

