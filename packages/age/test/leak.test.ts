/**
 * The passphrase must never appear in the terminal output (the echo race), in verbose
 * notes, or in errors. Every decryption and encryption here goes through a real PTY.
 *
 * Decryption runs 50 times (files made with a low scrypt work factor), and so does
 * encryption, which age 1.1.1 always does at scrypt work factor 18 (about 1 s per run
 * here; CAGE_AGE_LEAK_ENCRYPT_RUNS lowers it for a quick local run).
 */
import { Encrypter } from "age-encryption"
import { Readable } from "node:stream"
import { afterAll, expect, it } from "vitest"
import { decrypt, encrypt } from "../src/index.js"
import { terminalSpy } from "../src/internal/cli.js"
import { ChunkInput, ChunkOutput, requireAge, runExit } from "./helpers.js"

requireAge()
const DECRYPT_RUNS = 50
const ENCRYPT_RUNS = Number(process.env.CAGE_AGE_LEAK_ENCRYPT_RUNS ?? "50")
const PASS = "leak-canary-7c1e9b (not to be seen)"
const captured: Array<string> = []
terminalSpy.current = (raw) => captured.push(raw)
afterAll(() => { terminalSpy.current = undefined })

const check = (texts: ReadonlyArray<string>) => {
  const all = texts.join("")
  expect(all).not.toContain(PASS)
  // Also no long fragment of it (an echo cut by a terminal redraw).
  expect(all).not.toContain(PASS.slice(0, 12))
}

it(`${DECRYPT_RUNS} decryptions through the terminal (half with a wrong passphrase) never show the passphrase`, { timeout: 300_000 }, async () => {
  const e = new Encrypter()
  e.setPassphrase(PASS)
  e.setScryptWorkFactor(10)
  const file = Buffer.from(await e.encrypt(new Uint8Array(70_000).fill(9)))
  const notes: Array<string> = []
  const errors: Array<string> = []
  let prompts = 0
  for (let i = 0; i < DECRYPT_RUNS; i++) {
    const wrong = i % 2 === 1
    const before = captured.length
    const exit = await runExit(decrypt({
      backend: "age",
      input: ChunkInput.fromStream(Readable.from([file])),
      output: ChunkOutput.toMemory(),
      passphrase: Buffer.from(wrong ? `${PASS}!` : PASS),
      onVerbose: (m) => notes.push(m)
    }))
    expect(exit._tag).toBe(wrong ? "Failure" : "Success")
    if (exit._tag === "Failure") errors.push(String(exit.cause), JSON.stringify(exit.cause))
    if (captured.slice(before).join("").includes("Enter passphrase")) prompts++
  }
  expect(prompts).toBe(DECRYPT_RUNS)
  check(captured)
  check(notes)
  check(errors)
})

it(`${ENCRYPT_RUNS} encryptions through the terminal never show the passphrase`, { timeout: 600_000 }, async () => {
  const notes: Array<string> = []
  const before = captured.length
  for (let i = 0; i < ENCRYPT_RUNS; i++) {
    const out = ChunkOutput.toMemory()
    const exit = await runExit(encrypt({
      backend: "age",
      input: ChunkInput.fromBytes(new Uint8Array(1000).fill(i)),
      output: out,
      passphrase: Buffer.from(PASS),
      onVerbose: (m) => notes.push(m)
    }))
    expect(exit._tag).toBe("Success")
  }
  const transcript = captured.slice(before).join("")
  expect(transcript.split("Confirm passphrase").length - 1).toBe(ENCRYPT_RUNS)
  check(captured)
  check(notes)
})
