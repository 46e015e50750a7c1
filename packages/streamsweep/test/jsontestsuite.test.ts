import * as fs from "node:fs"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { validateBytes, Validator } from "../src/index.js"

const dir = fileURLToPath(new URL("../../../../shared/vectors/jsontestsuite/", import.meta.url))
const files = fs.readdirSync(dir).filter((f) => f.endsWith(".json")).sort()

/** Feeds `bytes` in pieces of `step` bytes. */
const validateInSteps = (bytes: Uint8Array, step: number) => {
  const v = new Validator()
  for (let i = 0; i < bytes.length; i += step) if (!v.push(bytes.subarray(i, i + step))) return v.error
  v.end()
  return v.error
}

describe("JSONTestSuite (nst/JSONTestSuite test_parsing, every file)", () => {
  it("has the full set of cases", () => {
    expect(files.filter((f) => f.startsWith("y_")).length).toBe(64)
    expect(files.filter((f) => f.startsWith("n_")).length).toBe(128)
    expect(files.filter((f) => f.startsWith("i_")).length).toBe(29)
  })
  it.for(files)("%s", (file) => {
    const bytes = fs.readFileSync(dir + file)
    const whole = validateBytes(bytes)
    // The verdict must not depend on where the input is cut.
    for (const step of [1, 2, 3, 7]) {
      const cut = validateInSteps(bytes, step)
      expect(cut?.offset, `step ${step}`).toBe(whole?.offset)
      expect(cut?.reason, `step ${step}`).toBe(whole?.reason)
    }
    if (file.startsWith("y_")) expect(whole).toBeUndefined()
    if (file.startsWith("n_")) expect(whole?._tag).toBe("JsonSyntaxError")
    // Implementation-defined cases, pinned as documented in the README: numbers of any size and
    // 500 nested arrays are accepted; invalid UTF-8, UTF-16 input and unpaired surrogates are not.
    if (file.startsWith("i_")) expect(whole === undefined).toBe(!file.startsWith("i_string_"))
  })
})
