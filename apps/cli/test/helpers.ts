import { spawn, spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterEach, beforeEach, expect } from "vitest"

export const BIN = fileURLToPath(new URL("../dist/bin.js", import.meta.url))

export interface Result {
  readonly code: number | null
  readonly stdout: Buffer
  readonly stderr: string
}

/** Runs `cage` synchronously with optional stdin bytes. */
export const cage = (args: ReadonlyArray<string>, options: { cwd?: string; input?: Uint8Array; env?: NodeJS.ProcessEnv } = {}): Result => {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: options.cwd,
    input: options.input,
    env: { ...process.env, ...options.env },
    maxBuffer: 1 << 30
  })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.toString() }
}

/** Starts `cage` as a child process (for kill -9 and signals). */
export const cageAsync = (args: ReadonlyArray<string>, cwd?: string) =>
  spawn(process.execPath, [BIN, ...args], { cwd, stdio: ["ignore", "pipe", "pipe"] })

export const tempDir = () => fs.mkdtempSync(path.join(os.tmpdir(), "cage-cli-"))

export const writeRandom = (file: string, size: number) => {
  const fd = fs.openSync(file, "w")
  for (let left = size; left > 0;) {
    const n = Math.min(left, 1 << 22)
    fs.writeSync(fd, randomBytes(n))
    left -= n
  }
  fs.closeSync(fd)
}

/** This test's directory and its key file (`k.key`, from `cage keygen`); see {@link useKeyedDir}. */
export let dir = ""
export let key = ""
/** A path inside this test's directory. */
export const f = (name: string) => path.join(dir, name)

/** Gives every test of the calling file a fresh directory with a key file, removed afterwards. */
export const useKeyedDir = () => {
  beforeEach(() => {
    dir = tempDir()
    key = f("k.key")
    expect(cage(["keygen", "-q", "-o", key]).code).toBe(0)
  })
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))
}

/**
 * How far the process `pid` has read the file `name` (its open descriptor's offset, from
 * /proc/PID/fdinfo), or -1 while it has no such file open.
 */
export const readOffset = (pid: number, name: string): number => {
  try {
    for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
      if (path.basename(fs.readlinkSync(`/proc/${pid}/fd/${fd}`)) !== name) continue
      const pos = /^pos:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8"))
      if (pos) return Number(pos[1])
    }
  } catch {
    // the process is starting or gone
  }
  return -1
}

/** Bytes the process `pid` has read through system calls so far (`rchar` of /proc/PID/io; pread included), or -1. */
export const bytesRead = (pid: number): number => {
  try {
    const m = /^rchar:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/io`, "utf8"))
    return m ? Number(m[1]) : -1
  } catch {
    return -1
  }
}
