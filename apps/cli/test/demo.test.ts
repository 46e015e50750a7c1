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
