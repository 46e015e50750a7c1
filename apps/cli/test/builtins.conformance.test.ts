// Every built-in processor `cage` ships runs @cage/testkit's conformance suite on itself
// (AGCM's ciphers in packages/agcm/test/conformance.test.ts).
import { digest } from "@cage/core"
import { jsonIndex, jsonValidate } from "@cage/streamsweep"
import { describeProcessorConformance } from "@cage/testkit"

const small = { largeInputBytes: 64 << 20 } as const

describeProcessorConformance("digest", () => digest(), small)

// JSON processors need JSON input: NDJSON lines that any chunking keeps valid as a whole.
const ndjson = (size: number, seed: number) => {
  const lines: Array<string> = []
  let n = 0
  for (let i = 0; n < size; i++) {
    const line = JSON.stringify({ i, seed, s: "é\"\\u0041x".repeat(i % 5) }) + "\n"
    lines.push(line)
    n += Buffer.byteLength(line)
  }
  const all = Buffer.from(lines.join(""))
  // Cut to exactly `size` bytes at a line end, padding with spaces (whitespace is valid).
  const cut = all.subarray(0, size)
  const lastNl = cut.lastIndexOf(0x0a)
  const out = Buffer.alloc(size, 0x20)
  cut.copy(out, 0, 0, lastNl + 1)
  return new Uint8Array(out)
}
function* largeNdjson(total: number) {
  const block = ndjson(1 << 20, 1)
  for (let done = 0; done < total; done += block.length) yield block.subarray(0, Math.min(block.length, total - done))
}
describeProcessorConformance("json-validate", () => jsonValidate({ format: "ndjson" }), { input: ndjson, largeInput: largeNdjson, largeInputBytes: 64 << 20 })
describeProcessorConformance("json-index", () => jsonIndex({ format: "ndjson" }), { input: ndjson, largeInput: largeNdjson, largeInputBytes: 64 << 20 })
