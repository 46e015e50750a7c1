// scripts/check-pack.mjs (the release check in CONTRIBUTING.md), run on this package and on
// a throwaway workspace whose package.json points at files its tarball lacks.
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterEach, describe, expect, it } from "vitest"

const repo = fileURLToPath(new URL("../../../", import.meta.url))
const script = path.join(repo, "scripts", "check-pack.mjs")
const dirs: Array<string> = []
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true })
})

const runCheck = (root: string, ...args: Array<string>) => {
  try {
    return { status: 0, stdout: execFileSync("node", [path.join(root, "scripts", "check-pack.mjs"), ...args], { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }) }
  } catch (e) {
    const err = e as { status: number; stdout: string }
    return { status: err.status, stdout: err.stdout }
  }
}

/** A workspace with one package per entry: `[package.json, files on disk]`. */
const fakeWorkspace = (packages: Record<string, readonly [object, Record<string, string>]>) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "cage-check-pack-test-"))
  dirs.push(root)
  fs.mkdirSync(path.join(root, "scripts"))
  fs.copyFileSync(script, path.join(root, "scripts", "check-pack.mjs"))
  fs.writeFileSync(path.join(root, "pnpm-workspace.yaml"), "packages:\n  - packages/*\n")
  for (const [name, [pkg, files]] of Object.entries(packages)) {
    const dir = path.join(root, "packages", name)
    fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ ...pkg, name }))
    for (const [file, text] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true })
      fs.writeFileSync(path.join(dir, file), text)
    }
  }
  return root
}

const complete = {
  version: "1.0.0",
  type: "module",
  files: ["dist", "README.md"],
  sideEffects: false,
  engines: { node: ">=20.11" },
  main: "./dist/index.js",
  types: "./dist/index.d.ts",
  exports: { ".": { types: "./dist/index.d.ts", import: "./dist/index.js" }, "./x/*": "./dist/x/*.js", "./internal/*": null, "./package.json": "./package.json" },
  bin: { a: "./dist/bin.js" }
}
const allFiles: Record<string, string> = { "dist/index.js": "", "dist/index.d.ts": "", "dist/bin.js": "", "dist/x/one.js": "", "README.md": "# a" }
const without = <T extends Record<string, unknown>>(o: T, key: string): T => {
  const copy: Record<string, unknown> = { ...o }
  delete copy[key]
  return copy as T
}

describe("scripts/check-pack.mjs", () => {
  it("passes this package's own tarball and lists it", () => {
    const r = runCheck(repo, "@acme/cage-processor-gzip")
    expect(r.status).toBe(0)
    expect(r.stdout).toContain("dist/gunzip.js")
    expect(r.stdout).toContain("1 of 1 packages complete")
  })
  it("fails exactly the packages whose tarball lacks a target or whose fields are missing", () => {
    const root = fakeWorkspace({
      complete: [complete, allFiles],
      "no-bin": [complete, without(allFiles, "dist/bin.js")],
      "no-types": [complete, without(allFiles, "dist/index.d.ts")],
      "no-pattern": [complete, without(allFiles, "dist/x/one.js")],
      "no-readme": [complete, without(allFiles, "README.md")],
      "no-engines": [without(complete, "engines"), allFiles],
      "no-side-effects": [without(complete, "sideEffects"), allFiles],
      "no-files": [without(complete, "files"), allFiles],
      private: [{ ...complete, private: true }, without(allFiles, "dist/index.js")]
    })
    const r = runCheck(root, "--quiet")
    expect(r.status).toBe(1)
    const problems = (name: string) => {
      const at = r.stdout.indexOf(`✗ ${name}@`)
      if (at < 0) return undefined
      const next = r.stdout.indexOf("\n✗", at + 1)
      return r.stdout.slice(at, next < 0 ? undefined : next)
    }
    // Patterns match files in the tarball; null subpaths ("./internal/*": null) are skipped.
    expect(problems("complete")).toBeUndefined()
    expect(problems("private")).toBeUndefined()
    expect(problems("no-bin")).toContain("bin.a → ./dist/bin.js is not in the tarball")
    expect(problems("no-types")).toContain(`exports["."]["types"] → ./dist/index.d.ts is not in the tarball`)
    expect(problems("no-types")).toContain("types → ./dist/index.d.ts")
    expect(problems("no-pattern")).toContain(`exports["./x/*"] → ./dist/x/*.js is not in the tarball`)
    expect(problems("no-readme")).toContain("no README in the tarball")
    expect(problems("no-engines")).toContain("no `engines.node`")
    expect(problems("no-side-effects")).toContain("no `sideEffects`")
    expect(problems("no-files")).toContain("no `files` list")
    expect(r.stdout).toContain("1 of 8 packages complete, 7 with problems")
  })
  it("exits 2 when nothing is publishable or on an unknown option", () => {
    expect(runCheck(fakeWorkspace({ only: [{ ...complete, private: true }, allFiles] })).status).toBe(2)
    expect(runCheck(repo, "--frobnicate").status).toBe(2)
  })
})
