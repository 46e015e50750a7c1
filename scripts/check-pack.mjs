#!/usr/bin/env node
// Packs every publishable (non-private) workspace package with `pnpm pack` into a temp
// directory, lists each tarball, and fails when a file that `exports`, `main`, `types`,
// `module` or `bin` points to is not in it, or when a publishing field is missing
// (`exports` with `types` for ".", `files`, `engines.node`, `sideEffects`, a README).
//
// Usage: node scripts/check-pack.mjs [--keep] [--quiet] [package-name...]
//   --keep    keep the tarballs (their directory is printed)
//   --quiet   print only problems and the summary line
// Exit code: 0 when every tarball is complete, 1 otherwise, 2 on bad usage.
// Run `pnpm build` first: dist/ is what the tarballs must contain.
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const args = process.argv.slice(2)
const keep = args.includes("--keep")
const quiet = args.includes("--quiet")
const only = args.filter((a) => !a.startsWith("--"))
const unknown = args.filter((a) => a.startsWith("--") && a !== "--keep" && a !== "--quiet")
if (unknown.length > 0) {
  console.error(`check-pack: unknown option ${unknown.join(", ")} (usage: node scripts/check-pack.mjs [--keep] [--quiet] [package-name...])`)
  process.exit(2)
}

/** Workspace package directories from pnpm-workspace.yaml (`dir/*` globs and plain paths). */
const workspaceDirs = () => {
  const yaml = fs.readFileSync(path.join(root, "pnpm-workspace.yaml"), "utf8")
  const block = yaml.split(/^packages:\s*$/m)[1] ?? ""
  const globs = []
  for (const line of block.split("\n").slice(1)) {
    const m = /^\s+-\s+["']?([^"'#]+?)["']?\s*$/.exec(line)
    if (!m) break
    globs.push(m[1])
  }
  return globs.flatMap((g) => {
    if (!g.endsWith("/*")) return [path.join(root, g)]
    const base = path.join(root, g.slice(0, -2))
    return fs.existsSync(base) ? fs.readdirSync(base).map((d) => path.join(base, d)) : []
  }).filter((d) => fs.existsSync(path.join(d, "package.json")))
}

/** Every file path a package.json field points to, with the field that names it. */
const targetsOf = (pkg) => {
  const out = []
  const add = (field, value) => {
    if (typeof value === "string") out.push({ field, target: value })
  }
  add("main", pkg.main)
  add("module", pkg.module)
  add("types", pkg.types)
  add("typings", pkg.typings)
  if (typeof pkg.bin === "string") add("bin", pkg.bin)
  else for (const [name, file] of Object.entries(pkg.bin ?? {})) add(`bin.${name}`, file)
  const walk = (where, value) => {
    if (typeof value === "string") add(where, value)
    else if (Array.isArray(value)) {
      value.forEach((v, i) => {
        walk(`${where}[${i}]`, v)
      })
    }
    // null marks a blocked subpath ("./internal/*": null): nothing to find.
    else if (value && typeof value === "object") for (const [k, v] of Object.entries(value)) walk(`${where}["${k}"]`, v)
  }
  walk("exports", pkg.exports)
  return out
}

const normalize = (p) => p.replace(/^\.\//, "")
/** True when `target` (possibly a `*` pattern) matches a file in the tarball. */
const present = (target, files) => {
  const t = normalize(target)
  if (!t.includes("*")) return files.has(t)
  const [pre, post] = t.split("*")
  for (const f of files) if (f.startsWith(pre) && f.endsWith(post) && f.length >= pre.length + post.length) return true
  return false
}

/** Fields a publishable package must have. */
const metadataProblems = (pkg, files) => {
  const problems = []
  const dot = typeof pkg.exports === "object" && pkg.exports !== null ? pkg.exports["."] : undefined
  if (!pkg.exports) problems.push("no `exports`")
  else if (typeof dot !== "object" || dot === null || typeof dot.types !== "string") problems.push("`exports[\".\"]` has no `types` condition")
  if (!Array.isArray(pkg.files)) problems.push("no `files` list")
  if (!pkg.engines?.node) problems.push("no `engines.node`")
  if (pkg.sideEffects === undefined) problems.push("no `sideEffects`")
  if (![...files].some((f) => /^readme(\.md)?$/i.test(f))) problems.push("no README in the tarball")
  return problems
}

const dest = fs.mkdtempSync(path.join(os.tmpdir(), "cage-check-pack-"))
let failed = 0
let checked = 0
try {
  for (const dir of workspaceDirs()) {
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"))
    if (pkg.private || (only.length > 0 && !only.includes(pkg.name))) continue
    checked++
    const rel = path.relative(root, dir)
    let packed
    try {
      packed = JSON.parse(execFileSync("pnpm", ["pack", "--json", "--pack-destination", dest], { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }))
    } catch (e) {
      console.error(`✗ ${pkg.name} (${rel}): pnpm pack failed: ${e.stderr || e.message}`)
      failed++
      continue
    }
    const tarball = path.isAbsolute(packed.filename) ? packed.filename : path.join(dest, path.basename(packed.filename))
    // What is really in the tarball (every entry is under package/).
    const files = new Set(execFileSync("tar", ["-tzf", tarball], { encoding: "utf8" }).split("\n").filter(Boolean).map((f) => f.replace(/^package\//, "")))
    const missing = targetsOf(pkg).filter(({ target }) => !present(target, files))
    const problems = [...missing.map(({ field, target }) => `${field} → ${target} is not in the tarball`), ...metadataProblems(pkg, files)]
    const size = fs.statSync(tarball).size
    if (problems.length > 0) failed++
    if (!quiet || problems.length > 0) {
      console.log(`${problems.length > 0 ? "✗" : "✓"} ${pkg.name}@${pkg.version} (${rel}) ${path.basename(tarball)}: ${files.size} files, ${size} bytes`)
      if (!quiet) for (const f of [...files].sort()) console.log(`    ${f}`)
      for (const p of problems) console.log(`  ! ${p}`)
    }
  }
} finally {
  if (keep) console.log(`tarballs kept in ${dest}`)
  else fs.rmSync(dest, { recursive: true, force: true })
}
if (checked === 0) {
  console.error(only.length > 0 ? `check-pack: no publishable package named ${only.join(", ")}` : "check-pack: no publishable package found")
  process.exit(2)
}
console.log(`check-pack: ${checked - failed} of ${checked} packages complete${failed > 0 ? `, ${failed} with problems` : ""}`)
process.exit(failed > 0 ? 1 : 0)
