import { onTestFinished } from "vitest"
import { Effect, Exit } from "effect"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { agcmCipher, type BackupCipher, restore, verify } from "../src/index.js"

/** AGCM's smallest chunk size: small files still span many chunks. */
export const CHUNK = 16 * 1024
export const KEY = randomBytes(32)
export const cipher: BackupCipher = agcmCipher({ key: KEY }, { chunkSize: CHUNK, workers: 1 })

/** A fresh temp directory, removed when the current test finishes. */
export const tempDir = (label = "cage-backup-"): string => {
  const dir = fs.mkdtempSync(nodePath.join(os.tmpdir(), label))
  onTestFinished(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Writes a file of `size` random bytes and returns its path and bytes. */
export const makeSource = (dir: string, size: number, name = "data.bin") => {
  const bytes = randomBytes(size)
  const path = nodePath.join(dir, name)
  fs.writeFileSync(path, bytes)
  return { path, bytes }
}

export const run = <A, E>(e: Effect.Effect<A, E>): Promise<A> => Effect.runPromise(e)
/** Runs an effect expected to fail and returns its error. */
export const fail = <A, E>(e: Effect.Effect<A, E>): Promise<E> => Effect.runPromise(Effect.flip(e))

/** The newest generation of `src` verifies deep (every chunk decrypted) and restores byte-identical. */
export const expectIntact = async (bdir: string, src: { readonly path: string; readonly bytes: Buffer }, hashWorkers = 0) => {
  const report = await run(verify({ dir: bdir, source: src.path, deep: true, cipher, hashWorkers }))
  if (!report.ok) throw new Error(`damaged: ${JSON.stringify(report.damage)}`)
  const out = nodePath.join(fs.mkdtempSync(nodePath.join(bdir, "restore-")), "out")
  await run(restore({ dir: bdir, source: src.path, cipher, output: out }))
  if (!fs.readFileSync(out).equals(src.bytes)) throw new Error("the restored bytes differ from the source")
  fs.rmSync(nodePath.dirname(out), { recursive: true })
}

export const flipByte = (path: string, offset: number) => {
  const fd = fs.openSync(path, "r+")
  const b = Buffer.alloc(1)
  fs.readSync(fd, b, 0, 1, offset)
  b[0] ^= 0x40
  fs.writeSync(fd, b, 0, 1, offset)
  fs.closeSync(fd)
}

/**
 * The test cipher, failing at chunk `at` (a crash in the middle of a run): in `process`,
 * and in `processDirect` for the segment holding it. With `direct` false it has no
 * `processDirect`, so create hashes in memory.
 */
export const failingAt = (at: number, direct = true): BackupCipher => ({
  ...cipher,
  encrypt: () => {
    const inner = cipher.encrypt()
    const crash = Effect.fail(new Error("simulated crash"))
    return {
      ...inner,
      processSegment: undefined,
      process: (c, d) => (c.index === at ? crash : inner.process(c, d)),
      processDirect: direct ? (cs, segment) => (cs.some((c) => c.index === at) ? crash : inner.processDirect!(cs, segment)) : undefined
    }
  }
})

/** The error an Effect fails with (throws when it succeeds): its tag, reason and message for assertions. */
export const failure = async <A, E>(e: Effect.Effect<A, E>) => {
  const exit = await Effect.runPromiseExit(e)
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  return (exit.cause.reasons.find((r) => r._tag === "Fail") as unknown as { error: { _tag: string; reason?: string; message: string } }).error
}

/** Everything a restore must give back, by relative path: type, mode, mtime (ms), content hash, link target. */
export const describeTree = (root: string) => {
  const out: Record<string, string> = {}
  const walk = (d: string, rel: string) => {
    for (const name of fs.readdirSync(d).sort()) {
      const full = nodePath.join(d, name)
      const r = rel ? `${rel}/${name}` : name
      const st = fs.lstatSync(full)
      const mtime = Math.floor(st.mtimeMs)
      if (st.isSymbolicLink()) out[r] = `link ${fs.readlinkSync(full)} ${mtime}`
      else if (st.isDirectory()) {
        walk(full, r)
        out[r] = `dir ${(st.mode & 0o7777).toString(8)} ${mtime}`
      } else out[r] = `file ${(st.mode & 0o7777).toString(8)} ${mtime} ${createHash("sha256").update(fs.readFileSync(full)).digest("hex")}`
    }
  }
  walk(root, "")
  return out
}

