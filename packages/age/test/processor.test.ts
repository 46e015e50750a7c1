/** ageEncrypt / ageDecrypt as chunk processors, driven the way the engine drives them. */
import type { ChunkProcessor } from "@cage/core"
import { Encrypter } from "age-encryption"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import { afterAll, describe, expect, it } from "vitest"
import { type AgeError, ageDecrypt, ageEncrypt } from "../src/index.js"
import { failureOf, keygen, requireAge, runExit, tempDir, digestOf } from "./helpers.js"

requireAge()
const dir = tempDir()
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
const key = keygen(dir)
const other = keygen(dir, "other")

/** init, process every piece in order, finalize; returns all output bytes. */
const drive = (p: ChunkProcessor, pieces: ReadonlyArray<Uint8Array>) =>
  Effect.gen(function*() {
    yield* p.init({ input: "test", inputSize: undefined, chunkBytes: 1, readHeader: () => Effect.succeed(new Uint8Array(0)), resume: undefined })
    const out: Array<Uint8Array> = []
    let start = 0
    for (const [index, data] of pieces.entries()) {
      const chunk = { index, start, end: start + data.length, length: data.length, final: index === pieces.length - 1 }
      start += data.length
      const r = yield* p.process(chunk, data)
      if (r) out.push(r)
    }
    const f = yield* p.finalize({ plan: undefined as never, inputBytes: start })
    if (f?.trailer) out.push(f.trailer)
    return Buffer.concat(out)
  }).pipe(Effect.ensuring(p.close?.() ?? Effect.void))

const cut = (b: Uint8Array, size: number) => {
  const parts: Array<Uint8Array> = []
  for (let i = 0; i < b.length; i += size) parts.push(b.subarray(i, i + size))
  return parts
}
const plain = Buffer.alloc(200_003).map((_, i) => (i * 13 + 1) & 0xff)

describe.each(["age", "age-lib"] as const)("backend %s", (backend) => {
  it.for([1000, 65_536, 65_537, 300_000])("encrypts in %i-byte chunks; plain age decrypts; ageDecrypt round-trips", async (size) => {
    const enc = await Effect.runPromise(drive(ageEncrypt({ backend, recipients: [key.recipient] }), cut(plain, size)))
    expect(digestOf(execFileSync("age", ["-d", "-i", key.identityFile], { input: enc, maxBuffer: 1 << 24 }))).toEqual(digestOf(plain))
    const dec = await Effect.runPromise(drive(ageDecrypt({ backend, identityFiles: [key.identityFile] }), cut(enc, size + 7)))
    expect(digestOf(dec)).toEqual(digestOf(plain))
  })

  it("an empty stream and byte-by-byte writes", async () => {
    const small = plain.subarray(0, 300)
    const enc = await Effect.runPromise(drive(ageEncrypt({ backend, recipients: [key.recipient], armor: true }), cut(small, 1)))
    expect(digestOf(execFileSync("age", ["-d", "-i", key.identityFile], { input: enc }))).toEqual(digestOf(small))
    const empty = await Effect.runPromise(drive(ageEncrypt({ backend, recipients: [key.recipient] }), []))
    expect(execFileSync("age", ["-d", "-i", key.identityFile], { input: empty }).length).toBe(0)
  })

  it("the wrong identity fails with NoMatch and records no secret", async () => {
    const enc = await Effect.runPromise(drive(ageEncrypt({ backend, recipients: [key.recipient] }), [plain]))
    const e = failureOf(await runExit(drive(ageDecrypt({ backend, identityFiles: [other.identityFile] }), cut(enc, 50_000))))
    expect((e as AgeError).reason).toBe("NoMatch")
    const p = ageDecrypt({ backend, passphrase: Buffer.from("s3cret") })
    expect(JSON.stringify(p.options)).not.toContain("s3cret")
    expect(p.capabilities).toEqual({ kind: "transform", ordered: true, resumable: false })
  })
})

it("passphrase decryption through the terminal as a processor", async () => {
  const e = new Encrypter()
  e.setPassphrase("proc pass")
  e.setScryptWorkFactor(10)
  const enc = Buffer.from(await e.encrypt(plain))
  const dec = await Effect.runPromise(drive(ageDecrypt({ backend: "age", passphrase: Buffer.from("proc pass") }), cut(enc, 70_000)))
  expect(digestOf(dec)).toEqual(digestOf(plain))
})
