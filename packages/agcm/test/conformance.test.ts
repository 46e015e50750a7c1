// agcm-encrypt runs @cage/testkit's conformance suite on itself, with agcm-decrypt as its inverse.
import { describeProcessorConformance } from "@cage/testkit"
import { agcmDecrypt, agcmEncrypt } from "../src/index.js"

const key = new Uint8Array(32).fill(7)

describeProcessorConformance("agcm-encrypt (in-process)", () => agcmEncrypt({ key, chunkSize: 16 * 1024, workers: 1 }), {
  largeInputBytes: 64 << 20,
  deterministic: false, // a fresh salt per run
  inverse: () => agcmDecrypt({ key, workers: 1 }),
  inverseRejectsTampering: true
})
