import fc from "fast-check"
import { execFileSync } from "node:child_process"
import { describe, expect, it } from "vitest"
import { digestOf } from "./helpers.js"
import { ArmorDecodeError, ArmorDecoder, ArmorEncoder, looksArmored } from "../src/internal/armor.js"

const encode = (data: Uint8Array, cuts: ReadonlyArray<number> = []) => {
  const e = new ArmorEncoder()
  const parts: Array<Buffer> = []
  let at = 0
  for (const c of [...cuts].sort((a, b) => a - b)) {
    parts.push(e.push(data.subarray(at, c)))
    at = c
  }
  parts.push(e.push(data.subarray(at)), e.end())
  return Buffer.concat(parts)
}
const decode = (text: Uint8Array, step?: number) => {
  const d = new ArmorDecoder()
  const parts: Array<Buffer> = []
  const s = step ?? Math.max(1, text.length)
  for (let i = 0; i < text.length; i += s) parts.push(d.push(text.subarray(i, i + s)))
  parts.push(d.end())
  return Buffer.concat(parts)
}

describe("armor", () => {
  // 48 plaintext bytes per 64-column line.
  it.for([0, 1, 47, 48, 49, 95, 96, 97, 1000])("round trip of %i bytes, whole and byte by byte", (n) => {
    const data = Buffer.alloc(n, 0).map((_, i) => (i * 31 + 7) & 0xff)
    const text = encode(data)
    expect(digestOf(decode(text))).toEqual(digestOf(Buffer.from(data)))
    expect(digestOf(decode(text, 1))).toEqual(digestOf(Buffer.from(data)))
    expect(digestOf(decode(text, 7))).toEqual(digestOf(Buffer.from(data)))
    for (const line of text.toString("latin1").trimEnd().split("\n")) expect(line.length).toBeLessThanOrEqual(64)
  })

  it("matches age -a byte for byte on the same binary", () => {
    const binary = Buffer.from("age-encryption.org/v1\n" + "x".repeat(500))
    const ours = encode(binary)
    // age -a armors whatever it encrypts; compare by decoding age's armor of a real file instead.
    const aged = execFileSync("age", ["-a", "-r", "age1m3a6jxq8v4m6crf3gaf8tl5qpp4deut3fhv5l5xnptsp960ejsqq6duf00"], { input: binary })
    const decoded = decode(aged, 5)
    expect(decoded.subarray(0, 22).toString()).toBe("age-encryption.org/v1\n")
    expect(digestOf(encode(decoded))).toEqual(digestOf(aged))
    expect(digestOf(decode(ours))).toEqual(digestOf(binary))
  })

  it("round-trips any data cut anywhere (property)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.array(fc.nat(600), { maxLength: 5 }), fc.integer({ min: 1, max: 70 }), (data, cuts, step) => {
        const text = encode(data, cuts.map((c) => c % (data.length + 1)))
        expect(digestOf(decode(text, step))).toEqual(digestOf(Buffer.from(data)))
      })
    )
  })

  it("rejects every truncation of an armored file", () => {
    const text = encode(Buffer.alloc(200, 1))
    for (let cut = 0; cut < text.length - 1; cut++) {
      // Cutting only the final newline of the END line is still valid armor.
      expect(() => decode(text.subarray(0, cut))).toThrow(ArmorDecodeError)
    }
    expect(digestOf(decode(text.subarray(0, text.length - 1)))).toEqual(digestOf(Buffer.alloc(200, 1)))
  })

  it("accepts whitespace around the block and CRLF, rejects data after it", () => {
    const text = encode(Buffer.from("hello")).toString("latin1")
    expect(decode(Buffer.from(`\n \t${text.replace(/\n/g, "\r\n")}\n\n`))).toEqual(Buffer.from("hello"))
    expect(() => decode(Buffer.from(`${text}x`))).toThrow(ArmorDecodeError)
  })

  it("tells armor from binary by the first bytes", () => {
    expect(looksArmored(Buffer.from("age-encryption.org/v1\n"), false)).toBe(false)
    expect(looksArmored(Buffer.from("age-enc"), false)).toBeUndefined()
    expect(looksArmored(Buffer.from("age-enc"), true)).toBe(false)
    expect(looksArmored(Buffer.from("-----BEGIN AGE"), false)).toBe(true)
    expect(looksArmored(Buffer.from("  garbage"), false)).toBe(true)
    expect(looksArmored(Buffer.alloc(0), true)).toBe(false)
  })
})
