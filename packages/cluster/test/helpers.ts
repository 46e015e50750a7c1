// What the cluster tests share: runner processes on loopback, file hashes, and the way back
// from a segmented encryption.
import { ChunkInput } from "@cage/core"
import { Effect } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Plan, Segment } from "../src/index.js"
import { freePort, type Postgres } from "../src/Postgres.js"

/**
 * Moves a finished segmented encryption (`output`) to `dir/sealed.agcm`, stages
 * `dir/back.partial` for its plaintext (0600, as a decrypt job does), and plans the
 * ciphertext's chunk region in segments of `segmentChunks` sealed chunks (Cluster.planOf).
 */
export const stageDecrypt = async (dir: string, output: string, headerBytes: number, chunkSize: number, segmentChunks: number) => {
  const source = path.join(dir, "sealed.agcm")
  fs.renameSync(output, source)
  const identity = await Effect.runPromise(ChunkInput.statIdentity(source))
  const back = path.join(dir, "back.partial")
  const fd = fs.openSync(back, "wx", 0o600)
  const staged = Segment.stagedOf(fd)
  fs.closeSync(fd)
  const plan = Plan.planJob([{ path: source, size: identity.size - headerBytes }], { headerBytes: 0, chunkBytes: chunkSize + 16, overheadBytes: 0, shortFinal: true }, segmentChunks * (chunkSize + 16))
  return { source, identity, back, staged, segments: plan.segments }
}

const RUNNER = fileURLToPath(new URL("../dist/runner.js", import.meta.url))

/** Starts a runner process (`dist/runner.js`) on a free loopback port against `pg`, added to `runners`; its stderr is printed if it fails. */
export const startRunner = async (pg: Postgres, runners: Array<ChildProcess>, extra: ReadonlyArray<string> = []) => {
  const port = await freePort()
  const child = spawn(process.execPath, [RUNNER, "--listen", `127.0.0.1:${port}`, "--db", `${pg.host}:${pg.port}`, ...extra], { stdio: ["ignore", "ignore", "pipe"] })
  let stderr = ""
  child.stderr!.on("data", (d) => (stderr += d))
  child.on("exit", (code, signal) => {
    if (code !== 0 && signal === null) process.stderr.write(`runner on ${port} exited ${code}: ${stderr}\n`)
  })
  runners.push(child)
  return child
}

/** SHA-256 (hex) of a file, read 4 MiB at a time. */
export const sha256 = (file: string) => {
  const h = crypto.createHash("sha256")
  const fd = fs.openSync(file, "r")
  const buf = Buffer.allocUnsafe(4 << 20)
  for (let n: number; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) h.update(buf.subarray(0, n))
  fs.closeSync(fd)
  return h.digest("hex")
}
