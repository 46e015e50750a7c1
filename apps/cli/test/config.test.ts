import * as fs from "node:fs"
import * as path from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { cage, tempDir } from "./helpers.js"

let dir: string
const f = (name: string) => path.join(dir, name)
const env = () => ({ XDG_CONFIG_HOME: f("xdg"), CAGE_CONFIG: "" })
beforeEach(() => {
  dir = tempDir()
  expect(cage(["keygen", "-q", "-o", f("k.key")]).code).toBe(0)
})
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

describe("cage.toml", () => {
  it("a per-project pipeline validates JSON before encrypting, and refuses invalid JSON with no output", () => {
    fs.mkdirSync(f("project/sub"), { recursive: true })
    fs.writeFileSync(f("project/cage.toml"), `chunk_size = "16KiB"\n[pipelines.encrypt]\nprocessors = ["json-validate", "digest", "agcm-encrypt"]\n`)
    fs.writeFileSync(f("project/sub/ok.json"), JSON.stringify({ rows: Array.from({ length: 3000 }, (_, i) => ({ i, s: "é\"x" })) }))
    const ok = cage(["encrypt", "--json", "--key", f("k.key"), "ok.json"], { cwd: f("project/sub"), env: env() })
    expect(ok.code).toBe(0)
    const summary = JSON.parse(ok.stdout.toString())
    expect(summary.results["json-validate"]).toBeDefined()
    expect(summary.results.digest.algorithm).toBe("sha256")
    expect(summary.totalChunks).toBeGreaterThan(1) // chunk_size from the file: 16 KiB
    fs.writeFileSync(f("project/sub/bad.json"), '{"a": [1, 2,, 3]}')
    const bad = cage(["encrypt", "--key", f("k.key"), "bad.json"], { cwd: f("project/sub"), env: env() })
    expect(bad.code).toBe(3)
    expect(bad.stderr).toContain("bad.json")
    expect(fs.existsSync(f("project/sub/bad.json.agcm"))).toBe(false)
    expect(fs.existsSync(f("project/sub/bad.json.agcm.partial"))).toBe(false)
    const show = cage(["config", "show", "--json"], { cwd: f("project/sub"), env: env() })
    const s = JSON.parse(show.stdout.toString())
    expect(s.settings.chunkSize).toEqual({ value: 16384, source: f("project/cage.toml") })
    expect(s.settings.backend.source).toBe("default")
  })
  it("the project file overrides the user file; $CAGE_CONFIG replaces both", () => {
    fs.mkdirSync(f("xdg/cage"), { recursive: true })
    fs.writeFileSync(f("xdg/cage/config.toml"), "workers = 1\nchunk_size = 32768\n")
    fs.writeFileSync(f("cage.toml"), "chunk_size = \"1MiB\"\n")
    const s = JSON.parse(cage(["config", "show", "--json"], { cwd: dir, env: env() }).stdout.toString())
    expect(s.settings.workers).toEqual({ value: 1, source: f("xdg/cage/config.toml") })
    expect(s.settings.chunkSize).toEqual({ value: 1 << 20, source: f("cage.toml") })
    fs.writeFileSync(f("only.toml"), "backend = \"age-lib\"\n")
    const o = JSON.parse(cage(["config", "show", "--json"], { cwd: dir, env: { ...env(), CAGE_CONFIG: f("only.toml") } }).stdout.toString())
    expect(o.files).toEqual([f("only.toml")])
    expect(o.settings.backend).toEqual({ value: "age-lib", source: f("only.toml") })
    expect(o.settings.chunkSize.source).toBe("default")
  })
  it.for([
    ["chunk_size = \"lots\"\n", "chunk_size"],
    ["workers = \"two\"\n", "workers"],
    ["backend = \"rot13\"\n", "backend"],
    ["chunk_sise = 5\n", "chunk_sise"],
    ["[pipelines.encrypt]\nprocessors = \"agcm-encrypt\"\n", "processors"],
    ["this is = = not toml\n", "TOML"]
  ])("a bad file (%j) is exit 2 naming the file and the key", ([text, key]) => {
    fs.writeFileSync(f("cage.toml"), text)
    const r = cage(["config", "show"], { cwd: dir, env: env() })
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(f("cage.toml"))
    expect(r.stderr).toContain(key)
  })
  it("unknown processors and plugins that are not installed are clear errors", () => {
    fs.writeFileSync(f("in"), "x")
    fs.writeFileSync(f("cage.toml"), `[pipelines.encrypt]\nprocessors = ["nope", "agcm-encrypt"]\n`)
    const r = cage(["encrypt", "--key", f("k.key"), "in"], { cwd: dir, env: env() })
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('unknown processor "nope"')
    fs.writeFileSync(f("cage.toml"), `plugins = ["@acme/not-installed"]\n[pipelines.encrypt]\nprocessors = ["@acme/not-installed", "agcm-encrypt"]\n`)
    const p = cage(["encrypt", "--key", f("k.key"), "in"], { cwd: dir, env: env() })
    expect(p.code).toBe(2)
    expect(p.stderr).toContain("not installed")
    fs.writeFileSync(f("cage.toml"), `[pipelines.encrypt]\nprocessors = ["digest"]\n`)
    expect(cage(["encrypt", "--key", f("k.key"), "in"], { cwd: dir, env: env() }).stderr).toContain("must name agcm-encrypt exactly once")
  })
  it("plugins: a bad export, a throwing factory and an API version mismatch are each a clear error", () => {
    const plugin = (name: string, body: string) => {
      const d = f(`node_modules/${name}`)
      fs.mkdirSync(d, { recursive: true })
      fs.writeFileSync(path.join(d, "package.json"), JSON.stringify({ name, version: "9.9.9", type: "module", exports: { ".": { import: "./index.js" } } }))
      fs.writeFileSync(path.join(d, "index.js"), body)
    }
    plugin("p-none", "export const nothing = 1\n")
    plugin("p-throws", "export default { name: 'p-throws', apiVersion: 1, description: 'x', capabilities: { kind: 'observer', ordered: true }, make() { throw new Error('factory exploded') } }\n")
    plugin("p-future", "export default { name: 'p-future', apiVersion: 2, description: 'x', capabilities: { kind: 'observer', ordered: true }, make() { return {} } }\n")
    fs.writeFileSync(f("in"), "x")
    // a working plugin reached through a subpath entry reports its package's version
    plugin("p-ok", "export default { name: 'p-ok', apiVersion: 1, description: 'root', capabilities: { kind: 'observer', ordered: true }, make() { return {} } }\n")
    fs.mkdirSync(f("node_modules/p-ok/inner"), { recursive: true })
    fs.writeFileSync(f("node_modules/p-ok/inner/package.json"), JSON.stringify({ type: "module", main: "index.js" }))
    fs.writeFileSync(f("node_modules/p-ok/inner/index.js"), "export default { name: 'p-ok/inner', apiVersion: 1, description: 'inner', capabilities: { kind: 'observer', ordered: false }, make() { return {} } }\n")
    fs.writeFileSync(f("cage.toml"), `plugins = ["p-ok", "p-ok/inner"]\n`)
    const list = JSON.parse(cage(["processors", "list", "--json"], { cwd: dir, env: env() }).stdout.toString()) as Array<{ name: string; version: string; origin: string }>
    expect(list.filter((p) => p.origin === "plugin").map((p) => [p.name, p.version])).toEqual([["p-ok", "9.9.9"], ["p-ok/inner", "9.9.9"]])
    for (const [name, message] of [["p-none", "exports no processor factory"], ["p-throws", "factory exploded"], ["p-future", "processor API 2"]]) {
      fs.writeFileSync(f("cage.toml"), `plugins = ["${name}"]\n[pipelines.encrypt]\nprocessors = ["${name}", "agcm-encrypt"]\n`)
      const r = cage(["encrypt", "--key", f("k.key"), "in"], { cwd: dir, env: env() })
      expect(r.code).toBe(2)
      expect(r.stderr).toContain(name)
      expect(r.stderr).toContain(message)
    }
  })
})

describe("cage.toml errors in the file's terms", () => {
  it.for([
    ["workerz = 2\n", "unknown key workerz (line 1); known keys: chunk_size, workers, limit_rate, backend, streaming_strategy, plugins, pipelines, processors, backup, audit"],
    ["chunk_size = \"64KiB\"\n[backup]\nretentoin = \"keep_last:3\"\n", "unknown key retentoin in [backup] (line 3); known keys: dir, retention, manifest_threshold"],
    ["workers = \"two\"\n", "workers (line 1): expected number, found \"two\" (a string)"],
    ["backend = \"rsa\"\n", "backend (line 1): expected \"agcm\" | \"age\" | \"age-lib\", found \"rsa\" (a string)"],
    ["[pipelines.encrypt]\nprocessors = \"agcm-encrypt\"\n", "pipelines.encrypt.processors (line 2): expected array, found \"agcm-encrypt\" (a string)"],
    ["[backup]\nretention = \"keep_lots\"\n", "backup.retention (line 2): unknown retention policy \"keep_lots\": use keep_all, keep_last:N, keep_days:D, keep_last_and_days:N,D, keep_hourly:N, keep_daily:N, keep_weekly:N, keep_monthly:N or keep_yearly:N, several joined by +"],
    ["limit_rate = \"0\"\n", "limit_rate: expected a positive size, got \"0\""]
  ])("%j: exit 2 with %s", ([text, message]) => {
    fs.writeFileSync(f("cage.toml"), text)
    // Every command loads the whole file: a bad value is found before anything runs.
    const r = cage(["config", "show"], { cwd: dir, env: env() })
    expect(r.code).toBe(2)
    expect(r.stderr).toBe(`cage: error: ${f("cage.toml")}: ${message}\n`)
  })
})
