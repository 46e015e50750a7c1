// The redactor's own specification: its output is `reference(input)` for any chunking, its
// options and snapshot are checked, and the package's identity matches package.json.
import { ExitCode, type JsonValue } from "@cage/core"
import { Effect, Exit } from "effect"
import fc from "fast-check"
import * as fs from "node:fs"
import { describe, expect, it } from "vitest"
import factory, { MAX_PATTERN_BYTES, NAME, redact, RedactError, VERSION } from "../src/index.js"
import { cut, driveByHand, reference, runEngine } from "./helpers.js"

const PATTERN = "hunter2"
const make = () => redact({ pattern: PATTERN })
const text = (s: string) => Buffer.from(s, "utf8")

describe("redact", () => {
  it("replaces every occurrence with * of the same length, left to right without overlaps", async () => {
    const cases: Array<[string, string, string, number]> = [
      ["my password is hunter2, hunter2hunter2!", PATTERN, "my password is *******, **************!", 3],
      ["aaaaa", "aa", "****a", 2],
      ["abababab", "abab", "********", 2],
      ["ababab", "abab", "****ab", 1],
      ["hunter", PATTERN, "hunter", 0],
      ["", PATTERN, "", 0],
      // Bytes, not characters: "ï" and "é" are two bytes each in UTF-8.
      ["naïve café naïve", "naïve", "****** café ******", 2]
    ]
    for (const [input, pattern, expected, redactions] of cases) {
      expect(reference(text(input), pattern).toString(), `reference of ${input}`).toBe(expected)
      const { output, result } = await driveByHand(() => redact({ pattern }), [text(input)])
      expect(output.toString(), input).toBe(expected)
      expect(result).toEqual({ redactions })
    }
  })

  it("finds the pattern across every chunk boundary, at every chunk size from 1 to past its length", async () => {
    // The pattern at every offset of a 3-chunk input, so each boundary cuts it at each place.
    for (let chunkBytes = 1; chunkBytes <= PATTERN.length + 2; chunkBytes++) {
      for (let at = 0; at + PATTERN.length <= 3 * chunkBytes + PATTERN.length; at++) {
        const input = Buffer.concat([Buffer.alloc(at, "h"), text(PATTERN), text("hunte")])
        const { output, results } = await runEngine(make(), input, chunkBytes)
        expect(output.toString(), `chunk size ${chunkBytes}, pattern at ${at}`).toBe(reference(input, PATTERN).toString())
        expect(results[NAME]).toEqual({ redactions: 1 })
      }
    }
  })

  it("streams byte by byte: one-byte chunks give the whole-input output", async () => {
    const input = text("hunter hunter2hunter22 hhunter2 hunte")
    const byHand = await driveByHand(make, cut(input, Array.from(input, (_, i) => i)))
    const engine = await runEngine(make(), input, 1)
    expect(byHand.output.toString()).toBe("hunter **************2 h******* hunte")
    expect(engine.output.equals(byHand.output)).toBe(true)
  })

  it("any cut points: the output equals the reference redaction of the whole input", async () => {
    // A small alphabet and short patterns, so occurrences, overlaps and partial ones are common.
    const word = fc.string({ unit: fc.constantFrom("a", "b", "c"), minLength: 1, maxLength: 5 })
    await fc.assert(
      fc.asyncProperty(word, fc.array(word, { maxLength: 40 }), fc.array(fc.nat(), { maxLength: 12 }), async (pattern, words, cuts) => {
        const input = text(words.join(""))
        const { output } = await driveByHand(() => redact({ pattern }), cut(input, cuts.map((c) => c % (input.length + 1))))
        expect(output.toString()).toBe(reference(input, pattern).toString())
      }),
      { numRuns: 500 }
    )
  })

  it("resumes from the JSON of its snapshot at every cut point, which holds counters, never input bytes", async () => {
    const input = text("xhunter2hunterhunter2hunhunter2h")
    const pieces = cut(input, [3, 9, 12, 14, 20, 21, 28])
    const once = await driveByHand(make, pieces)
    for (let at = 1; at < pieces.length; at++) {
      const resumed = await driveByHand(make, pieces, at)
      expect(resumed.output.equals(once.output), `resumed before piece ${at}`).toBe(true)
      expect(resumed.result).toEqual(once.result)
    }
    const p = make()
    expect(Object.values(p.snapshot!()!).every((v) => typeof v === "number")).toBe(true)
  })

  it("refuses a snapshot it did not write, with exit code 5", async () => {
    const snapshots: Array<JsonValue> = [null, "x", { held: 1 }, { held: -1, redactions: 0 }, { held: PATTERN.length, redactions: 0 }]
    for (const resume of snapshots) {
      const p = make()
      const exit = await Effect.runPromiseExit(p.init({ input: "x", inputSize: 0, chunkBytes: 64, readHeader: () => Effect.succeed(new Uint8Array(0)), resume }))
      const error = Exit.isFailure(exit) ? Exit.findErrorOption(exit) : undefined
      expect(error?._tag === "Some" ? error.value : exit, JSON.stringify(resume)).toMatchObject({ _tag: "RedactError", reason: "BadSnapshot", exitCode: ExitCode.ResumeRefused })
    }
  })

  it("refuses a missing, empty, non-string or too long pattern with a RedactError, exit code 2", () => {
    const bad: Array<[unknown, string]> = [
      [{}, "pattern must be a non-empty string, got none"],
      [{ pattern: "" }, "pattern must be a non-empty string, got an empty string"],
      [{ pattern: 42 }, "pattern must be a non-empty string, got a number"],
      [{ pattern: "é".repeat(MAX_PATTERN_BYTES / 2 + 1) }, `pattern is ${MAX_PATTERN_BYTES + 2} bytes long (UTF-8), the maximum is ${MAX_PATTERN_BYTES}`]
    ]
    for (const [options, message] of bad) {
      const error = (() => {
        try {
          factory.make(options as { pattern: string })
        } catch (e) {
          return e
        }
      })()
      expect(error).toBeInstanceOf(RedactError)
      expect(error).toMatchObject({ reason: "BadOption", message, exitCode: ExitCode.Usage })
    }
    expect(() => redact({ pattern: "x".repeat(MAX_PATTERN_BYTES) })).not.toThrow()
  })
})

describe("the package", () => {
  it("default-exports the factory cage loads, named and versioned as in package.json", () => {
    const pkg = JSON.parse(fs.readFileSync(new URL("../package.json", import.meta.url), "utf8"))
    expect(NAME).toBe(pkg.name)
    expect(VERSION).toBe(pkg.version)
    expect(factory.name).toBe(pkg.name)
    expect(factory.capabilities).toEqual(make().capabilities)
    expect(make()).toMatchObject({ name: pkg.name, version: pkg.version, options: { pattern: PATTERN } })
  })
})
