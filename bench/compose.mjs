// Processors that compose (issue 12): `cage encrypt` with
// processors = ["@acme/cage-processor-gzip", "agcm-encrypt"] (two stages: gzip, then AGCM
// cutting the gzip stream into its chunks) against `gzip -c IN | age -e -r R > OUT` and
// against plain `cage encrypt`, on the same text-like file, interleaved rounds, medians.
// Peak RSS of the composed run is measured again at a quarter of the size: flat means the
// same at both sizes.
// Then kill -9 of the composed run once 25%, 50% and 75% of the input was read, the same
// command again, and a check that the gzip stream inside is the uninterrupted run's (the
// AGCM salt differs per file, so the ciphertexts do not compare; what was sealed does).
// Usage: node bench/compose.mjs [--reps 3] [--size-mib 1024] [--no-kill]
// Files under /tmp/cage-bench/compose-<pid>, deleted afterwards; JSON in bench/out/compose.json.
import { execFileSync, spawn } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { CAGE, ensureWork, interleaved, numberOption, ROOT, table, timed, WORK, writeResult } from "./lib.mjs"

const reps = numberOption("--reps", 3)
const sizeMiB = numberOption("--size-mib", 1024)
ensureWork()
const dir = path.join(WORK, `compose-${process.pid}`)
fs.mkdirSync(dir, { recursive: true })

/** A SQL-dump-like text file of `bytes` bytes (compresses about 5:1 with gzip -6). */
const textFile = (name, bytes) => {
  const file = path.join(WORK, name)
  if (fs.existsSync(file) && fs.statSync(file).size === bytes) return file
  const words = ["alpha", "beta", "gamma", "delta", "epsilon", "select", "insert", "update", "values", "null", "true", "false"]
  const fd = fs.openSync(file, "w")
  let x = 0x2545f491
  let line = 0
  for (let left = bytes; left > 0;) {
    const parts = []
    for (let n = 0; n < 1 << 22;) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5
      const s = `INSERT INTO events VALUES (${line++}, '${words[(x >>> 0) % 12]}', ${(x >>> 8) % 100000}, '2026-12-${String((x >>> 4) % 28 + 1).padStart(2, "0")}');\n`
      parts.push(s)
      n += s.length
    }
    const block = Buffer.from(parts.join(""))
    const n = Math.min(left, block.length)
    fs.writeSync(fd, block, 0, n)
    left -= n
  }
  fs.closeSync(fd)
  return file
}

const sha = (file) => {
  const h = createHash("sha256")
  const fd = fs.openSync(file, "r")
  const b = Buffer.alloc(1 << 24)
  for (let n; (n = fs.readSync(fd, b)) > 0;) h.update(b.subarray(0, n))
  fs.closeSync(fd)
  return h.digest("hex")
}

/** Bytes `pid` read through system calls so far (rchar of /proc/PID/io), or -1 once it is gone. */
const rchar = (pid) => {
  try {
    return Number(/^rchar:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/io`, "utf8"))[1])
  } catch {
    return -1
  }
}

/** SHA-256 of the plaintext sealed in an AGCM file (here: the gzip stream), through the library's stream decryptor. */
const sealedSha = async (file, keyFile) => {
  const { makeDecryptor } = await import(path.join(ROOT, "packages/agcm/dist/index.js"))
  const text = fs.readFileSync(keyFile, "utf8")
  const key = Buffer.from(/cage-key-1:(\S+)/.exec(text)[1], "base64url")
  const d = makeDecryptor({ key })
  const h = createHash("sha256")
  const fd = fs.openSync(file, "r")
  const b = Buffer.alloc(1 << 22)
  try {
    for (let n; (n = fs.readSync(fd, b)) > 0;) for (const out of await d.write(b.subarray(0, n))) h.update(out)
    for (const out of await d.end()) h.update(out)
  } finally {
    fs.closeSync(fd)
    await d.close()
  }
  return h.digest("hex")
}

try {
  const bytes = sizeMiB * 1048576
  const input = textFile(`compose-${sizeMiB}.sql`, bytes)
  const small = textFile(`compose-${sizeMiB / 4}.sql`, bytes / 4)
  const o = (name) => path.join(dir, name)
  // A project using the repository's third-party example plugin, as a user installs it.
  fs.mkdirSync(o("node_modules/@acme"), { recursive: true })
  fs.symlinkSync(path.join(ROOT, "examples/cage-processor-gzip"), o("node_modules/@acme/cage-processor-gzip"))
  fs.writeFileSync(o("cage.toml"), 'plugins = ["@acme/cage-processor-gzip", "@acme/cage-processor-gzip/gunzip"]\n[pipelines.encrypt]\nprocessors = ["@acme/cage-processor-gzip", "agcm-encrypt"]\n[pipelines.decrypt]\nprocessors = ["agcm-decrypt", "@acme/cage-processor-gzip/gunzip"]\n')
  const key = o("k.key")
  execFileSync("node", [CAGE, "keygen", "-q", "-o", key])
  const identity = o("id.txt")
  execFileSync("age-keygen", ["-o", identity], { stdio: "ignore" })
  const recipient = execFileSync("age-keygen", ["-y", identity], { encoding: "utf8" }).trim()
  const inProject = (args) => ["bash", "-c", `cd ${dir} && exec node ${CAGE} ${args}`]
  const composed = (file, out, flags = "") => [inProject(`encrypt -q ${flags} --key ${key} -o ${out} ${file}`), { remove: [out] }]
  const cases = {
    "cage encrypt gzip → agcm": composed(input, o("c.agcm")),
    "cage encrypt gzip → agcm --no-fsync": composed(input, o("c.agcm"), "--no-fsync"),
    "gzip -c | age -e": [["bash", "-c", `gzip -c ${input} | age -e -r ${recipient} > ${o("g.age")}`], { remove: [o("g.age")] }],
    "cage encrypt (agcm alone) --no-fsync": [["node", CAGE, "encrypt", "-q", "--no-fsync", "--key", key, "-o", o("p.agcm"), input], { remove: [o("p.agcm")] }]
  }
  const m = interleaved(cases, reps)
  // The outputs of one more run of each, kept: sizes and a round trip.
  for (const out of ["c.agcm", "g.age", "p.agcm"]) fs.rmSync(o(out), { force: true })
  execFileSync(cases["cage encrypt gzip → agcm"][0][0], cases["cage encrypt gzip → agcm"][0].slice(1))
  execFileSync("bash", ["-c", `gzip -c ${input} | age -e -r ${recipient} > ${o("g.age")}`])
  execFileSync("node", [CAGE, "encrypt", "-q", "--no-fsync", "--key", key, "-o", o("p.agcm"), input])
  execFileSync("bash", ["-c", `cd ${dir} && node ${CAGE} decrypt -q --no-fsync --key ${key} -o ${o("back.sql")} ${o("c.agcm")}`])
  const roundTrip = sha(o("back.sql")) === sha(input)
  fs.rmSync(o("back.sql"))
  const smallRun = timed(composed(small, o("s.agcm"))[0], { remove: [o("s.agcm")] })
  const s = (k) => m[k].seconds
  const rows = [["run", "median s", "MB/s", "peak RSS MiB"]]
  for (const k of Object.keys(cases)) rows.push([k, s(k).toFixed(2), (bytes / 1e6 / s(k)).toFixed(0), m[k].rssMiB.toFixed(0)])
  const sizes = [["output", "bytes"], ["gzip → agcm", fs.statSync(o("c.agcm")).size], ["gzip | age", fs.statSync(o("g.age")).size], ["agcm alone", fs.statSync(o("p.agcm")).size]]
  console.log(`${sizeMiB} MiB of SQL-like text, ${reps} interleaved rounds, medians`)
  console.log(table(rows))
  console.log(table(sizes))
  const speed = s("gzip -c | age -e") / s("cage encrypt gzip → agcm")
  console.log(`cage gzip → agcm (durable) is ${speed.toFixed(2)}x the speed of gzip -c | age -e`)
  console.log(`round trip through cage decrypt (agcm-decrypt → gunzip): ${roundTrip ? "same SHA-256" : "DIFFERENT"}`)
  console.log(`peak RSS of cage gzip → agcm: ${smallRun.rssMiB.toFixed(0)} MiB at ${sizeMiB / 4} MiB, ${m["cage encrypt gzip → agcm"].rssMiB.toFixed(0)} MiB at ${sizeMiB} MiB`)
  // kill -9 at three points, then the same command: the sealed gzip stream must be the uninterrupted run's.
  const kills = []
  if (!process.argv.includes("--no-kill")) {
    const reference = await sealedSha(o("c.agcm"), key)
    for (const share of [0.25, 0.5, 0.75]) {
      const out = o("k.agcm")
      const child = spawn("node", [CAGE, "encrypt", "-q", "--checkpoint-interval", "200", "--key", key, "-o", out, input], { cwd: dir, stdio: "ignore" })
      const closed = new Promise((r) => child.on("close", (code, signal) => r(signal ?? code)))
      while (child.exitCode === null && !fs.existsSync(`${out}.partial`)) await new Promise((r) => setTimeout(r, 5))
      const base = rchar(child.pid)
      while (child.exitCode === null && rchar(child.pid) - base < bytes * share) await new Promise((r) => setTimeout(r, 5))
      const landed = child.exitCode === null
      child.kill("SIGKILL")
      await closed
      const resumed = JSON.parse(execFileSync("node", [CAGE, "encrypt", "--json", "--key", key, "-o", out, input], { cwd: dir, encoding: "utf8" }))
      const same = (await sealedSha(out, key)) === reference
      execFileSync("node", [CAGE, "decrypt", "-q", "--no-fsync", "--key", key, "-o", o("k.sql"), out], { cwd: dir })
      const plainSame = sha(o("k.sql")) === sha(input)
      fs.rmSync(o("k.sql"))
      fs.rmSync(out)
      kills.push({ share, landedMidRun: landed, resumedFromChunk: resumed.resumedFrom, sealedStreamIdentical: same, decryptsToInput: plainSame })
    }
    console.log(table([["kill -9 at", "mid-run", "resumed at chunk", "sealed gzip stream", "decrypts to input"], ...kills.map((k) => [`${k.share * 100}%`, k.landedMidRun ? "yes" : "NO", k.resumedFromChunk, k.sealedStreamIdentical ? "identical" : "DIFFERENT", k.decryptsToInput ? "yes" : "NO"])]))
  }
  writeResult("compose", { sizeMiB, reps, medians: m, sizes: Object.fromEntries(sizes.slice(1)), speedVsGzipAge: speed, roundTrip, rssSmallMiB: smallRun.rssMiB, kills })
  if (!roundTrip || kills.some((k) => !k.landedMidRun || !k.sealedStreamIdentical || !k.decryptsToInput)) process.exitCode = 1
} finally {
  fs.rmSync(dir, { recursive: true, force: true })
}
