import { ChunkInput, ExitCode } from "@cage/core"
import { Effect, Exit } from "effect"
import fc from "fast-check"
import { isUtf8 } from "node:buffer"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { type JsonFormat, validate, validateBytes, validateFile, Validator } from "../src/index.js"
import { EventScanner, KIND_STRING, MODE_DOCUMENT, type ScanEvents } from "../src/internal/scanner.js"

const enc = (s: string) => new TextEncoder().encode(s)
const bytes = (...b: Array<number>) => Uint8Array.from(b)
const concat = (...parts: Array<Uint8Array>) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let o = 0
  for (const p of parts) out.set(p, (o += p.length) - p.length)
  return out
}

/** Validates `data` fed in pieces ending at `cuts` (sorted offsets). */
const validateCut = (data: Uint8Array, cuts: ReadonlyArray<number>, format: JsonFormat = "document") => {
  const v = new Validator({ format })
  let from = 0
  for (const c of [...cuts, data.length]) {
    if (!v.push(data.subarray(from, c))) return v.error
    from = c
  }
  v.end()
  return v.error
}

/** Our verdict on `text` cut at `cuts` (those inside it) equals JSON.parse's. */
const expectSameVerdictAsJsonParse = (text: string, cuts: ReadonlyArray<number>) => {
  let parsed = true
  try {
    JSON.parse(text)
  } catch {
    parsed = false
  }
  const data = enc(text)
  expect(validateCut(data, cuts.filter((c) => c <= data.length)) === undefined, text).toBe(parsed)
}

const cutsArb = (n: number) => fc.uniqueArray(fc.integer({ min: 0, max: n }), { maxLength: 12 }).map((a) => a.sort((x, y) => x - y))
const docArb = fc.tuple(fc.jsonValue({ maxDepth: 6, stringUnit: "grapheme" }), fc.constantFrom(undefined, 0, 1, 2, "\t"))
  .map(([v, indent]) => enc(JSON.stringify(v, null, indent)))

describe("errors: offset, line, column, expected", () => {
  it.for([
    ["{\"a\": 1,}", "UnexpectedByte", 8, 1, 9, "a string key"],
    ["[1, 2\n  , ]", "UnexpectedByte", 10, 2, 5, "a value (object, array, string, number, true, false or null)"],
    ["{\"a\" 1}", "UnexpectedByte", 5, 1, 6, "':'"],
    ["[1 2]", "UnexpectedByte", 3, 1, 4, "',' or ']'"],
    ["{\"a\":1]", "UnexpectedByte", 6, 1, 7, "',' or '}'"],
    ["[01]", "InvalidNumber", 2, 1, 3, "'.', 'e' or the end of the number (no leading zeros)"],
    ["[1.]", "InvalidNumber", 3, 1, 4, "a digit after '.'"],
    ["[1e+]", "InvalidNumber", 4, 1, 5, "a digit in the exponent"],
    ["[-]", "InvalidNumber", 2, 1, 3, "a digit after '-'"],
    ["[tru]", "UnexpectedByte", 4, 1, 5, "'e' (in a true, false or null literal)"],
    ["\"a\\x\"", "InvalidEscape", 3, 1, 4, "one of \" \\ / b f n r t u after '\\'"],
    ["\"\\u12G4\"", "InvalidEscape", 5, 1, 6, "a hex digit in \\uXXXX"],
    ["\"\\uDC00\"", "LoneSurrogate", 1, 1, 2, "a high surrogate escape before a low one"],
    ["\"\\uD800x\"", "LoneSurrogate", 7, 1, 8, "\\u followed by a low surrogate after a high surrogate"],
    ["\"\\uD800\\u0041\"", "LoneSurrogate", 7, 1, 8, "a low surrogate \\uDC00-\\uDFFF"],
    ["\"a\tb\"", "ControlCharacter", 2, 1, 3, "an escaped control character (\\n, \\u0000...)"],
    ["{} {}", "TrailingData", 3, 1, 4, "end of input"],
    ["\n\n  [1,\n", "UnexpectedEnd", 8, 4, 1, "a value (object, array, string, number, true, false or null)"],
    ["", "UnexpectedEnd", 0, 1, 1, "a value (object, array, string, number, true, false or null)"],
    ["\"abc", "UnexpectedEnd", 4, 1, 5, "the end of the string ('\"')"],
    ["[nul", "UnexpectedEnd", 4, 1, 5, "the rest of the literal 'null'"],
    ["{\"a\":{\"b\":[", "UnexpectedEnd", 11, 1, 12, "a value (object, array, string, number, true, false or null) or ']'"]
  ] as const)("%j", ([text, reason, offset, line, column, expected]) => {
    const data = enc(text)
    for (let step = 1; step <= data.length + 1; step++) {
      const cuts = Array.from({ length: Math.floor(data.length / step) }, (_, i) => (i + 1) * step)
      const e = validateCut(data, cuts)
      expect(e).toMatchObject({ _tag: "JsonSyntaxError", reason, offset, line, column, expected })
      expect(e?.exitCode).toBe(ExitCode.Integrity)
    }
    expect(validateBytes(data)?.message).toContain(`input:${line}:${column}: invalid JSON (${reason}) at byte ${offset}`)
  })
})

describe("UTF-8 (Unicode Table 3-7)", () => {
  const inString = (...b: Array<number>) => concat(enc("[\""), bytes(...b), enc("\"]"))
  it.for([
    ["overlong 2-byte NUL", [0xc0, 0x80], 2],
    ["overlong 2-byte", [0xc1, 0xbf], 2],
    ["overlong 3-byte", [0xe0, 0x80, 0xaf], 3],
    ["overlong 4-byte", [0xf0, 0x80, 0x80, 0xaf], 3],
    ["UTF-16 surrogate D800", [0xed, 0xa0, 0x80], 3],
    ["UTF-16 surrogate DFFF", [0xed, 0xbf, 0xbf], 3],
    ["above U+10FFFF", [0xf4, 0x90, 0x80, 0x80], 3],
    ["F5 lead", [0xf5, 0x80, 0x80, 0x80], 2],
    ["FF", [0xff], 2],
    ["stray continuation", [0x80], 2],
    ["truncated 3-byte", [0xe2, 0x82], 4],
    ["truncated 4-byte then ASCII", [0xf0, 0x9f, 0x98, 0x41], 5]
  ] as const)("rejects %s at its exact offset, whatever the cuts", ([, seq, offset]) => {
    const data = inString(...seq)
    for (let a = 0; a <= data.length; a++) {
      const e = validateCut(data, [a])
      expect(e, `cut at ${a}`).toMatchObject({ reason: "InvalidUtf8", offset })
    }
  })
  it("accepts the edges of every range, cut anywhere", () => {
    const ok = [[0xc2, 0x80], [0xdf, 0xbf], [0xe0, 0xa0, 0x80], [0xed, 0x9f, 0xbf], [0xee, 0x80, 0x80], [0xef, 0xbf, 0xbf], [0xf0, 0x90, 0x80, 0x80], [0xf4, 0x8f, 0xbf, 0xbf]]
    for (const seq of ok) {
      const data = inString(...seq, ...seq)
      for (let a = 0; a <= data.length; a++) for (let b = a; b <= data.length; b++) expect(validateCut(data, [a, b])).toBeUndefined()
    }
  })
  it("rejects non-ASCII bytes outside strings, including a BOM", () => {
    expect(validateBytes(bytes(0xef, 0xbb, 0xbf, 0x5b, 0x5d))).toMatchObject({ reason: "UnexpectedByte", offset: 0, found: "0xEF" })
    expect(validateBytes(concat(enc("[1,"), bytes(0xc3, 0xa9), enc("]")))).toMatchObject({ offset: 3 })
  })
  it("agrees with node:buffer isUtf8 on every 2-byte sequence", () => {
    for (let a = 0x80; a < 0x100; a++) {
      for (let b = 0; b < 0x100; b++) {
        if (b < 0x20 || b === 0x22 || b === 0x5c) continue
        const seq = bytes(a, b)
        expect(validateBytes(inString(a, b)) === undefined, `${a.toString(16)} ${b.toString(16)}`).toBe(isUtf8(seq))
      }
    }
  })
  it("property: agrees with isUtf8 on random string bodies, cut anywhere", () => {
    const body = fc.uint8Array({ maxLength: 40 }).map((b) => b.map((x) => (x < 0x20 || x === 0x22 || x === 0x5c ? x | 0x80 : x)))
    fc.assert(fc.property(body, fc.integer({ min: 0, max: 50 }), (b, cut) => {
      const data = concat(enc("\""), b, enc("\""))
      expect(validateCut(data, [Math.min(cut, data.length)]) === undefined).toBe(isUtf8(b))
    }), { numRuns: 3000 })
  })
})

describe("long string runs (word-at-a-time loop)", () => {
  // Every special byte at every position of runs around the switch length (16) and word size,
  // at every alignment, with junk after the end of the write range.
  const cases: Array<readonly [string, Array<number>, string | undefined, number]> = [
    ["control 0x1F", [0x1f], "ControlCharacter", 0],
    ["control 0x00", [0x00], "ControlCharacter", 0],
    ["stray 0x80", [0x80], "InvalidUtf8", 0],
    ["0xFF", [0xff], "InvalidUtf8", 0],
    ["quote", [0x22], "UnexpectedByte", 1],
    ["é", [0xc3, 0xa9], undefined, 0],
    ["😀", [0xf0, 0x9f, 0x98, 0x80], undefined, 0],
    ["escape \\n", [0x5c, 0x6e], undefined, 0],
    ["escape \\u00e9", [...enc("\\u00e9")], undefined, 0],
    ["DEL 0x7F", [0x7f], undefined, 0],
    ["space", [0x20], undefined, 0],
    ["bracket", [0x5d], undefined, 0]
  ]
  it.for(cases)("%s", ([, special, reason, shift]) => {
    for (const length of [15, 16, 17, 20, 31, 32, 33, 64, 65]) {
      for (let p = 0; p < length; p++) {
        const doc = concat(enc("[\""), enc("a".repeat(p)), Uint8Array.from(special), enc("b".repeat(length - p)), enc("\"]"))
        for (let align = 0; align < 4; align++) {
          const big = new Uint8Array(align + doc.length + 8).fill(0x22)
          big.set(doc, align)
          const v = new Validator()
          if (v.push(big, align, align + doc.length)) v.end()
          const e = v.error
          if (reason === undefined) expect(e, `${p}/${length}/${align}`).toBeUndefined()
          else expect(e, `${p}/${length}/${align}`).toMatchObject({ reason, offset: 2 + p + shift })
        }
      }
    }
  })
  it("agrees with JSON.parse on long ASCII strings with random specials, cut anywhere", () => {
    const body = fc.array(fc.oneof(fc.constantFrom("a", "b", " ", "~", "\\n", "\\\"", "\\u0041", "\"", "\\", "\u001f", "\t"), fc.string({ maxLength: 40 })), { maxLength: 30 })
    fc.assert(fc.property(body, cutsArb(600), (parts, cuts) => {
      const text = `["${parts.join("")}"]`
      expectSameVerdictAsJsonParse(text, cuts)
    }), { numRuns: 1000 })
  })
})

describe("nesting limit", () => {
  it.for([1, 2, 64, 1024])("maxDepth %i: accepts %i levels, rejects one more", (n) => {
    const ok = enc("[".repeat(n) + "]".repeat(n))
    expect(validateBytes(ok, { maxDepth: n })).toBeUndefined()
    const deep = enc("[".repeat(n) + "{}" + "]".repeat(n))
    expect(validateBytes(deep, { maxDepth: n })).toMatchObject({ reason: "DepthLimit", offset: n })
  })
  it("keeps memory to the depth: 100,000 levels under the default limit fail fast", () => {
    expect(validateBytes(enc("[".repeat(100_000)))).toMatchObject({ reason: "DepthLimit", offset: 1024 })
  })
})

describe("formats", () => {
  it.for([
    ["document", "{}", true], ["document", " 1 ", true], ["document", "1 2", false], ["document", "", false],
    ["sequence", "", true], ["sequence", "  \n", true], ["sequence", "{}{}[]\"a\"", true], ["sequence", "1 2 true null", true],
    ["sequence", "12", true], ["sequence", "truefalse", false], ["sequence", "1\"a\"", false], ["sequence", "[1,", false],
    ["ndjson", "{\"a\":1}\n{\"a\":2}\n", true], ["ndjson", "1\n\n\n2", true], ["ndjson", "{} {}", false], ["ndjson", "1\r\n2\r\n", true]
  ] as const)("%s %j → %s", ([format, text, ok]) => {
    expect(validateBytes(enc(text), { format }) === undefined).toBe(ok)
  })
})

describe("numbers, taken whole within a write or byte by byte across writes", () => {
  const numbers = ["0", "-0", "7", "10", "0.5", "0.125", "15.375", "-2.5", "00", "01", "-01", "0.", "1.", ".5", "-", "-.5", "1.5.", "1..5", "1.5e3", "1.5E+3", "12.34e-5", "0e0", "1e", "1e+", "0.5x", "1.2.3", "2.", "3.14159265358979", "1x"]
  const contexts = [(n: string) => n, (n: string) => `[${n}]`, (n: string) => `[${n},1]`, (n: string) => `{"a":${n}}`, (n: string) => `{"a":${n},"b":0.25}`, (n: string) => ` ${n} `]
  it("agree with JSON.parse whole and cut at every single offset, in every context", () => {
    for (const n of numbers) {
      for (const wrap of contexts) {
        const text = wrap(n)
        expectSameVerdictAsJsonParse(text, [])
        for (let cut = 0; cut <= text.length; cut++) expectSameVerdictAsJsonParse(text, [cut])
      }
    }
  })
  it("report a leading zero and a bare '.' at the offending byte", () => {
    expect(validateBytes(enc("[01]"))).toMatchObject({ reason: "InvalidNumber", offset: 2 })
    expect(validateBytes(enc("[1.]"))).toMatchObject({ reason: "InvalidNumber", offset: 3 })
    expect(validateBytes(enc("[0.5.1]"))).toMatchObject({ reason: "UnexpectedByte", offset: 4 })
  })
})

describe("structural events: the same from the fast paths (whole writes) as byte by byte", () => {
  /** Every event of a scan, with the scanner's token start where it has one, as text. */
  const eventsOf = (doc: Uint8Array, piece: number) => {
    const log: Array<string> = []
    const events: ScanEvents = {
      eventDepth: 1000,
      wantKeys: true,
      valueStart: (kind, depth, offset) => void log.push(`start ${kind} ${depth} ${offset}`),
      valueEnd: (kind, depth, end) => void log.push(`end ${kind} ${depth} ${end} token ${kind >= KIND_STRING ? scanner.tokenStart : "-"}`),
      key: (b, from, to, depth, truncated) => void log.push(`key ${Buffer.from(b.subarray(from, to)).toString("hex")} ${depth} ${truncated} token ${scanner.tokenStart}`)
    }
    const scanner = new EventScanner({ mode: MODE_DOCUMENT, maxDepth: 1000, events })
    for (let i = 0; i < doc.length; i += piece) expect(scanner.write(doc, i, Math.min(doc.length, i + piece))).toBe(true)
    expect(scanner.end()).toBe(true)
    return log
  }
  it("any document, compact (where the fast paths apply) or spaced: events, offsets and keys agree", () => {
    // Byte by byte no fast path applies (each needs the bytes after a token in the same write).
    fc.assert(fc.property(docArb, (doc) => {
      expect(eventsOf(doc, doc.length)).toEqual(eventsOf(doc, 1))
    }), { numRuns: 500 })
    const compact = enc('{"a":"x","b":["p","q",1,"r"],"c":0,"d":"y","e":true,"f":[{"g":"h"},"i"]}')
    const log = eventsOf(compact, compact.length)
    expect(log).toEqual(eventsOf(compact, 1))
    // Each string element of the array starts an event where its quote is.
    for (const at of [14, 18, 24]) expect(log).toContain(`start ${KIND_STRING} 2 ${at}`)
  })
})

describe("properties", () => {
  it("any valid document, cut at any offsets, validates", () => {
    fc.assert(fc.property(docArb.chain((d) => fc.tuple(fc.constant(d), cutsArb(d.length))), ([doc, cuts]) => {
      expect(validateCut(doc, cuts)).toBeUndefined()
    }), { numRuns: 500 })
  })
  it("never reads past the end of a write range (pieces of a larger buffer, garbage after each)", () => {
    fc.assert(fc.property(docArb.chain((d) => fc.tuple(fc.constant(d), cutsArb(d.length))), fc.uint8Array({ minLength: 1, maxLength: 8 }), ([doc, cuts], junk) => {
      const v = new Validator()
      let from = 0
      for (const c of [...cuts, doc.length]) {
        // The piece sits at the start of a buffer whose remaining bytes are junk.
        const piece = new Uint8Array(c - from + junk.length)
        piece.set(doc.subarray(from, c))
        piece.set(junk, c - from)
        expect(v.push(piece, 0, c - from)).toBe(true)
        from = c
      }
      expect(v.end()).toBe(true)
    }), { numRuns: 300 })
  })
  it("the NDJSON concatenation of valid documents, cut anywhere, validates as ndjson and sequence", () => {
    const ndjson = fc.array(fc.jsonValue({ maxDepth: 4, stringUnit: "grapheme" }), { minLength: 1, maxLength: 8 })
      .map((vs) => enc(vs.map((v) => JSON.stringify(v)).join("\n") + "\n"))
    fc.assert(fc.property(ndjson.chain((d) => fc.tuple(fc.constant(d), cutsArb(d.length))), ([doc, cuts]) => {
      expect(validateCut(doc, cuts, "ndjson")).toBeUndefined()
      expect(validateCut(doc, cuts, "sequence")).toBeUndefined()
    }), { numRuns: 300 })
  })
  it("agrees with JSON.parse on mutated ASCII documents, cut anywhere", () => {
    const ascii = fc.jsonValue({ maxDepth: 4, stringUnit: "binary-ascii" }).map((v) => JSON.stringify(v, null, 1))
    const mutated = ascii.chain((s) =>
      fc.tuple(fc.constant(s), fc.integer({ min: 0, max: Math.max(0, s.length - 1) }), fc.constantFrom(..."{}[]\",:0123456789.eE+- \ntfnrul\\ax"), fc.integer({ min: 0, max: 2 })))
    fc.assert(fc.property(mutated, cutsArb(200), ([s, at, ch, op], cuts) => {
      const text = op === 0 ? s.slice(0, at) + ch + s.slice(at + 1) : op === 1 ? s.slice(0, at) + ch + s.slice(at) : s.slice(0, at) + s.slice(at + 1)
      // JSON.parse accepts unpaired surrogate escapes; this validator rejects them by design.
      fc.pre(!/\\u[dD][89a-fA-F]/i.test(text))
      expectSameVerdictAsJsonParse(text, cuts)
    }), { numRuns: 3000 })
  })
})

describe("validate / validateFile", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "streamsweep-"))
  const n = 64
  const sizes = [1, n - 1, n, n + 1, 2 * n - 1, 2 * n, 2 * n + 1]
  it.for(sizes)("a %i-byte document with %i-byte reads", (size) => {
    // A string padded to exactly `size` bytes, with a multi-byte character across the read edge.
    const text = size < 3 ? "1".repeat(size) : `"${"é".repeat(Math.floor((size - 2) / 2))}${"a".repeat((size - 2) % 2)}"`
    const data = enc(text)
    expect(data.length).toBe(size)
    const report = Effect.runSync(validate(ChunkInput.fromBytes(data, "mem"), { readBytes: n }))
    expect(report).toEqual({ valid: true, input: "mem", format: "document", bytes: size, values: 1, maxDepth: 0, lines: 1 })
  })
  it("reports a file's error with its path, and exit code 3", async () => {
    const file = path.join(dir, "bad.json")
    fs.writeFileSync(file, "[\n  1,\n  2,\n]\n")
    const exit = await Effect.runPromiseExit(validateFile(file))
    expect(Exit.isFailure(exit)).toBe(true)
    const e = Exit.isFailure(exit) ? (exit.cause as unknown as { reasons: Array<{ error: unknown }> }).reasons?.[0]?.error : undefined
    expect(e).toMatchObject({ _tag: "JsonSyntaxError", input: file, offset: 12, line: 4, column: 1, exitCode: 3 })
  })
  it("fails with IoError (exit code 4) for a missing file", async () => {
    const r = await Effect.runPromise(Effect.flip(validateFile(path.join(dir, "missing.json"))))
    expect(r).toMatchObject({ _tag: "IoError", reason: "NotFound", exitCode: 4 })
  })
  it("fails with a usage error (exit code 2) for a bad depth limit", async () => {
    const r = await Effect.runPromise(Effect.flip(validate(ChunkInput.fromBytes(enc("1")), { maxDepth: 0 })))
    expect(r).toMatchObject({ _tag: "StreamSweepUsageError", reason: "Option", exitCode: 2 })
  })
  it("validates a valid file", async () => {
    const file = path.join(dir, "ok.ndjson")
    fs.writeFileSync(file, "{\"a\":[1,2]}\n{\"b\":{\"c\":null}}\n")
    expect(await Effect.runPromise(validateFile(file, { format: "ndjson" }))).toMatchObject({ values: 2, maxDepth: 2, lines: 3, bytes: 29 })
  })
})
