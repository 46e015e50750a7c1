// kill -9 of a real process at 20 moments each of a chunk-store backup and prune: every
// snapshot still listed restores byte-identically and check --deep finds nothing, and the
// next run completes.
import { spawn, spawnSync } from "node:child_process"
import { Effect } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Store } from "../src/index.js"
import { parsePolicy } from "../src/Retention.js"

const worker = path.join(__dirname, "fixtures/store-worker.mjs")
const key = crypto.createHash("sha256").update("crash key").digest()
const chunker = { minBytes: 16 * 1024, avgBytes: 64 * 1024, maxBytes: 256 * 1024 }
const run = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(e)
const sha = (b: Uint8Array) => crypto.createHash("sha256").update(b).digest("hex")

let dir: string
let storeDir: string
const sources: Array<string> = []
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "cage-store-crash-"))
  storeDir = path.join(dir, "store")
  // Five versions of one 3 MiB file, each an edit of the one before.
  let data = crypto.randomBytes(3 << 20)
  for (let v = 0; v < 5; v++) {
    data = Buffer.concat([data.subarray(0, v * 500_000), crypto.randomBytes(50_000), data.subarray(v * 500_000 + 20_000)])
    const f = path.join(dir, `v${v}.bin`)
    fs.writeFileSync(f, data)
    sources.push(f)
  }
})
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

/** Runs the worker to completion; returns its wall time in ms. */
const complete = (args: ReadonlyArray<string>) => {
  const t = Date.now()
  const r = spawnSync("node", [worker, ...args], { encoding: "utf8" })
  expect(r.stderr).toBe("")
  expect(r.stdout).toBe("done\n")
  return Date.now() - t
}

/** Starts the worker and kills it with SIGKILL after `ms`; resolves once it is gone. */
const killAfter = (args: ReadonlyArray<string>, ms: number) =>
  new Promise<void>((resolve) => {
    const child = spawn("node", [worker, ...args], { stdio: "ignore" })
    const timer = setTimeout(() => child.kill("SIGKILL"), ms)
    child.on("exit", () => {
      clearTimeout(timer)
      resolve()
    })
  })

/** Every listed snapshot restores to its source's bytes, and a deep check is clean. */
const consistent = async () => {
  const store = await run(Store.open({ dir: storeDir, key: { key }, chunker }))
  const report = await run(Store.check(store, { deep: true }))
  expect(report.problems).toEqual([])
  for (const s of await run(Store.snapshots(store))) {
    const out = path.join(dir, "restored")
    await run(Store.restore(store, { snapshot: s.id, output: out, force: true }))
    expect(sha(fs.readFileSync(out))).toBe(sha(fs.readFileSync(s.source.path)))
  }
  return report
}

describe("the chunk store under kill -9", () => {
  it("at 20 moments of backup: what is listed restores, and the next backup completes", async () => {
    const args = (v: number) => ["backup", storeDir, key.toString("hex"), sources[v % sources.length]]
    const full = complete(args(0))
    let x = 12345
    for (let k = 0; k < 20; k++) {
      x = (x * 1103515245 + 12345) >>> 0
      await killAfter(args(k + 1), (x % 1000) / 1000 * (full + 300))
      await consistent()
    }
    complete(args(3))
    const report = await consistent()
    expect(report.snapshots).toBeGreaterThanOrEqual(2)
  }, 240_000)

  it("at 20 moments of prune (after forgetting old snapshots): what is kept restores, and the next prune completes", async () => {
    let x = 777
    const store = await run(Store.open({ dir: storeDir, key: { key }, chunker }))
    for (let k = 0; k < 20; k++) {
      // New garbage each round: a backup, then forget all but the two newest.
      complete(["backup", storeDir, key.toString("hex"), sources[k % sources.length]])
      await run(Store.forget(store, { policy: parsePolicy("keep_last:2") }))
      x = (x * 1103515245 + 12345) >>> 0
      await killAfter(["prune", storeDir, key.toString("hex")], (x % 1000) / 1000 * 900)
      await consistent()
    }
    complete(["prune", storeDir, key.toString("hex")])
    await consistent()
    // After a complete prune only live chunks remain: a second prune finds nothing to do.
    const again = await run(Store.prune(await run(Store.open({ dir: storeDir, key: { key }, chunker }))))
    expect(again).toMatchObject({ chunksRemoved: 0, packsRepacked: 0, packsDeleted: 0 })
    // keep_last:2 per source: two of each of the five versions.
    const bySource = new Map<string, number>()
    for (const s of await run(Store.snapshots(store))) bySource.set(s.source.path, (bySource.get(s.source.path) ?? 0) + 1)
    expect([...bySource.values()]).toEqual([2, 2, 2, 2, 2])
  }, 240_000)
})
