/**
 * The factories, the one key-material type and what the package index exports.
 */
import { ChunkInput, ChunkOutput, PROCESSOR_API_VERSION, runPipeline } from "@cage/core"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import * as agcm from "../src/index.js"
import { agcmDecryptFactory, agcmEncryptFactory, type KeyMaterial, wipeKey } from "../src/index.js"
import { bytes, key32 } from "./helpers.js"

describe("processor factories", () => {
  it("describe the processors they make", () => {
    for (const [factory, name] of [[agcmEncryptFactory, "agcm-encrypt"], [agcmDecryptFactory, "agcm-decrypt"]] as const) {
      expect(factory).toMatchObject({ name, apiVersion: PROCESSOR_API_VERSION, capabilities: { kind: "transform", ordered: false } })
      expect(factory.description.length).toBeGreaterThan(0)
    }
    const made = agcmEncryptFactory.make({ key: key32(1) })
    expect(made.name).toBe(agcmEncryptFactory.name)
    expect(made.capabilities).toMatchObject(agcmEncryptFactory.capabilities)
    expect(agcmDecryptFactory.make({ key: key32(1) }).name).toBe(agcmDecryptFactory.name)
  })

  it("make processors that round-trip through the engine", async () => {
    const plain = bytes(100_000, 3)
    const key = key32(2)
    const sealed = ChunkOutput.toMemory()
    await Effect.runPromise(runPipeline({ input: ChunkInput.fromBytes(plain), output: sealed, pipeline: [agcmEncryptFactory.make({ key, workers: 1 })], chunkBytes: 64 * 1024 }))
    const opened = ChunkOutput.toMemory()
    await Effect.runPromise(runPipeline({ input: ChunkInput.fromBytes(sealed.bytes()), output: opened, pipeline: [agcmDecryptFactory.make({ key, workers: 1 })], chunkBytes: 64 * 1024 }))
    expect(Buffer.from(opened.bytes()).equals(plain)).toBe(true)
  })
})

describe("KeyMaterial", () => {
  it("wipeKey zero-fills a key or a passphrase", () => {
    const raw: KeyMaterial = { key: key32(3) }
    const secret: KeyMaterial = { passphrase: Buffer.from("correct horse"), scryptLogN: 10, maxScryptLogN: 18 }
    wipeKey(raw)
    wipeKey(secret)
    expect((raw as { key: Uint8Array }).key.every((b) => b === 0)).toBe(true)
    expect((secret as { passphrase: Uint8Array }).passphrase.every((b) => b === 0)).toBe(true)
  })
})

describe("the package index", () => {
  it("exports no test seam", () => {
    const names = Object.keys(agcm)
    for (const seam of ["withFault", "faultOf", "SegmentPool", "SegmentCipher", "cipherSegment", "bufferReleaser"]) expect(names).not.toContain(seam)
  })
})
