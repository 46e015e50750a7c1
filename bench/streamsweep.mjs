// Benchmark of @cage/streamsweep against JSON.parse and @streamparser/json, in the same run
// on the same bytes, plus the peak RSS of validating and planning a 1 GB file in a child
// process.
// Usage: pnpm --filter @cage/streamsweep build && node bench/streamsweep.mjs [--size-mb 256] [--rss-mb 1024] [--reps 5]
// Prints a table and writes bench/out/streamsweep.json. Inputs are generated under
// /tmp/cage-bench/streamsweep-<pid> and deleted afterwards.
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { CAGE, interleaved, numberOption, table } from "./lib.mjs"

const here = path.dirname(fileURLToPath(import.meta.url))
const pkg = path.join(here, "../packages/streamsweep")
const args = process.argv.slice(2)
const opt = numberOption
const MB = 1e6
const MiB = 1 << 20

const load = async () => ({
  ss: await import(path.join(pkg, "dist/index.js")),
  core: await import(path.join(pkg, "node_modules/@cage/core/dist/index.js")),
  Effect: (await import(path.join(pkg, "node_modules/effect/dist/index.js"))).Effect
})

// ---- worker: one operation over a file in a child process; reports wall time and peak RSS ----
// `validator` uses the dependency-free entry (@cage/streamsweep/validator) with plain fs reads;
// `validate` and `plan` the Effect API (which loads effect and @cage/core); `baseline` only
// loads what `validate` loads, to show what the modules cost before any byte is read.
if (args[0] === "--worker") {
  const [, op, file] = args
  let bytes = 0
  const t0 = performance.now()
  if (op === "validator") {
    const { Validator } = await import(path.join(pkg, "dist/Validator.js"))
    const v = new Validator()
    const fd = fs.openSync(file, "r")
    const buf = new Uint8Array(MiB)
    for (let n; (n = fs.readSync(fd, buf, 0, MiB, null)) > 0;) if (!v.push(buf, 0, n)) throw v.error
    if (!v.end()) throw v.error
    fs.closeSync(fd)
    bytes = v.bytes
  } else {
    const { ss, Effect } = await load()
    if (op === "validate") bytes = (await Effect.runPromise(ss.validateFile(file))).bytes
    if (op === "plan") bytes = (await Effect.runPromise(ss.planFile(file, { targetBytes: 64 * MiB, onChunk: () => {} }))).bytes
  }
  const ms = performance.now() - t0
  process.stdout.write(JSON.stringify({ op, ms, bytes }))
  process.exit(0)
}

// ---- input: real-shaped JSON (nested objects, long strings with escapes and unicode, all number forms) ----
let seed = 0x5eed
const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32)
const pick = (a) => a[Math.floor(rnd() * a.length)]
const words = ["lorem", "ipsum", "dolor", "sit", "amet", "données", "naïve", "Ünïcödé", "日本語のテキスト", "emoji 😀🎉", "Ελληνικά", "русский", "tab\there", "quote \"q\"", "back\\slash", "line\nbreak", "ctrl\u0001", "path/to/x", "é\u2028x"]
const text = (n) => {
  let s = ""
  while (s.length < n) s += pick(words) + " "
  return s
}
const number = () => pick([
  () => Math.floor(rnd() * 1e6),
  () => -Math.floor(rnd() * 1e9),
  () => Math.round(rnd() * 1e4) / 100,
  () => -rnd() * 1e-7,
  () => rnd() * 1e300,
  () => 0,
  () => Number.MAX_SAFE_INTEGER
])()
const record = (i) => ({
  id: i,
  uuid: `${(rnd() * 2 ** 32 >>> 0).toString(16)}-${(rnd() * 2 ** 32 >>> 0).toString(16)}`,
  user: { name: text(12), email: `user${i}@example.com`, roles: [pick(["admin", "dev", "ops"]), pick(["r", "w"])], score: number(), active: rnd() < 0.5, manager: rnd() < 0.3 ? null : { id: Math.floor(rnd() * i) } },
  body: text(100 + Math.floor(rnd() * 1500)),
  metrics: { count: number(), ratio: number(), series: Array.from({ length: 4 + Math.floor(rnd() * 8) }, number), nested: { a: { b: { c: { d: [number(), text(10), rnd() < 0.5] } } } } },
  history: Array.from({ length: Math.floor(rnd() * 5) }, (_, k) => ({ at: 1_700_000_000 + k * 3600, event: pick(["create", "update", "delete"]), note: text(20) }))
})

const generate = (file, bytes) => {
  const fd = fs.openSync(file, "w")
  let size = 0
  let pending = "[\n"
  for (let i = 0; size + pending.length < bytes; i++) {
    pending += (i ? ",\n" : "") + JSON.stringify(record(i), null, i % 4 === 0 ? 2 : undefined)
    if (pending.length > 4 * MiB) {
      size += fs.writeSync(fd, pending)
      pending = ""
    }
  }
  size += fs.writeSync(fd, pending + "\n]\n")
  fs.closeSync(fd)
  return size
}

// An array of small compact objects (about 90 bytes each: integers, a fraction, short
// strings, true/false, null, a short array), `bytes` long.
const generateSmall = (file, bytes) => {
  const fd = fs.openSync(file, "w")
  let size = 0
  let pending = ["["]
  for (let i = 0; size < bytes; i++) {
    const item = (i ? "," : "") + JSON.stringify({ id: i, name: `user-${i}`, ok: i % 3 === 0, score: (i % 1000) / 8, tags: ["a", "bc"], n: null })
    pending.push(item)
    size += item.length
    if (pending.length >= 10000) {
      fs.writeSync(fd, pending.join(""))
      pending = []
    }
  }
  fs.writeSync(fd, pending.join("") + "]\n")
  fs.closeSync(fd)
  return fs.statSync(file).size
}

// A larger array made of `copies` copies of the items of `file` (for the RSS runs).
const replicate = (file, out, copies) => {
  const body = fs.readFileSync(file)
  const open = body.indexOf(0x5b) + 1
  const close = body.lastIndexOf(0x5d)
  const items = body.subarray(open, close)
  const fd = fs.openSync(out, "w")
  fs.writeSync(fd, "[")
  for (let c = 0; c < copies; c++) {
    if (c) fs.writeSync(fd, ",")
    fs.writeSync(fd, items)
  }
  fs.writeSync(fd, "]\n")
  fs.closeSync(fd)
  return fs.statSync(out).size
}

const best = async (reps, fn) => {
  let min = Infinity
  for (let r = 0; r < reps; r++) {
    globalThis.gc?.()
    const t0 = performance.now()
    await fn()
    min = Math.min(min, performance.now() - t0)
  }
  return min
}

const mib = (r) => Number((r.maxRssKiB / 1024).toFixed(1))
// Peak RSS through /usr/bin/time: a child forked straight from this (large) process would
// inherit its RSS high-water mark in getrusage, so the worker's own maxRSS is not used.
const child = (op, file) => {
  const r = spawnSync("/usr/bin/time", ["-f", "%M", process.execPath, fileURLToPath(import.meta.url), "--worker", op, file], { encoding: "utf8", maxBuffer: 1 << 20 })
  if (r.status !== 0) throw new Error(`worker ${op} failed: ${r.stderr}`)
  return { ...JSON.parse(r.stdout), maxRssKiB: Number(r.stderr.trim().split("\n").at(-1)) }
}

const main = async () => {
  const { ss, core, Effect } = await load()
  const { JSONParser } = await import(path.join(pkg, "node_modules/@streamparser/json/dist/mjs/index.js"))
  const sizeMb = opt("--size-mb", 256)
  const rssMb = opt("--rss-mb", 1024)
  const reps = opt("--reps", 5)
  const dir = path.join(process.env.CAGE_BENCH_DIR ?? "/tmp/cage-bench", `streamsweep-${process.pid}`)
  fs.mkdirSync(dir, { recursive: true })
  try {
    const file = path.join(dir, "real.json")
    process.stderr.write(`generating ${sizeMb} MB of real-shaped JSON...\n`)
    const bytes = generate(file, sizeMb * MB)
    const buf = fs.readFileSync(file)
    const mbps = (n, ms) => n / MB / (ms / 1000)

    // Our validator over the in-memory bytes, fed in 1 MiB pieces (no I/O: same work as JSON.parse).
    const validateMem = () => {
      const v = new ss.Validator()
      for (let i = 0; i < buf.length; i += MiB) if (!v.push(buf, i, Math.min(buf.length, i + MiB))) throw v.error
      if (!v.end()) throw v.error
    }
    const planMem = () => Effect.runPromise(ss.plan(core.ChunkInput.fromBytes(buf), { targetBytes: 64 * MiB, onChunk: () => {} }))
    // Interleaved (validate, plan, JSON.parse per round), best of `reps`: load on a shared
    // machine then hits all three alike.
    process.stderr.write("validate / plan / JSON.parse...\n")
    let tValidate = Infinity
    let tPlan = Infinity
    let tParse = Infinity
    for (let r = 0; r < reps; r++) {
      tValidate = Math.min(tValidate, await best(1, validateMem))
      tPlan = Math.min(tPlan, await best(1, planMem))
      tParse = Math.min(tParse, await best(1, () => void JSON.parse(buf.toString())))
    }
    const tValidateFile = await best(1, () => Effect.runPromise(ss.validateFile(file)))
    // For information: the event-driven scans (paths, keys, statistics) over the same bytes.
    const tCheckCuts = await best(1, () => Effect.runPromise(ss.checkCuts(core.ChunkInput.fromBytes(buf), [1, bytes >> 1, bytes - 1])))
    const tInspect = await best(1, () => Effect.runPromise(ss.inspect(core.ChunkInput.fromBytes(buf))))

    // @streamparser/json is far slower: measure it (and us, and JSON.parse) on a prefix of whole elements.
    const sampleTarget = opt("--sample-mb", 16) * MB
    const sp = await Effect.runPromise(ss.plan(core.ChunkInput.fromBytes(buf), { targetBytes: sampleTarget }))
    const first = sp.chunks[0]
    const sample = Buffer.concat([Buffer.from("["), buf.subarray(first.start, first.end), Buffer.from("]")])
    process.stderr.write(`@streamparser/json on ${(sample.length / MB).toFixed(1)} MB...\n`)
    const tSampleOurs = await best(reps, () => {
      const v = new ss.Validator()
      for (let i = 0; i < sample.length; i += MiB) v.push(sample, i, Math.min(sample.length, i + MiB))
      if (!v.end()) throw v.error
    })
    const tSampleStream = await best(1, () => {
      const p = new JSONParser({ paths: ["$.*"], keepStack: false })
      p.onValue = () => {}
      for (let i = 0; i < sample.length; i += MiB) p.write(sample.subarray(i, Math.min(sample.length, i + MiB)))
      if (!p.isEnded) p.end()
    })
    const tSampleParse = await best(reps, () => void JSON.parse(sample.toString()))

    // Peak RSS of a 1 GB file in a child process (validate, then plan), with Node's own baseline.
    const big = path.join(dir, "big.json")
    process.stderr.write(`peak RSS on ${rssMb} MB...\n`)
    const bigBytes = replicate(file, big, Math.max(1, Math.ceil((rssMb * MB) / bytes)))
    const rssBaseline = child("baseline", big)
    const rssValidator = child("validator", big)
    const rssValidate = child("validate", big)
    const rssPlan = child("plan", big)
    // Flatness: the same run on the 256 MB input.
    const rssSmall = child("validator", file)

    const rows = [
      ["validate (in memory)", bytes, tValidate, mbps(bytes, tValidate)],
      ["plan, 64 MiB target (in memory)", bytes, tPlan, mbps(bytes, tPlan)],
      ["validateFile (with reads)", bytes, tValidateFile, mbps(bytes, tValidateFile)],
      ["JSON.parse(buffer.toString())", bytes, tParse, mbps(bytes, tParse)],
      ["checkCuts, 3 cuts (in memory)", bytes, tCheckCuts, mbps(bytes, tCheckCuts)],
      ["inspect (in memory)", bytes, tInspect, mbps(bytes, tInspect)],
      ["sample: validate", sample.length, tSampleOurs, mbps(sample.length, tSampleOurs)],
      ["sample: @streamparser/json 0.0.26", sample.length, tSampleStream, mbps(sample.length, tSampleStream)],
      ["sample: JSON.parse(buffer.toString())", sample.length, tSampleParse, mbps(sample.length, tSampleParse)],
      [`child: Validator (sync entry) ${(bigBytes / MB).toFixed(0)} MB`, bigBytes, rssValidator.ms, mbps(bigBytes, rssValidator.ms)],
      [`child: validateFile ${(bigBytes / MB).toFixed(0)} MB`, bigBytes, rssValidate.ms, mbps(bigBytes, rssValidate.ms)],
      [`child: planFile ${(bigBytes / MB).toFixed(0)} MB`, bigBytes, rssPlan.ms, mbps(bigBytes, rssPlan.ms)]
    ]
    const ratios = {
      validateVsJsonParse: tParse / tValidate,
      planVsJsonParse: tParse / tPlan,
      planVsValidate: tValidate / tPlan,
      validateVsStreamparser: tSampleStream / tSampleOurs
    }
    const result = {
      node: process.version,
      inputBytes: bytes,
      sampleBytes: sample.length,
      rows: rows.map(([what, n, ms, rate]) => ({ what, bytes: n, ms: Math.round(ms), mbPerS: Math.round(rate) })),
      ratios: Object.fromEntries(Object.entries(ratios).map(([k, v]) => [k, Number(v.toFixed(2))])),
      peakRss: {
        bytes: bigBytes,
        validatorMiB: mib(rssValidator),
        validatorSmallInputMiB: mib(rssSmall),
        validateFileMiB: mib(rssValidate),
        planFileMiB: mib(rssPlan),
        effectApiBaselineMiB: mib(rssBaseline)
      },
      targets: {
        validateAtLeast2xJsonParse: ratios.validateVsJsonParse >= 2,
        validateAtLeast10xStreamparser: ratios.validateVsStreamparser >= 10,
        peakRssUnder64MiB: mib(rssValidator) < 64,
        peakRssFlat: mib(rssValidator) - mib(rssSmall) < 8 && mib(rssValidate) - mib(rssBaseline) < 16 && mib(rssPlan) - mib(rssBaseline) < 16,
        planAtValidateSpeed: ratios.planVsValidate >= 0.9
      }
    }
    console.log("| what | MB | ms | MB/s |")
    console.log("|---|---:|---:|---:|")
    for (const r of result.rows) console.log(`| ${r.what} | ${(r.bytes / MB).toFixed(1)} | ${r.ms} | ${r.mbPerS} |`)
    console.log(`\nvalidate / JSON.parse: ${result.ratios.validateVsJsonParse}x; plan / JSON.parse: ${result.ratios.planVsJsonParse}x; plan / validate: ${result.ratios.planVsValidate}x; validate / @streamparser/json: ${result.ratios.validateVsStreamparser}x`)
    const r = result.peakRss
    console.log(`peak RSS for ${(bigBytes / MB).toFixed(0)} MB: Validator ${r.validatorMiB} MiB (${r.validatorSmallInputMiB} MiB for ${(bytes / MB).toFixed(0)} MB); validateFile ${r.validateFileMiB} MiB, planFile ${r.planFileMiB} MiB, of which loading effect + @cage/core ${r.effectApiBaselineMiB} MiB`)
    console.log(`targets: ${JSON.stringify(result.targets)}`)

    // Issue 13's row: a 256 MB array of small objects (compact, as logs and exports write
    // them), the scanner's worst case (a token every few bytes). In memory: the validator
    // against a plain JS byte loop over the same bytes (the ceiling of any byte-at-a-time JS
    // scanner) and JSON.parse, interleaved, medians of `reps`. Through the programs:
    // `cage json validate FILE` against `jq empty FILE`, interleaved medians.
    const small = path.join(dir, "small.json")
    const smallBytes = generateSmall(small, opt("--small-mb", 256) * MB)
    const sbuf = fs.readFileSync(small)
    const su8 = new Uint8Array(sbuf.buffer, sbuf.byteOffset, sbuf.length)
    const times = { validate: [], loop: [], parse: [] }
    const byteLoop = () => {
      let quotes = 0
      for (let i = 0; i < su8.length; i++) if (su8[i] === 0x22) quotes++
      return quotes
    }
    const validateSmall = () => {
      const v = new ss.Validator()
      for (let i = 0; i < su8.length; i += MiB) if (!v.push(su8, i, Math.min(su8.length, i + MiB))) throw v.error
      if (!v.end()) throw v.error
    }
    for (let r = 0; r < reps; r++) {
      for (const [k, fn] of [["validate", validateSmall], ["loop", byteLoop], ["parse", () => void JSON.parse(sbuf.toString())]]) {
        globalThis.gc?.()
        const t0 = performance.now()
        fn()
        times[k].push(performance.now() - t0)
      }
    }
    const med = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1]
    const [mV, mL, mP] = [med(times.validate), med(times.loop), med(times.parse)]
    const hasJq = spawnSync("jq", ["--version"]).status === 0
    const progs = interleaved({
      "cage json validate": [["node", CAGE, "json", "validate", small, "-q"], {}],
      ...(hasJq ? { "jq empty": [["jq", "empty", small], {}] } : {})
    }, reps)
    const cageS = progs["cage json validate"].seconds
    console.log(`\n${(smallBytes / MB).toFixed(0)} MB array of small objects, medians of ${reps} interleaved runs`)
    console.log(table([
      ["run", "MB/s", "speed ratio"],
      ["validate (in memory)", mbps(smallBytes, mV).toFixed(0), "-"],
      ["plain JS byte loop (in memory)", mbps(smallBytes, mL).toFixed(0), `validate / it: ${(mL / mV).toFixed(2)}x`],
      ["JSON.parse(buffer.toString())", mbps(smallBytes, mP).toFixed(0), `validate / it: ${(mP / mV).toFixed(2)}x`],
      ["cage json validate FILE", (smallBytes / MB / cageS).toFixed(0), "-"],
      ...(hasJq ? [["jq empty FILE", (smallBytes / MB / progs["jq empty"].seconds).toFixed(0), `cage json validate / it: ${(progs["jq empty"].seconds / cageS).toFixed(2)}x`]] : [["jq empty FILE", "jq not installed", "-"]])
    ]))
    console.log(`target: validate at least 450 MB/s in memory: ${mbps(smallBytes, mV) >= 450 ? "met" : "not met"}`)
    result.smallObjects = {
      bytes: smallBytes,
      mbPerS: { validate: Math.round(mbps(smallBytes, mV)), byteLoop: Math.round(mbps(smallBytes, mL)), jsonParse: Math.round(mbps(smallBytes, mP)), cageJsonValidate: Math.round(smallBytes / MB / cageS), ...(hasJq ? { jqEmpty: Math.round(smallBytes / MB / progs["jq empty"].seconds) } : {}) },
      cagePeakRssMiB: Number(progs["cage json validate"].rssMiB.toFixed(1))
    }
    fs.mkdirSync(path.join(here, "out"), { recursive: true })
    fs.writeFileSync(path.join(here, "out/streamsweep.json"), JSON.stringify(result, null, 2) + "\n")
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

await main()
