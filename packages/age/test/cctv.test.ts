/**
 * The C2SP CCTV age suite (npm `cctv-age`), every vector, through both backends' decrypt.
 * Success vectors must give the recorded payload hash; failure vectors the class they name,
 * never a success and never a defect. Payload failures must release only authenticated
 * plaintext: what reached the output must hash to the recorded payload.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { AgeError, compareVersions, decrypt } from "../src/index.js"
import { cctvClass, ChunkInput, ChunkOutput, failureOf, requireAge, runExit, tempDir, vectors } from "./helpers.js"

const ageVersion = requireAge()
const all = vectors()
const dir = tempDir()
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

// age learned ML-KEM hybrid identities (AGE-SECRET-KEY-PQ-1...) in 1.3.0.
const cliKnowsHybrid = compareVersions(ageVersion, "1.3.0") >= 0
const isHybrid = (v: (typeof all)[number]) => v.identities.some((i) => i.startsWith("AGE-SECRET-KEY-PQ-"))
// A syntactically valid identity for vectors that name none (armor failures).
const FALLBACK_IDENTITY = "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0"

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex")

it("the suite is complete", () => {
  expect(all.length).toBe(143)
})

describe.each(["age", "age-lib"] as const)("CCTV age vectors through backend %s", (backend) => {
  it.for(all)("$name", { timeout: 60_000 }, async (v) => {
    const output = ChunkOutput.toMemory()
    const keys = v.passphrases.length > 0
      ? { passphrase: Buffer.from(v.passphrases[0]!) }
      : (() => {
        const file = nodePath.join(dir, `${backend}-${v.name}.key`)
        fs.writeFileSync(file, `${(v.identities.length > 0 ? v.identities : [FALLBACK_IDENTITY]).join("\n")}\n`, { mode: 0o600 })
        return { identityFiles: [file] }
      })()
    const exit = await runExit(decrypt({ backend, input: ChunkInput.fromBytes(v.body), output, strategy: "pipe", ...keys }))
    if (backend === "age" && isHybrid(v) && !cliKnowsHybrid) {
      // age 1.1.1 refuses the identity file before reading the input: a usage error, never a success.
      const e = failureOf(exit)
      expect(e).toBeInstanceOf(AgeError)
      expect((e as AgeError).reason).toBe("Unsupported")
      return
    }
    if (v.expect === "success") {
      expect(exit._tag).toBe("Success")
      expect(output.committed()).toBe(true)
      expect(sha256(output.bytes())).toBe(v.payload)
      return
    }
    const e = failureOf(exit)
    expect(e).toBeInstanceOf(AgeError)
    expect(cctvClass(e as AgeError)).toBe(v.expect)
    expect((e as AgeError).exitCode).toBe(3)
    expect(output.committed()).toBe(false)
    if (v.expect === "payload failure") expect(sha256(output.bytes())).toBe(v.payload)
  })
})
