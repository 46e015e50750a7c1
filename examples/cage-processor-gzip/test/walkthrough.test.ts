// Follows docs/writing-a-processor.md, "Ship it", in a temporary project, as a user would:
// pack the packages, npm install the tarballs, list the plugin in cage.toml, run `cage`.
// Needs the built dist of this package, @cage/cli and its @cage dependencies (turbo builds
// them first: @cage/cli is a devDependency) and the npm registry for third-party packages.
import { execFileSync, type ExecFileSyncOptions } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { textBytes } from "./helpers.js"

const repo = fileURLToPath(new URL("../../../", import.meta.url))
const here = fileURLToPath(new URL("../", import.meta.url))

/** The workspace directory of every @cage package, by name. */
const workspacePackages = (): Map<string, string> => {
  const dirs = new Map<string, string>()
  for (const group of ["packages", "apps"]) {
    for (const entry of fs.readdirSync(path.join(repo, group))) {
      const pkgFile = path.join(repo, group, entry, "package.json")
      if (fs.existsSync(pkgFile)) dirs.set(JSON.parse(fs.readFileSync(pkgFile, "utf8")).name, path.join(repo, group, entry))
    }
  }
  return dirs
}

/** `name` and the @cage packages it depends on at run time, transitively. */
const closure = (name: string, dirs: Map<string, string>, seen = new Set<string>()): Set<string> => {
  if (seen.has(name)) return seen
  seen.add(name)
  const pkg = JSON.parse(fs.readFileSync(path.join(dirs.get(name)!, "package.json"), "utf8"))
  for (const dep of Object.keys({ ...pkg.dependencies, ...pkg.peerDependencies })) {
    if (dirs.has(dep)) closure(dep, dirs, seen)
  }
  return seen
}

let project: string
let tarballs: string
const env = () => {
  const e: NodeJS.ProcessEnv = { ...process.env, XDG_CONFIG_HOME: path.join(project, ".config"), npm_config_update_notifier: "false" }
  delete e.CAGE_CONFIG
  return e
}
const run = (cmd: string, args: ReadonlyArray<string>, options: ExecFileSyncOptions = {}) =>
  execFileSync(cmd, args, { cwd: project, env: env(), stdio: ["ignore", "pipe", "pipe"], encoding: "utf8", ...options }) as string
const cage = (...args: ReadonlyArray<string>) => run(path.join(project, "node_modules", ".bin", "cage"), args)
/** `cage` with `$CAGE_CONFIG` pointing at another file of the project. */
const cageWithConfig = (config: string, ...args: ReadonlyArray<string>) =>
  run(path.join(project, "node_modules", ".bin", "cage"), args, { env: { ...env(), CAGE_CONFIG: path.join(project, config) } })
let input: Buffer

beforeAll(() => {
  project = fs.mkdtempSync(path.join(os.tmpdir(), "cage-walkthrough-"))
  tarballs = path.join(project, ".tarballs")
  fs.mkdirSync(tarballs)

  // Step 1: pack. `pnpm pack` turns workspace:^ ranges into real versions.
  const dirs = workspacePackages()
  dirs.set("@acme/cage-processor-gzip", here)
  const needed = closure("@cage/cli", dirs, closure("@acme/cage-processor-gzip", dirs))
  const deps: Record<string, string> = {}
  for (const name of needed) {
    const dir = dirs.get(name)!
    if (!fs.existsSync(path.join(dir, "dist"))) throw new Error(`${name} is not built: run pnpm build first`)
    const out = execFileSync("pnpm", ["pack", "--pack-destination", tarballs], { cwd: dir, encoding: "utf8" })
    const file = out.trim().split("\n").filter((l) => l.endsWith(".tgz")).pop()!
    deps[name] = `file:${path.isAbsolute(file) ? file : path.join(tarballs, path.basename(file))}`
  }

  // Step 2: a project that installs them. The override keeps @effect/platform-node on the
  // 4.0.x line that runs on Node 20 (see TOOLCHAIN.md).
  fs.writeFileSync(path.join(project, "package.json"), JSON.stringify({
    name: "my-project",
    private: true,
    type: "module",
    dependencies: deps,
    overrides: { "@effect/platform-node-shared": "4.0.6" }
  }, null, 2))
  // --ignore-scripts: node-pty (the age backend's terminal) is not needed for AGCM here.
  run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"], { timeout: 240_000 })

  // Step 3: cage.toml lists the plugin and puts it in the encrypt pipeline (after the cipher,
  // which the engine refuses: see the doc's "Where a processor can go").
  fs.writeFileSync(path.join(project, "cage.toml"), [
    `plugins = ["@acme/cage-processor-gzip", "@acme/cage-processor-gzip/gunzip"]`,
    ``,
    `[pipelines.encrypt]`,
    `processors = ["agcm-encrypt", "@acme/cage-processor-gzip"]`,
    ``,
    `[processors."@acme/cage-processor-gzip"]`,
    `level = 9`,
    ``
  ].join("\n"))

  // Step 4: a key and a file to protect.
  input = Buffer.from(textBytes(3 << 20, 11))
  fs.writeFileSync(path.join(project, "notes.txt"), input)
  cage("keygen", "-o", "project.key", "-q")
}, 300_000)

afterAll(() => {
  if (project) fs.rmSync(project, { recursive: true, force: true })
})

describe("docs/writing-a-processor.md in a temporary project", () => {
  it("node resolves the plugin by package name from the project, default export first", () => {
    const script = `
      const m = await import("@acme/cage-processor-gzip")
      const g = await import("@acme/cage-processor-gzip/gunzip")
      const core = await import("@cage/core")
      console.log(JSON.stringify({ name: m.default.name, api: m.default.apiVersion, core: core.PROCESSOR_API_VERSION, inverse: m.default.inverse.name, gunzip: g.default.name, kind: m.default.make({}).capabilities.kind }))`
    const out = JSON.parse(run("node", ["--input-type=module", "-e", script]))
    expect(out).toEqual({ name: "@acme/cage-processor-gzip", api: 1, core: 1, inverse: "@acme/cage-processor-gzip/gunzip", gunzip: "@acme/cage-processor-gzip/gunzip", kind: "transform" })
  })

  it("cage processors list shows the plugin with its capabilities", () => {
    const out = cage("processors", "list")
    expect(out).toContain("@acme/cage-processor-gzip")
    expect(out).toContain("@acme/cage-processor-gzip/gunzip")
  })

  it("cage encrypt refuses the plugin after AGCM (its header would bypass the plugin) with exit code 2", () => {
    // AGCM writes a header and frames the input, so it must be the last transform; the engine
    // says so before reading anything rather than writing a file no pipeline can undo.
    let failure: { status: number; stderr: string } | undefined
    try {
      cage("encrypt", "--key", "project.key", "-q", "-o", "notes.txt.cage.gz", "notes.txt")
    } catch (e) {
      failure = e as { status: number; stderr: string }
    }
    expect(failure?.status).toBe(2)
    expect(failure?.stderr).toContain("agcm-encrypt writes a header, so it must be the last transform")
    expect(fs.existsSync(path.join(project, "notes.txt.cage.gz"))).toBe(false)
  })

  it("gzip by package name through runPipeline, cage encrypt, then cage decrypt with gunzip in its pipeline", () => {
    // The factory loaded the way any host loads it: by package name from the project.
    const script = `
      import { Effect } from "effect"
      import { ChunkInput, ChunkOutput, runPipeline } from "@cage/core"
      import factory from "@acme/cage-processor-gzip"
      const summary = await Effect.runPromise(Effect.gen(function*() {
        const input = yield* ChunkInput.fromFile("notes.txt")
        return yield* runPipeline({ input, output: ChunkOutput.toFile("notes.txt.gz"), pipeline: [factory.make({ level: 6 })], chunkBytes: 1 << 20 })
      }))
      console.log(JSON.stringify({ chunks: summary.totalChunks, out: summary.outputBytes }))`
    const summary = JSON.parse(run("node", ["--input-type=module", "-e", script]))
    expect(summary.chunks).toBe(3)
    expect(summary.out).toBeLessThan(input.length / 2)
    expect(execFileSync("gzip", ["-dc", path.join(project, "notes.txt.gz")], { maxBuffer: 64 << 20 }).equals(input)).toBe(true)
    // A decrypt pipeline may end with the plugin: AGCM decrypts, gunzip decompresses.
    fs.writeFileSync(path.join(project, "gz.toml"), [
      `plugins = ["@acme/cage-processor-gzip/gunzip"]`,
      `[pipelines.decrypt]`,
      `processors = ["agcm-decrypt", "@acme/cage-processor-gzip/gunzip"]`,
      ``
    ].join("\n"))
    cageWithConfig("gz.toml", "encrypt", "--key", "project.key", "-q", "-o", "notes.txt.gz.cage", "notes.txt.gz")
    cageWithConfig("gz.toml", "decrypt", "--key", "project.key", "-q", "-o", "notes.from-gz.txt", "notes.txt.gz.cage")
    expect(fs.readFileSync(path.join(project, "notes.from-gz.txt")).equals(input)).toBe(true)
  })

  it("a bad plugin option is a clear error with exit code 2", () => {
    const toml = path.join(project, "cage.toml")
    const good = fs.readFileSync(toml, "utf8")
    try {
      fs.writeFileSync(toml, good.replace("level = 9", "level = 42"))
      let failure: { status: number; stderr: string } | undefined
      try {
        cage("encrypt", "--key", "project.key", "-q", "-o", "bad.cage", "notes.txt")
      } catch (e) {
        failure = e as { status: number; stderr: string }
      }
      expect(failure?.status).toBe(2)
      expect(failure?.stderr).toContain("level must be an integer from 0 to 9")
      expect(fs.existsSync(path.join(project, "bad.cage"))).toBe(false)
    } finally {
      fs.writeFileSync(toml, good)
    }
  })
})
