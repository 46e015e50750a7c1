import { Effect } from "effect"
import { execFileSync, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { pathToFileURL } from "node:url"
import { describe, expect, it } from "vitest"
import { AUDIT_VERSION, formatSummary, makeTranslator, makeWriter, readLogs, renderReport, summarize } from "../src/index.js"
import { durations, syntheticRun, tempDir } from "./helpers.js"

/** Writes a log with two runs (anomalies at chunks 40 and 77 of the first), a failure, backup and verify outcomes. */
const writeLog = (dir: string, input = "/data/in.bin") => {
  const log = nodePath.join(dir, "audit.jsonl")
  const writer = makeWriter(log)
  const translate = makeTranslator({ operation: "backup", strategy: "native" }, writer.write)
  for (const e of syntheticRun("run-one-aaaa", 120, 1_000_000, durations([40, 77]))) translate(e.type === "run_start" ? { ...e, input } : e)
  const second = syntheticRun("run-two-bbbb", 30, 1_000_000, () => 5, Date.parse("2026-01-02T00:00:00Z"))
  second[second.length - 1] = { ...second[second.length - 1], ok: false, error: "chunk 29: authentication failed" } as never
  for (const e of second) translate(e)
  const at = new Date(0).toISOString()
  writer.write({ v: AUDIT_VERSION, at, type: "backup", operation: "create", source: "/data/in.bin", generation: 1, ok: true, bytes: 120_000_000, durationMs: 1200, error: null })
  writer.write({ v: AUDIT_VERSION, at, type: "verify", source: "/data/in.bin", generation: 1, ok: false, deep: false, bytes: 1, durationMs: 5, damagedChunks: [7], damage: ["chunk 7 (bytes 10..20)"] })
  writer.close()
  return log
}

describe("summary", () => {
  it("totals runs, throughput percentiles, anomalies and outcomes", async () => {
    const dir = tempDir()
    const log = writeLog(dir)
    fs.appendFileSync(log, "not json\n{\"v\":1,\"type\":\"nope\"}\n")
    const contents = await Effect.runPromise(readLogs([log]))
    expect(contents.skippedCount).toBe(2)
    expect(contents.skipped).toEqual([`${log}:${contents.events.length + 1}`, `${log}:${contents.events.length + 2}`])
    const s = summarize(contents)
    expect(s.runs).toEqual({ total: 2, ok: 1, failed: 1, unfinished: 0, resumed: 0 })
    expect(s.byOperation).toEqual([{ operation: "backup", runs: 2, bytes: 150_000_000, durationMs: s.durationMs }])
    expect(s.chunkThroughput.samples).toBe(150)
    // 1 MB in 5 ms = 200 MB/s; in 10.0..10.4 ms = 100..96.2 MB/s; in 80 ms = 12.5 MB/s. The 75th of 150 sorted samples is 1 MB / 10.1 ms.
    expect(s.chunkThroughput.min).toBe(12.5)
    expect(s.chunkThroughput.max).toBe(200)
    expect(s.chunkThroughput.p50).toBe(99)
    expect(s.anomalies.map((a) => a.chunk)).toEqual([40, 77])
    expect(s.failures.map((f) => f.type)).toEqual(["run_complete"])
    expect(s.backups).toEqual({ ok: 1, failed: 0 })
    expect(s.verifies).toEqual({ ok: 0, damaged: 1, damagedChunks: 1 })
    const text = formatSummary(s)
    expect(text).toMatch(/^runs\s+ok\s+failed/m)
    expect(text).toMatch(/chunk MB\/s\s+samples\s+min\s+p50\s+p90\s+p99\s+max/)
    expect(text).toMatch(/slow\s+run-one-\s+40\s+12\.5/)
    expect(text).toContain("skipped 2 line(s)")
  })

  it("a file with no valid event is not an audit log (exit code 3); a missing file is an I/O error", async () => {
    const dir = tempDir()
    const p = nodePath.join(dir, "x.jsonl")
    fs.writeFileSync(p, "hello\nworld\n")
    const err = await Effect.runPromise(Effect.flip(readLogs([p])))
    expect(err._tag).toBe("AuditLogInvalid")
    expect((err as { exitCode: number }).exitCode).toBe(3)
    const missing = await Effect.runPromise(Effect.flip(readLogs([nodePath.join(dir, "none")])))
    expect((missing as { exitCode: number }).exitCode).toBe(4)
  })
})

const chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => fs.existsSync(p))
const chromiumArgs = (profile: string) => [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", `--user-data-dir=${profile}`
]

describe("HTML report", () => {
  it("is self-contained, escapes log text and marks every anomaly", async () => {
    const dir = tempDir()
    const log = writeLog(dir, "/data/<script>alert(1)</script>.bin")
    const contents = await Effect.runPromise(readLogs([log]))
    const html = renderReport(contents, summarize(contents))
    expect(html).not.toContain("<script")
    expect(html).toContain("&lt;script&gt;")
    expect(html).not.toMatch(/(src|href)=["']?(https?:|\/\/)/)
    expect(html.match(/<circle class="anomaly"/g)?.length).toBe(2)
    expect(html.match(/<svg /g)?.length).toBe(2)
  })

  it("renders in headless chromium: the screenshot is non-trivial and the DOM holds the chart", async () => {
    // CI installs Debian's `chromium` package (.ci/run); without it this test must fail, not skip.
    expect(chromium, "Debian's chromium is required: apt-get install -y chromium").toBeDefined()
    const dir = tempDir()
    const log = writeLog(dir)
    const contents = await Effect.runPromise(readLogs([log]))
    const page = nodePath.join(dir, "report.html")
    fs.writeFileSync(page, renderReport(contents, summarize(contents)))
    const png = nodePath.join(dir, "report.png")
    const shot = spawnSync(chromium!, [...chromiumArgs(nodePath.join(dir, "profile")), "--window-size=1000,1400", `--screenshot=${png}`, pathToFileURL(page).href], { encoding: "utf8", timeout: 60_000 })
    expect(fs.existsSync(png), shot.stderr).toBe(true)
    const bytes = fs.readFileSync(png)
    expect(bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))).toBe(true)
    // PNG IHDR: width and height at bytes 16..23.
    expect([bytes.readUInt32BE(16), bytes.readUInt32BE(20)]).toEqual([1000, 1400])
    // A blank page compresses to a few KB; text, tables and two charts do not.
    expect(bytes.length).toBeGreaterThan(20_000)
    const dom = execFileSync(chromium!, [...chromiumArgs(nodePath.join(dir, "profile2")), "--dump-dom", pathToFileURL(page).href], { encoding: "utf8", timeout: 60_000, stdio: ["ignore", "pipe", "ignore"] })
    expect(dom.match(/<circle class="anomaly"/g)?.length).toBe(2)
    expect(dom).toContain("<polyline class=\"series\"")
    fs.copyFileSync(png, nodePath.join(process.env.CAGE_REPORT_SCREENSHOT_DIR ?? dir, "audit-report.png"))
  })
})
