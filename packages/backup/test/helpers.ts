import { onTestFinished } from "vitest"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { agcmCipher, type BackupCipher } from "../src/index.js"

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

export const flipByte = (path: string, offset: number) => {
  const fd = fs.openSync(path, "r+")
  const b = Buffer.alloc(1)
  fs.readSync(fd, b, 0, 1, offset)
  b[0] ^= 0x40
  fs.writeSync(fd, b, 0, 1, offset)
  fs.closeSync(fd)
}
