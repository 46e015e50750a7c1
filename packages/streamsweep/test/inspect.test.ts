import { ChunkInput } from "@cage/core"
import { Effect } from "effect"
import fc from "fast-check"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { formatMetadata, inspect, type InspectOptions, inspectFile } from "../src/index.js"

const enc = (s: string) => new TextEncoder().encode(s)
const run = (data: Uint8Array, options: InspectOptions = {}) => Effect.runSync(inspect(ChunkInput.fromBytes(data, "mem"), options))

const doc = `[
  {"id": 1, "user": {"name": "Ann", "tags": ["a", "b"]}, "n": -12.5e-3, "ok": true},
  {"id": 2, "user": {"name": "Bob\\u00e9", "tags": []}, "n": 123456789012345678901234567890, "ok": false, "id": 3},
  {"id": 4, "user": null, "deep": [[[[{"x": "${"long".repeat(10)}"}]]]]}
]`

describe("inspect", () => {
  it("reports depth, counts, keys, collapsed paths, largest tokens and anomalies, whatever the read size", () => {
    const data = enc(doc)
    const m = run(data, { deepThreshold: 4, hugeTokenBytes: 30 })
    expect(m).toMatchObject({
      input: "mem", format: "array", bytes: data.length, lines: 5, validUtf8: true, topLevelElements: 3, maxDepth: 7,
      counts: { object: 6, array: 7, string: 5, number: 6, true: 1, false: 1, null: 1 }
    })
    expect(m.keys).toEqual({
      total: 17, distinct: 8, exact: true, maxUndercount: 0,
      top: [{ key: "id", count: 4 }, { key: "user", count: 3 }, { key: "n", count: 2 }, { key: "name", count: 2 }, { key: "ok", count: 2 }, { key: "tags", count: 2 }, { key: "deep", count: 1 }, { key: "x", count: 1 }]
    })
    expect(m.paths.top).toEqual([
      { path: "$[].id", count: 4 }, { path: "$[].user", count: 3 }, { path: "$[].n", count: 2 }, { path: "$[].ok", count: 2 },
      { path: "$[].user.name", count: 2 }, { path: "$[].user.tags", count: 2 }, { path: "$[].deep", count: 1 }, { path: "$[].deep[][][][].x", count: 1 }
    ])
    expect(m.largestNumbers[0]).toMatchObject({ bytes: 30, path: "$[].n", preview: "123456789012345678901234567890" })
    expect(m.largestStrings[0]).toMatchObject({ bytes: 42, path: "$[].deep[][][][].x", preview: `"${"long".repeat(10)}"`.slice(0, 48) })
    expect(m.anomalies.deepNesting).toMatchObject({ count: 1, threshold: 4, items: [{ depth: 5, path: "$[].deep[][]" }] })
    expect(m.anomalies.hugeTokens).toMatchObject({ count: 1, items: [{ bytes: 42, kind: "string" }] })
    expect(m.anomalies.duplicateKeys).toMatchObject({ count: 1, complete: true, items: [{ key: "id", path: "$[]", offset: doc.indexOf("\"id\": 3") }] })
    for (let readBytes = 1; readBytes <= 9; readBytes++) expect(run(data, { deepThreshold: 4, hugeTokenBytes: 30, readBytes })).toEqual(m)
  })

  it("decodes escaped keys, so \\u0061 and a are one key (and a duplicate)", () => {
    const m = run(enc("{\"a\": 1, \"\\u0061\": 2, \"odd key\": {\"\\\"\": 0}}"))
    expect(m.keys.top).toContainEqual({ key: "a", count: 2 })
    expect(m.anomalies.duplicateKeys.count).toBe(1)
    expect(m.paths.top.map((p) => p.path)).toContain("$[\"odd key\"][\"\\\"\"]")
  })

  it("records invalid UTF-8 positions and carries on", () => {
    const data = Uint8Array.from([...enc("[\"a"), 0xc3, 0x28, ...enc("\", \""), 0xff, ...enc("\", \"ok é\", \""), 0xe2, 0x82, ...enc("\"]")])
    for (let readBytes = 1; readBytes <= 5; readBytes++) {
      const m = run(data, { readBytes })
      expect(m.validUtf8).toBe(false)
      expect(m.anomalies.invalidUtf8).toEqual({ count: 3, items: [3, 9, 23] })
      expect(m.counts.string).toBe(4)
    }
  })

  it("switches to a heavy-hitters sketch past the exact key limit, keeping lower bounds", () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 40 }).map((k) => (k < 20 ? "hot" + (k % 3) : "k" + k)), { maxLength: 300 }), (keys) => {
      const text = `[${keys.map((k) => `{"${k}": 0}`).join(",")}]`
      const m = run(enc(text), { exactKeyLimit: 5, sketchCapacity: 4, topKeys: 100 })
      const truth = new Map<string, number>()
      for (const k of keys) truth.set(k, (truth.get(k) ?? 0) + 1)
      expect(m.keys.total).toBe(keys.length)
      expect(m.keys.exact).toBe(truth.size <= 5)
      if (m.keys.exact) expect(m.keys.distinct).toBe(truth.size)
      else expect(m.keys.distinct).toBeLessThanOrEqual(truth.size)
      expect(m.keys.top.length).toBeLessThanOrEqual(m.keys.exact ? 5 : 4)
      for (const { key, count } of m.keys.top) {
        expect(count).toBeLessThanOrEqual(truth.get(key)!)
        expect(count).toBeGreaterThanOrEqual(truth.get(key)! - m.keys.maxUndercount)
      }
      // A key the sketch dropped was seen at most maxUndercount times.
      const kept = new Set(m.keys.top.map((t) => t.key))
      for (const [k, c] of truth) if (!kept.has(k)) expect(c).toBeLessThanOrEqual(m.keys.maxUndercount)
    }), { numRuns: 200 })
  })

  it("bounds key paths and duplicate tracking by their budgets", () => {
    const text = `{${Array.from({ length: 50 }, (_, i) => `"k${i}": {"k${i}": 1}`).join(",")}, "k0": 2}`
    const m = run(enc(text), { pathLimit: 10, duplicateKeyBudget: 20 })
    expect(m.paths).toMatchObject({ distinct: 10, exact: false })
    expect(m.anomalies.duplicateKeys.complete).toBe(false)
    expect(m.anomalies.duplicateKeys.count).toBe(1)
  })

  it("writes the sidecar index of top-level elements for NDJSON and arrays", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "streamsweep-"))
    const file = path.join(dir, "a.ndjson")
    fs.writeFileSync(file, "{\"a\":1}\n\n  [2, 3]\n\"x\"\n")
    const m = await Effect.runPromise(inspectFile(file, { format: "ndjson", indexPath: path.join(dir, "a.idx") }))
    expect(m).toMatchObject({ format: "ndjson", topLevelElements: 3, index: path.join(dir, "a.idx") })
    expect(fs.readFileSync(path.join(dir, "a.idx"), "utf8")).toBe("0 7\n11 17\n18 21\n")
    const arr = path.join(dir, "b.json")
    fs.writeFileSync(arr, "[ {\"a\":1}, 2 ]")
    await Effect.runPromise(inspectFile(arr, { indexPath: path.join(dir, "b.idx") }))
    expect(fs.readFileSync(path.join(dir, "b.idx"), "utf8")).toBe("2 9\n11 12\n")
    const bad = path.join(dir, "c.json")
    fs.writeFileSync(bad, "[1, 2")
    const e = await Effect.runPromise(Effect.flip(inspectFile(bad, { indexPath: path.join(dir, "c.idx") })))
    expect(e).toMatchObject({ _tag: "JsonSyntaxError", reason: "UnexpectedEnd" })
    expect(fs.readdirSync(dir).sort()).toEqual(["a.idx", "a.ndjson", "b.idx", "b.json", "c.json"])
  })

  it("fails with IoError when the index cannot be written, and with a usage error for bad budgets", () => {
    const io = Effect.runSync(Effect.flip(inspect(ChunkInput.fromBytes(enc("1")), { indexPath: "/nonexistent-dir/x.idx" })))
    expect(io).toMatchObject({ _tag: "IoError", exitCode: 4 })
    const usage = Effect.runSync(Effect.flip(inspect(ChunkInput.fromBytes(enc("1")), { sketchCapacity: 0 })))
    expect(usage).toMatchObject({ _tag: "StreamSweepUsageError", reason: "Option", exitCode: 2 })
  })

  it("accepts format document: one value, which is the one element", () => {
    expect(run(enc(" {\"a\": [1]} "), { format: "document" })).toMatchObject({ format: "document", topLevelElements: 1, maxDepth: 2 })
    expect(Effect.runSync(Effect.flip(inspect(ChunkInput.fromBytes(enc("1 2")), { format: "document" })))).toMatchObject({ reason: "TrailingData" })
  })

  it("formats a table", () => {
    const text = formatMetadata(run(enc(doc), { deepThreshold: 4 }))
    expect(text).toContain("top-level elements  3")
    expect(text).toMatch(/\$\[\]\.user\.name +2/)
    expect(text).toContain("duplicate keys")
  })
})
