// The template outside the workspace, as a third-party author and a user get it: @cage/core,
// @cage/testkit and this package are packed (pnpm pack turns workspace: ranges into
// versions) and installed with pnpm in temporary directories, with no workspace and no
// overrides. A copy of the template builds, type-checks and passes its tests there; a
// project installs the packed template and runs it before agcm-encrypt with `cage`.
// Needs `pnpm build` (turbo builds @cage/core, @cage/testkit and @cage/cli first: they are
// devDependencies) and the dependencies in pnpm's store (or the npm registry).
// This file only applies inside the Cage repository: delete it from your copy.
import { execFileSync, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { reference } from "./helpers.js"

const here = fileURLToPath(new URL("../", import.meta.url))
const repo = path.resolve(here, "../..")
const inCage = fs.existsSync(path.join(repo, "packages/core/package.json")) && fs.existsSync(path.join(repo, "apps/cli/package.json"))
/** The built `cage` program: one bundle with its own engine; plugins come from the project's node_modules. */
const cageBin = path.join(repo, "apps/cli/dist/bin.js")
const NAME = "@acme/cage-processor-redact"
/** The range `pnpm pack` writes for `workspace:^`, which an author writes by hand. */
const coreRange = () => `^${JSON.parse(fs.readFileSync(path.join(repo, "packages/core/package.json"), "utf8")).version}`

let root: string
const tarball: Record<string, string> = {}
/** The environment of every command: not this vitest run's, not this machine's cage config. */
const env = () => {
  const e: NodeJS.ProcessEnv = { ...process.env, XDG_CONFIG_HOME: path.join(root, ".config"), npm_config_update_notifier: "false" }
  for (const key of Object.keys(e)) if (key.startsWith("VITEST") || key === "CAGE_CONFIG") delete e[key]
  return e
}
/** Runs a command in `cwd`; fails the test with its output unless it exits 0. */
const run = (cwd: string, cmd: string, args: ReadonlyArray<string>, timeout = 120_000) => {
  const r = spawnSync(cmd, args, { cwd, env: env(), encoding: "utf8", timeout, maxBuffer: 16 << 20 })
  expect(r.status, `${cmd} ${args.join(" ")} in ${cwd}:\n${r.stdout}\n${r.stderr}`).toBe(0)
  return r.stdout
}
const pnpmInstall = (cwd: string) => run(cwd, "pnpm", ["install", "--prefer-offline", "--reporter=silent"], 240_000)
const cage = (cwd: string, ...args: ReadonlyArray<string>) => run(cwd, process.execPath, [cageBin, ...args])

const pack = (dir: string) => {
  const out = execFileSync("pnpm", ["pack", "--pack-destination", path.join(root, "tarballs")], { cwd: dir, encoding: "utf8" })
  const file = out.trim().split("\n").filter((l) => l.endsWith(".tgz")).pop()!
  return path.join(root, "tarballs", path.basename(file))
}
const manifestOf = (tgz: string) => JSON.parse(execFileSync("tar", ["-xOzf", tgz, "package/package.json"], { encoding: "utf8" }))

describe.skipIf(!inCage)("the template packed and installed outside the workspace", () => {
  beforeAll(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), "cage-template-outside-"))
    for (const dir of [path.join(repo, "packages/core"), path.join(repo, "packages/testkit"), here]) {
      if (!fs.existsSync(path.join(dir, "dist/index.js"))) throw new Error(`${dir} is not built: run pnpm build first`)
    }
    if (!fs.existsSync(cageBin)) throw new Error("apps/cli is not built: run pnpm build first")
    tarball.core = pack(path.join(repo, "packages/core"))
    tarball.testkit = pack(path.join(repo, "packages/testkit"))
    tarball.template = pack(here)
  })
  afterAll(() => {
    if (root) fs.rmSync(root, { recursive: true, force: true })
  })

  it("the tarball names @cage/core as a versioned peer and holds the build", () => {
    const manifest = manifestOf(tarball.template)
    expect(manifest.name).toBe(NAME)
    expect(manifest.peerDependencies).toEqual({ "@cage/core": coreRange(), effect: "4.0.6" })
    expect(manifest.dependencies).toBeUndefined()
    expect(JSON.stringify(manifest)).not.toContain("workspace:")
    const files = execFileSync("tar", ["-tzf", tarball.template], { encoding: "utf8" }).split("\n")
    expect(files).toEqual(expect.arrayContaining(["package/dist/index.js", "package/dist/index.d.ts", "package/README.md"]))
    expect(files.some((f) => f.startsWith("package/src/") || f.startsWith("package/test/"))).toBe(false)
  })

  it("a copy of the template, its @cage devDependencies pointed at the tarballs, installs, builds, type-checks and passes its tests", () => {
    // What an author does after copying this directory (see the README, "Start from the template").
    const author = path.join(root, "author")
    fs.mkdirSync(author)
    for (const entry of ["src", "test", "README.md", "tsconfig.json", "tsup.config.ts", "vitest.config.ts"]) {
      fs.cpSync(path.join(here, entry), path.join(author, entry), { recursive: true })
    }
    fs.rmSync(path.join(author, "test", path.basename(fileURLToPath(import.meta.url))))
    const pkg = JSON.parse(fs.readFileSync(path.join(here, "package.json"), "utf8"))
    delete pkg.devDependencies["@cage/cli"]
    pkg.peerDependencies["@cage/core"] = coreRange()
    pkg.devDependencies["@cage/core"] = `file:${tarball.core}`
    pkg.devDependencies["@cage/testkit"] = `file:${tarball.testkit}`
    fs.writeFileSync(path.join(author, "package.json"), JSON.stringify(pkg, null, 2))
    pnpmInstall(author)
    run(author, "pnpm", ["run", "build"])
    expect(fs.existsSync(path.join(author, "dist/index.js")) && fs.existsSync(path.join(author, "dist/index.d.ts"))).toBe(true)
    run(author, "pnpm", ["run", "typecheck"])
    const tests = run(author, "pnpm", ["run", "test"]).replace(/\x1b\[[0-9;]*m/g, "")
    expect(tests).toMatch(/Test Files\s+2 passed \(2\)/)
    const [, passed, total] = /Tests\s+(\d+) passed \((\d+)\)/.exec(tests) ?? []
    expect(Number(passed)).toBeGreaterThan(50)
    expect(passed).toBe(total)
  }, 180_000)

  it("cage loads the installed package and runs it before agcm-encrypt; cage decrypt gives the redacted text", () => {
    const project = path.join(root, "project")
    fs.mkdirSync(project)
    fs.writeFileSync(path.join(project, "package.json"), JSON.stringify({
      name: "my-project",
      private: true,
      type: "module",
      dependencies: { [NAME]: `file:${tarball.template}`, "@cage/core": `file:${tarball.core}`, effect: "4.0.6" }
    }, null, 2))
    pnpmInstall(project)

    // Node finds the default export by package name, and the plugin uses the project's @cage/core.
    const probe = `import { createRequire } from "node:module"
import * as fs from "node:fs"
const factory = (await import("${NAME}")).default
const core = await import("@cage/core")
const fromPlugin = fs.realpathSync(createRequire(import.meta.resolve("${NAME}")).resolve("@cage/core/package.json"))
const fromProject = fs.realpathSync(createRequire(import.meta.url).resolve("@cage/core/package.json"))
console.log(JSON.stringify({ name: factory.name, api: factory.apiVersion === core.PROCESSOR_API_VERSION, same: fromPlugin === fromProject }))`
    fs.writeFileSync(path.join(project, "probe.mjs"), probe)
    expect(JSON.parse(run(project, process.execPath, ["probe.mjs"]))).toEqual({ name: NAME, api: true, same: true })

    fs.writeFileSync(path.join(project, "cage.toml"), [
      `plugins = ["${NAME}"]`,
      ``,
      `[pipelines.encrypt]`,
      `processors = ["${NAME}", "agcm-encrypt"]`,
      ``,
      `[pipelines.decrypt]`,
      `processors = ["agcm-decrypt"]`,
      ``,
      `[processors."${NAME}"]`,
      `pattern = "hunter2"`,
      ``
    ].join("\n"))
    expect(cage(project, "processors", "list")).toContain(NAME)

    // Text with the password straddling every 64 KiB boundary (the engine's plain chunks)
    // and a partial one at the very end (held back, then written as the trailer).
    const lines: Array<string> = []
    for (let i = 0; lines.join("").length < 600_000; i++) lines.push(`${i}: login alice password ${i % 5 === 0 ? "hunter2" : "hunter"}\n`)
    const input = Buffer.from(lines.join("") + "hunte")
    for (let at = 65_536 - 3; at + 7 < input.length; at += 65_536) input.write("hunter2", at)
    const expected = reference(input, "hunter2")
    const occurrences = expected.toString().split("*******").length - 1
    expect(occurrences).toBeGreaterThan(1000)
    fs.writeFileSync(path.join(project, "notes.txt"), input)

    cage(project, "keygen", "-q", "-o", "project.key")
    const summary = JSON.parse(cage(project, "encrypt", "--key", "project.key", "--json", "-o", "notes.txt.cage", "notes.txt"))
    expect(summary.stages.map((s: { processors: Array<string> }) => s.processors)).toEqual([[NAME], ["agcm-encrypt"]])
    expect(summary.stages[0].outputBytes).toBe(input.length)
    expect(summary.results[NAME]).toEqual({ redactions: occurrences })
    expect(fs.readFileSync(path.join(project, "notes.txt.cage")).includes("hunter2")).toBe(false)

    cage(project, "decrypt", "--key", "project.key", "-q", "-o", "notes.out.txt", "notes.txt.cage")
    const back = fs.readFileSync(path.join(project, "notes.out.txt"))
    expect(back.length).toBe(input.length)
    expect(back.includes("hunter2")).toBe(false)
    expect(back.equals(expected)).toBe(true)
  }, 120_000)
})
