/**
 * Private temporary directories (mode 0700, files 0600) that are removed on success, on
 * failure, on interruption, on `process.exit` and on SIGINT/SIGTERM/SIGHUP.
 *
 * Why the signal handlers: a plain SIGINT kills Node without running finalizers, and a
 * staging directory may hold plaintext.
 */
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"

const live = new Set<string>()
const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const
let installed = false

const removeAllSync = () => {
  for (const dir of live) {
    try {
      fs.rmSync(dir, { recursive: true, force: true })
    } catch {
      // Best effort: the process is going away.
    }
    live.delete(dir)
  }
}

const onSignal = (signal: NodeJS.Signals) => {
  removeAllSync()
  // When nobody else handles the signal, keep the default behaviour (die by the signal).
  if (process.listenerCount(signal) === 1) {
    uninstall()
    process.kill(process.pid, signal)
  }
}

const install = () => {
  if (installed) return
  installed = true
  process.on("exit", removeAllSync)
  for (const s of SIGNALS) process.on(s, onSignal)
}

const uninstall = () => {
  if (!installed) return
  installed = false
  process.off("exit", removeAllSync)
  for (const s of SIGNALS) process.off(s, onSignal)
}

/** Directories currently registered for removal (tests). */
export const liveStagingDirectories = (): ReadonlyArray<string> => [...live]

/** Creates a private directory under `base` (default the OS temp dir). */
export const makeStagingDirectory = async (base?: string): Promise<string> => {
  const dir = await fs.promises.mkdtemp(nodePath.join(base ?? os.tmpdir(), "cage-age-"))
  await fs.promises.chmod(dir, 0o700)
  live.add(dir)
  install()
  return dir
}

/** Removes a directory made by {@link makeStagingDirectory}. Never fails. */
export const removeStagingDirectory = async (dir: string): Promise<void> => {
  await fs.promises.rm(dir, { recursive: true, force: true }).catch(() => undefined)
  live.delete(dir)
  if (live.size === 0) uninstall()
}

/** Creates a named pipe with mode 0600 (Node has no mkfifo: coreutils' does it). */
export const makeFifo = (path: string): Promise<void> =>
  new Promise((resolve, reject) => {
    execFile("mkfifo", ["-m", "600", path], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } }, (err) =>
      err ? reject(err) : resolve())
  })
