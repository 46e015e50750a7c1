/**
 * A processor author outside the monorepo installs `@cage/core` and `@cage/testkit` from
 * packed tarballs with pnpm, without overrides: the kit takes core as a peer, so it uses the
 * project's copy instead of asking a registry for `@cage/core@^0.1.0` (which none has).
 * Needs the packages built (`pnpm build`) and dependencies already in pnpm's store.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, expect, it } from "vitest"

const packages = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
const project = fs.mkdtempSync(path.join(os.tmpdir(), "cage-kit-outside-"))
afterAll(() => fs.rmSync(project, { recursive: true, force: true }))

const pack = (name: string) => {
  const out = execFileSync("pnpm", ["pack", "--pack-destination", project], { cwd: path.join(packages, name), encoding: "utf8" })
  return path.basename(out.trim().split("\n").filter((l) => l.endsWith(".tgz")).pop()!)
}

it("installs from tarballs with pnpm outside the workspace, no overrides, one @cage/core", () => {
  const core = pack("core")
  const kit = pack("testkit")
  const manifest = JSON.parse(execFileSync("tar", ["-xOzf", path.join(project, kit), "package/package.json"], { encoding: "utf8" }))
  expect(manifest.dependencies["@cage/core"]).toBeUndefined()
  expect(manifest.peerDependencies["@cage/core"]).toBe("^0.1.0")
  fs.writeFileSync(path.join(project, "package.json"), JSON.stringify({
    name: "outside", version: "1.0.0", private: true, type: "module",
    dependencies: { "@cage/core": `file:./${core}`, effect: "4.0.6" },
    devDependencies: { "@cage/testkit": `file:./${kit}`, vitest: "~4.1.0" }
  }))
  execFileSync("pnpm", ["install", "--prefer-offline", "--reporter=silent"], { cwd: project, stdio: "pipe" })
  // The kit resolves @cage/core to the project's own copy (the same file on disk).
  const probe = `import { createRequire } from "node:module"
import * as fs from "node:fs"
const kit = await import("@cage/testkit")
const fromKit = fs.realpathSync(createRequire(import.meta.resolve("@cage/testkit")).resolve("@cage/core/package.json"))
const fromProject = fs.realpathSync(createRequire(import.meta.url).resolve("@cage/core/package.json"))
console.log(JSON.stringify({ exports: Object.keys(kit).length, same: fromKit === fromProject }))`
  fs.writeFileSync(path.join(project, "probe.mjs"), probe)
  const r = JSON.parse(execFileSync(process.execPath, ["probe.mjs"], { cwd: project, encoding: "utf8" }))
  expect(r.exports).toBeGreaterThan(0)
  expect(r.same).toBe(true)
}, 180_000)
