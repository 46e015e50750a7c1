// The conformance kit, as every processor runs it on itself. Its inputs are text full of
// the pattern and its halves, so occurrences straddle chunk boundaries at every chunk size
// (the kit's default pseudo-random bytes would almost never contain the pattern).
import { describeProcessorConformance } from "@cage/testkit"
import { redact } from "../src/index.js"
import { textWith } from "./helpers.js"

describeProcessorConformance("redact", () => redact({ pattern: "hunter2" }), {
  input: textWith("hunter2"),
  // Held bytes are at most pattern length - 1: chunks shorter and longer than the pattern.
  chunkSizes: [1, 3, 7, 8, 64, 4096]
})

// A one-byte pattern holds nothing back between chunks.
describeProcessorConformance("redact, one-byte pattern", () => redact({ pattern: "@" }), {
  input: textWith("@"),
  largeInputBytes: false
})
