// The conformance kit on both processors of this package, as any third-party author runs it.
import { describeProcessorConformance, pseudoRandomBytes } from "@cage/testkit"
import * as zlib from "node:zlib"
import { gunzip, gzip } from "../src/index.js"
import { encodeMember, END_MEMBER } from "../src/Member.js"

// gzip: a transform whose output size differs from its input, checked through its inverse.
// The memory check streams 64 MiB here; bench/gzip.mjs runs the 256 MiB case with peak RSS.
describeProcessorConformance("gzip", () => gzip({ level: 1 }), {
  inverse: () => gunzip(),
  inverseRejectsTampering: true,
  largeInputBytes: 64 * 1024 * 1024
})

// gunzip: its input must be a file written by gzip(); the kit's sizes become data sizes.
const member = (plain: Uint8Array) => encodeMember(plain, zlib.deflateRawSync(plain, { level: 1 }))
const gzipFile = (size: number, seed: number) => {
  const data = pseudoRandomBytes(size, seed)
  const parts: Array<Uint8Array> = []
  for (let at = 0; at < size; at += 97) parts.push(member(data.subarray(at, at + 97)))
  parts.push(END_MEMBER)
  return Buffer.concat(parts)
}
describeProcessorConformance("gunzip", () => gunzip(), {
  input: gzipFile,
  largeInputBytes: 64 * 1024 * 1024,
  largeInput: function*(total) {
    const block = member(pseudoRandomBytes(1 << 20, 5))
    for (let sent = 0; sent + block.length <= total; sent += block.length) yield block
    yield END_MEMBER
  }
})
