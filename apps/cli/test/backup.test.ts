import * as fs from "node:fs"
import * as path from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { cage, tempDir, writeRandom } from "./helpers.js"

let dir: string
const f = (name: string) => path.join(dir, name)
const env = () => ({ XDG_CONFIG_HOME: f("xdg"), CAGE_CONFIG: "" })
const run = (args: ReadonlyArray<string>) => cage(args, { cwd: dir, env: env() })
beforeEach(() => {
  dir = tempDir()
  expect(run(["keygen", "-q", "-o", "k.key"]).code).toBe(0)
})
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

describe("cage backup and cage audit", () => {
  it("create, verify, damage one chunk, verify names it (exit 3), restore a clean range, audit summary", () => {
    writeRandom(f("data.bin"), 300_000)
    const create = run(["backup", "create", "-q", "--key", "k.key", "--manifest", "--chunk-size", "16KiB", "--audit-log", "audit.jsonl", "data.bin"])
    expect(create.code).toBe(0)
    expect(run(["backup", "verify", "-q", "data.bin"]).code).toBe(0)
    expect(run(["backup", "list", "--json", "data.bin"]).stdout.toString()).toContain("complete")
    const file = fs.readdirSync(f(".cage-backups")).find((n) => n.endsWith(".cage"))!
    const backup = f(`.cage-backups/${file}`)
    const bytes = fs.readFileSync(backup)
    // chunk 5 of 16 KiB chunks: header (66 bytes) + 5 sealed chunks of 16 KiB + 16
    bytes[66 + 5 * (16384 + 16) + 1000] ^= 0x40
    fs.writeFileSync(backup, bytes)
    const verify = run(["backup", "verify", "--json", "data.bin"])
    expect(verify.code).toBe(3)
    const report = JSON.parse(verify.stdout.toString())
    expect(JSON.stringify(report)).toMatch(/"(chunk|index)":5\b/)
    expect(JSON.stringify(report)).not.toMatch(/"(chunk|index)":4\b/)
    const ok = run(["backup", "restore", "-q", "--key", "k.key", "--range", "0:50000", "-o", "part.bin", "data.bin"])
    expect(ok.code).toBe(0)
    expect(fs.readFileSync(f("part.bin")).equals(fs.readFileSync(f("data.bin")).subarray(0, 50000))).toBe(true)
    const bad = run(["backup", "restore", "--key", "k.key", "-o", "all.bin", "data.bin"])
    expect(bad.code).toBe(3)
    expect(fs.existsSync(f("all.bin"))).toBe(false)
    const summary = run(["audit", "summary", "--json", "audit.jsonl"])
    expect(summary.code).toBe(0)
    const audit = fs.readFileSync(f("audit.jsonl"), "utf8")
    expect(audit).toContain("run_start")
    expect(audit).not.toContain(fs.readFileSync(f("k.key"), "utf8").split("\n")[1].slice("cage-key-1:".length))
  })
  it("encrypt --audit-log records the run without key material", () => {
    writeRandom(f("in"), 200_000)
    expect(run(["encrypt", "-q", "--key", "k.key", "--audit-log", "a.jsonl", "in"]).code).toBe(0)
    const lines = fs.readFileSync(f("a.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))
    expect(lines[0]).toMatchObject({ type: "run_start", operation: "encrypt" })
    expect(lines.at(-1)).toMatchObject({ type: "run_complete" })
    expect(fs.statSync(f("a.jsonl")).mode & 0o777).toBe(0o600)
  })
})
