/** The tempfile strategy's private directory goes away when the process is interrupted. */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import { afterAll, expect, it } from "vitest"
import { requireAge, tempDir } from "./helpers.js"

requireAge()
const dir = tempDir()
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
const worker = new URL("./fixtures/staging-worker.mjs", import.meta.url).pathname

it.for(["SIGINT", "SIGTERM"] as const)("%s while staging removes the 0700 directory and its 0600 files", async (signal) => {
  const base = fs.mkdtempSync(`${dir}/base-`)
  const child = spawn(process.execPath, [worker, base], { stdio: ["pipe", "ignore", "inherit"] })
  // Some input, never the end of it: the worker stays in the staging phase.
  child.stdin.on("error", () => undefined)
  child.stdin.write(Buffer.concat([Buffer.from("age-encryption.org/v1\n"), Buffer.alloc(3 * 1024 * 1024, 1)]))
  let staged: string | undefined
  for (let i = 0; i < 600 && staged === undefined; i++) {
    await new Promise((r) => setTimeout(r, 50))
    const entries = fs.readdirSync(base)
    if (entries.length > 0 && fs.readdirSync(`${base}/${entries[0]}`).length > 0) staged = `${base}/${entries[0]}`
  }
  expect(staged).toBeDefined()
  expect(fs.statSync(staged!).mode & 0o777).toBe(0o700)
  for (const f of fs.readdirSync(staged!)) expect(fs.statSync(`${staged}/${f}`).mode & 0o777).toBe(0o600)
  const exited = new Promise<string | null>((r) => child.on("exit", (_code, sig) => r(sig)))
  child.kill(signal)
  expect(await exited).toBe(signal)
  expect(fs.readdirSync(base)).toEqual([])
})
