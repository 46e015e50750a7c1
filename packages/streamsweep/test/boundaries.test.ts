import { ChunkInput } from "@cage/core"
import { Effect } from "effect"
import fc from "fast-check"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { checkCuts, checkCutsFile, plan, planFile, type PlanFormat, type PlannedChunk } from "../src/index.js"

const enc = (s: string) => new TextEncoder().encode(s)
const dec = (b: Uint8Array) => new TextDecoder().decode(b)
const run = <A, E>(e: Effect.Effect<A, E>) => Effect.runSync(e)

/** A document built from pieces, with every element's byte range recorded: the oracle. */
interface Layout {
  readonly data: Uint8Array
  readonly values: Array<unknown>
  readonly ranges: Array<readonly [number, number]>
  readonly format: "array" | "ndjson" | "sequence"
}

const build = (format: Layout["format"], values: Array<unknown>, texts: Array<string>, gaps: Array<string>): Layout => {
  let text = format === "array" ? `${gaps[0]}[${gaps[1]}` : gaps[0]
  const ranges: Array<readonly [number, number]> = []
  texts.forEach((t, i) => {
    if (i > 0) text += format === "array" ? `${gaps[(i * 3) % gaps.length]},${gaps[(i * 5) % gaps.length]}` : format === "ndjson" ? `\n${gaps[i % gaps.length]}` : ` ${gaps[i % gaps.length]}`
    const start = enc(text).length
    text += t
    ranges.push([start, enc(text).length])
  })
  text += format === "array" ? `${gaps[2 % gaps.length]}]${gaps[3 % gaps.length]}` : gaps[1 % gaps.length]
  return { data: enc(text), values, ranges, format }
}

const layoutArb = fc.tuple(
  fc.constantFrom("array" as const, "ndjson" as const, "sequence" as const),
  fc.array(fc.jsonValue({ maxDepth: 3, stringUnit: "grapheme" }), { maxLength: 12 }),
  fc.constantFrom(undefined, 1),
  fc.array(fc.constantFrom("", " ", "\n", "\t ", "\r\n"), { minLength: 4, maxLength: 6 })
).map(([format, values, indent, gaps]) => {
  const vs = values.map((v) => JSON.parse(JSON.stringify(v)) as unknown)
  const texts = vs.map((v) => JSON.stringify(v, null, format === "ndjson" ? undefined : indent))
  return build(format, vs, texts, format === "ndjson" ? gaps.map((g) => g.replace(/\n/g, " ")) : gaps)
})

const kindOf = (v: unknown) => (typeof v === "string" ? ["string", "escape"] : typeof v === "number" ? ["number"] : typeof v === "boolean" || v === null ? ["literal"] : ["structure", "string", "escape", "number", "literal"])

describe("checkCuts", () => {
  it("property: a cut is safe exactly when no element contains it, at every offset and read size", () => {
    fc.assert(fc.property(layoutArb, fc.integer({ min: 1, max: 9 }), (layout, readBytes) => {
      const all = Array.from({ length: layout.data.length + 1 }, (_, k) => k)
      const report = run(checkCuts(ChunkInput.fromBytes(layout.data), all, { format: layout.format, readBytes }))
      expect(report.cuts.map((c) => c.offset)).toEqual(all)
      // Collect disagreements first: one assertion per run keeps the property fast.
      const wrong = report.cuts.filter((v) => {
        const inside = layout.ranges.findIndex(([s, e]) => s < v.offset && v.offset < e)
        return v.safe !== (inside < 0) || (inside >= 0 && !kindOf(layout.values[inside]).includes(v.inside))
      })
      expect(wrong, dec(layout.data)).toEqual([])
      expect(report.safe).toBe(report.cuts.every((c) => c.safe))
      expect(report.exitCode).toBe(report.safe ? 0 : 3)
    }), { numRuns: 300 })
  })

  it("names what each unsafe cut splits, with depth, path, line and column", () => {
    const text = "[{\"user\": {\"name\": \"a\\u00e9b\", \"n\": -12.5e3, \"ok\": true, \"xs\": [1, [2]]}},\n 7]"
    const at = (needle: string, plus = 0) => enc(text.slice(0, text.indexOf(needle) + plus)).length
    const cuts = [at("\"a\\", 2), at("\\u00e9", 1), at("\\u00e9", 3), at("-12", 2), at("true", 2), at("[2]", 1), at("[2]"), at(",\n 7"), at(" 7]", 2), at("}},", 1)]
    const report = run(checkCuts(ChunkInput.fromBytes(enc(text)), cuts))
    const byOffset = Object.fromEntries(report.cuts.map((c) => [c.offset, c]))
    expect(byOffset[cuts[0]]).toMatchObject({ safe: false, inside: "string", depth: 3, path: "$[0].user.name" })
    expect(byOffset[cuts[1]]).toMatchObject({ inside: "escape", path: "$[0].user.name" })
    expect(byOffset[cuts[2]]).toMatchObject({ inside: "escape" })
    expect(byOffset[cuts[3]]).toMatchObject({ inside: "number", depth: 3, path: "$[0].user.n" })
    expect(byOffset[cuts[4]]).toMatchObject({ inside: "literal", path: "$[0].user.ok" })
    expect(byOffset[cuts[5]]).toMatchObject({ inside: "structure", depth: 5, path: "$[0].user.xs[1]" })
    expect(byOffset[cuts[6]]).toMatchObject({ inside: "structure", depth: 4, path: "$[0].user.xs" })
    expect(byOffset[cuts[7]]).toMatchObject({ safe: true, inside: "between", depth: 1, line: 1 })
    expect(byOffset[cuts[8]]).toMatchObject({ safe: true, inside: "between", depth: 1, line: 2, column: 3 })
    expect(byOffset[cuts[9]]).toMatchObject({ safe: false, inside: "structure", depth: 1 + 1, path: "$[0]" })
    expect(report).toMatchObject({ format: "array", safe: false, unsafe: 8, exitCode: 3 })
  })

  it("a number cut at the edge of a read waits for the next byte", () => {
    for (let readBytes = 1; readBytes <= 6; readBytes++) {
      const r = run(checkCuts(ChunkInput.fromBytes(enc("[12,3]")), [1, 2, 3, 4, 5, 6], { readBytes }))
      expect(r.cuts.map((c) => c.inside)).toEqual(["between", "number", "between", "between", "between", "edge"])
    }
    expect(run(checkCuts(ChunkInput.fromBytes(enc("12 3")), [1, 2, 3], { format: "sequence" })).cuts.map((c) => c.safe)).toEqual([false, true, true])
  })

  it("treats a single non-array document as one element", () => {
    const r = run(checkCuts(ChunkInput.fromBytes(enc("{\"a\":[1]}")), [0, 1, 5, 9]))
    expect(r.cuts.map((c) => c.safe)).toEqual([true, false, false, true])
    expect(r.format).toBe("sequence")
  })

  it("fails on invalid JSON, on an offset beyond the end, and on a non-array with format array", () => {
    const flip = <A, E>(e: Effect.Effect<A, E>) => Effect.runSync(Effect.flip(e))
    expect(flip(checkCuts(ChunkInput.fromBytes(enc("[1,]")), [1]))).toMatchObject({ _tag: "JsonSyntaxError", offset: 3 })
    expect(flip(checkCuts(ChunkInput.fromBytes(enc("[1]")), [4]))).toMatchObject({ _tag: "StreamSweepUsageError", reason: "Offset", exitCode: 2 })
    expect(flip(checkCuts(ChunkInput.fromBytes(enc("[1]")), [-1]))).toMatchObject({ _tag: "StreamSweepUsageError", reason: "Offset" })
    expect(flip(checkCuts(ChunkInput.fromBytes(enc("\n  {}")), [1], { format: "array" }))).toMatchObject({ _tag: "JsonSyntaxError", offset: 3, line: 2, column: 3 })
    expect(flip(checkCuts(ChunkInput.fromBytes(enc("[1] [2]")), [1]))).toMatchObject({ _tag: "JsonSyntaxError", reason: "TrailingData", offset: 4 })
  })
})

describe("plan", () => {
  const elementsOf = (layout: Layout, c: PlannedChunk) => {
    const bytes = layout.data.subarray(c.start, c.end)
    return layout.format === "array" ? JSON.parse(`[${dec(bytes)}]`) : dec(bytes).split(/\s+(?=[^\s])/).length && JSON.parse(`[${layout.ranges.slice(c.firstElement, c.firstElement + c.elements).map(([s, e]) => dec(layout.data.subarray(s, e))).join(",")}]`)
  }

  it("property: chunks hold whole elements in order, stay within the target unless one element is larger, and are greedy", () => {
    fc.assert(fc.property(layoutArb, fc.integer({ min: 1, max: 80 }), fc.integer({ min: 1, max: 9 }), (layout, targetBytes, readBytes) => {
      const p = run(plan(ChunkInput.fromBytes(layout.data), { targetBytes, format: layout.format, readBytes }))
      expect(p.elements).toBe(layout.values.length)
      expect(p.totalChunks).toBe(p.chunks.length)
      expect(p.format).toBe(layout.format)
      let next = 0
      p.chunks.forEach((c, i) => {
        expect(c.index).toBe(i)
        expect(c.final).toBe(i === p.chunks.length - 1)
        expect(c.firstElement).toBe(next)
        expect(c.start).toBe(layout.ranges[c.firstElement][0])
        expect(c.end).toBe(layout.ranges[c.firstElement + c.elements - 1][1])
        expect(c.length).toBe(c.end - c.start)
        if (c.elements > 1) expect(c.length).toBeLessThanOrEqual(targetBytes)
        if (i > 0) {
          const prev = p.chunks[i - 1]
          expect(layout.ranges[c.firstElement][1] - prev.start).toBeGreaterThan(targetBytes)
        }
        expect(elementsOf(layout, c)).toEqual(layout.values.slice(c.firstElement, c.firstElement + c.elements))
        // Each chunk is valid on its own: a sequence, or the items of an array.
        const alone = layout.data.subarray(c.start, c.end)
        if (layout.format === "array") expect(() => JSON.parse(`[${dec(alone)}]`)).not.toThrow()
        next += c.elements
      })
      expect(next).toBe(layout.values.length)
      expect(p.cuts).toEqual(p.chunks.slice(0, -1).map((c) => c.end))
      // Every planned cut passes the checker.
      expect(run(checkCuts(ChunkInput.fromBytes(layout.data), p.cuts, { format: layout.format })).safe).toBe(true)
    }), { numRuns: 300 })
  })

  it.for([
    ["[1,2,3]", "auto", 3, "array", [[1, 4], [5, 6]]],
    ["[ ]", "auto", 3, "array", []],
    ["", "auto", 3, "sequence", []],
    ["{\"a\":1} {\"b\":2}\n[3]", "auto", 100, "sequence", [[0, 19]]],
    ["\"a\"\n\"bb\"\n", "ndjson", 1, "ndjson", [[0, 3], [4, 8]]],
    ["[[1,2],[3,4,5,6,7]]", "array", 4, "array", [[1, 6], [7, 18]]]
  ] as const)("%j (%s, target %i)", ([text, format, targetBytes, resolved, spans]) => {
    const p = run(plan(ChunkInput.fromBytes(enc(text)), { targetBytes, format: format as PlanFormat }))
    expect(p.format).toBe(resolved)
    expect(p.chunks.map((c) => [c.start, c.end])).toEqual(spans)
  })

  it("streams chunks to onChunk instead of keeping them", () => {
    const seen: Array<PlannedChunk> = []
    const p = run(plan(ChunkInput.fromBytes(enc("[1,2,3,4]")), { targetBytes: 1, onChunk: (c) => void seen.push(c) }))
    expect(p.chunks).toEqual([])
    expect(p.totalChunks).toBe(4)
    expect(seen.map((c) => c.start)).toEqual([1, 3, 5, 7])
    expect(seen.at(-1)?.final).toBe(true)
  })

  it("rejects a bad target size, a bad format, and invalid JSON", () => {
    const flip = <A, E>(e: Effect.Effect<A, E>) => Effect.runSync(Effect.flip(e))
    const input = () => ChunkInput.fromBytes(enc("[1]"))
    expect(flip(plan(input(), { targetBytes: 0 }))).toMatchObject({ _tag: "StreamSweepUsageError", reason: "Option", exitCode: 2 })
    expect(flip(plan(input(), { targetBytes: 1.5 }))).toMatchObject({ _tag: "StreamSweepUsageError", reason: "Option" })
    expect(flip(plan(input(), { targetBytes: 1, format: "xml" as PlanFormat }))).toMatchObject({ _tag: "StreamSweepUsageError", reason: "Format" })
    expect(flip(plan(ChunkInput.fromBytes(enc("[1,{]")), { targetBytes: 1 }))).toMatchObject({ _tag: "JsonSyntaxError", offset: 4, exitCode: 3 })
    expect(flip(plan(ChunkInput.fromBytes(enc(" \n 1")), { targetBytes: 1, format: "array" }))).toMatchObject({ _tag: "JsonSyntaxError", offset: 3, line: 2, column: 2 })
  })

  it("planFile and checkCutsFile read files", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "streamsweep-"))
    const file = path.join(dir, "a.json")
    fs.writeFileSync(file, JSON.stringify(Array.from({ length: 100 }, (_, i) => ({ i, s: "x".repeat(i) }))))
    const p = await Effect.runPromise(planFile(file, { targetBytes: 1000 }))
    expect(p.chunks.length).toBeGreaterThan(3)
    const r = await Effect.runPromise(checkCutsFile(file, [...p.cuts, 3]))
    expect(r.unsafe).toBe(1)
    expect(r.cuts.find((c) => c.offset === 3)).toMatchObject({ inside: "string", path: "$[0]" })
  })
})
