/**
 * vitest global setup: the pool's workers run the built dist/worker.js even when the tests
 * run the pool from src/ (Node cannot start a TypeScript worker; see workerFile in
 * src/internal/pool.ts). A dist/ older than the sources it is built from would test old
 * worker code beside new calling-thread code, so it is built again first (a file's time can
 * also move without a change, e.g. after a checkout; building again is then merely slower).
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)))

/** worker.ts and every source file it imports, transitively (relative imports only). */
const sources = (file: string, seen = new Set<string>()): Set<string> => {
  if (seen.has(file)) return seen
  seen.add(file)
  for (const m of fs.readFileSync(file, "utf8").matchAll(/^import\s(?!type\b)[^"]*"(\.{1,2}\/[^"]+)\.js"/gm)) {
    sources(path.resolve(path.dirname(file), `${m[1]}.ts`), seen)
  }
  return seen
}

export default function setup() {
  const built = path.join(root, "dist", "worker.js")
  const stale = !fs.existsSync(built)
    ? ["(missing)"]
    : [...sources(path.join(root, "src", "internal", "worker.ts"))].filter((f) => fs.statSync(f).mtimeMs > fs.statSync(built).mtimeMs)
  if (stale.length === 0) return
  const why = `dist/worker.js is missing or older than ${stale.map((f) => path.relative(root, f)).join(", ")}`
  process.stderr.write(`${why}: building @cage/agcm first (the worker pool runs the built worker)\n`)
  const r = spawnSync("pnpm", ["run", "build"], { cwd: root, stdio: ["ignore", "inherit", "inherit"] })
  if (r.status !== 0) throw new Error(`${why}, and \`pnpm build\` in packages/agcm failed (exit ${r.status})`)
}
