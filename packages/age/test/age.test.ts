/**
 * Both backends against each other and against the real age CLI: recipients, SSH keys,
 * passphrases through a real PTY, every strategy, boundary sizes around age's 64 KiB STREAM
 * chunk, tampering and truncation, and the error mapping.
 */
import { Telemetry, type TelemetryEvent } from "@cage/core"
import { Encrypter } from "age-encryption"
import fc from "fast-check"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { Readable } from "node:stream"
import { afterAll, describe, expect, it } from "vitest"
import { AgeError, decrypt, encrypt, findAge } from "../src/index.js"
import { liveStagingDirectories } from "../src/internal/staging.js"
import { ChunkInput, ChunkOutput, failureOf, keygen, requireAge, runExit, successOf, tempDir, digestOf } from "./helpers.js"

requireAge()
const dir = tempDir()
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
const key = keygen(dir)
const other = keygen(dir, "other")
const PASS = "tr0ub4dor & 3 horses"

const bytesOf = (n: number) => {
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i++) b[i] = (i * 131 + (i >> 8)) & 0xff
  return b
}
/** A passphrase file made with a low scrypt work factor (fast to decrypt in tests). */
const lowCostPassphraseFile = async (plain: Uint8Array) => {
  const e = new Encrypter()
  e.setPassphrase(PASS)
  e.setScryptWorkFactor(10)
  return Buffer.from(await e.encrypt(plain))
}
const stream = (b: Uint8Array) => ChunkInput.fromStream(Readable.from([Buffer.from(b)]))
let counter = 0
const fresh = (name: string) => nodePath.join(dir, `${counter++}-${name}`)

// age's STREAM chunk is 64 KiB of plaintext.
const CHUNK = 64 * 1024
const SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK - 1, 2 * CHUNK, 2 * CHUNK + 1]

describe("recipients, across backends and plain age", () => {
  it.for(SIZES)("%i bytes: CLI encrypt (stream) -> library decrypt -> same bytes", async (n) => {
    const plain = bytesOf(n)
    const enc = ChunkOutput.toMemory()
    successOf(await runExit(encrypt({ backend: "age", input: stream(plain), output: enc, recipients: [key.recipient], bufferBytes: 4096 + 3 })))
    const dec = ChunkOutput.toMemory()
    successOf(await runExit(decrypt({ backend: "age-lib", input: ChunkInput.fromBytes(enc.bytes()), output: dec, identityFiles: [key.identityFile], bufferBytes: 1000 })))
    expect(digestOf(dec.bytes())).toEqual(digestOf(plain))
  })

  it.for(SIZES)("%i bytes: library encrypt (armored) -> plain `age -d` and CLI decrypt", async (n) => {
    const plain = bytesOf(n)
    const enc = fresh("lib.age")
    successOf(await runExit(encrypt({ backend: "age-lib", input: ChunkInput.fromBytes(plain), output: ChunkOutput.toFile(enc), recipients: [key.recipient], armor: true })))
    expect(fs.readFileSync(enc, "latin1").startsWith("-----BEGIN AGE ENCRYPTED FILE-----\n")).toBe(true)
    expect(digestOf(execFileSync("age", ["-d", "-i", key.identityFile, enc], { maxBuffer: 1 << 24 }))).toEqual(digestOf(plain))
    const out = fresh("cli.out")
    const s = successOf(await runExit(Effect_flat(enc, (input) => decrypt({ backend: "age", input, output: ChunkOutput.toFile(out), identityFiles: [key.identityFile] }))))
    expect(digestOf(fs.readFileSync(out))).toEqual(digestOf(plain))
    expect(s.bytesOut).toBe(n)
  })

  it("file to file runs age directly on the files, recipient files and several recipients work", async () => {
    const plain = bytesOf(300_000)
    const inPath = fresh("plain")
    fs.writeFileSync(inPath, plain)
    const rfile = fresh("recipients.txt")
    fs.writeFileSync(rfile, `# team\n${other.recipient}\n`)
    const enc = fresh("enc.age")
    const seen: Array<number> = []
    const s = successOf(await runExit(Effect_flat(inPath, (input) =>
      encrypt({ backend: "age", input, output: ChunkOutput.toFile(enc), recipients: [key.recipient], recipientFiles: [rfile], onProgress: (b) => seen.push(b) }))))
    expect(s.strategy).toBe("direct")
    expect(s.bytesIn).toBe(plain.length)
    expect(seen.at(-1)).toBe(plain.length)
    expect(fs.existsSync(`${enc}.partial`)).toBe(false)
    for (const id of [key.identityFile, other.identityFile]) {
      expect(digestOf(execFileSync("age", ["-d", "-i", id, enc], { maxBuffer: 1 << 24 }))).toEqual(digestOf(plain))
      const out = ChunkOutput.toMemory()
      successOf(await runExit(Effect_flat(enc, (input) => decrypt({ backend: "age-lib", input, output: out, identityFiles: [id] }))))
      expect(digestOf(out.bytes())).toEqual(digestOf(plain))
    }
  })

  it("SSH keys work through the CLI and are refused clearly by the library", async () => {
    const sshKey = fresh("id_ed25519")
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", sshKey])
    const pub = fs.readFileSync(`${sshKey}.pub`, "utf8").trim()
    const plain = bytesOf(5000)
    const enc = ChunkOutput.toMemory()
    successOf(await runExit(encrypt({ backend: "age", input: ChunkInput.fromBytes(plain), output: enc, recipients: [pub] })))
    const out = ChunkOutput.toMemory()
    successOf(await runExit(decrypt({ backend: "age", input: ChunkInput.fromBytes(enc.bytes()), output: out, identityFiles: [sshKey] })))
    expect(digestOf(out.bytes())).toEqual(digestOf(plain))
    const e = failureOf(await runExit(encrypt({ backend: "age-lib", input: ChunkInput.fromBytes(plain), output: ChunkOutput.toMemory(), recipients: [pub] })))
    expect((e as AgeError).reason).toBe("Unsupported")
  })
})

describe("passphrases through a real pseudo-terminal", () => {
  it("CLI encrypt (file to file) -> library decrypt, and library encrypt -> CLI decrypt (stdin/stdout, named pipes)", async () => {
    const plain = bytesOf(CHUNK + 17)
    const inPath = fresh("plain")
    fs.writeFileSync(inPath, plain)
    const passFile = fresh("pass")
    fs.writeFileSync(passFile, `${PASS}\n`, { mode: 0o600 })
    const enc = fresh("p.age")
    const notes: Array<string> = []
    const s = successOf(await runExit(Effect_flat(inPath, (input) =>
      encrypt({ backend: "age", input, output: ChunkOutput.toFile(enc), passphraseFile: passFile, onVerbose: (m) => notes.push(m) }))))
    expect(s.strategy).toBe("direct")
    expect(notes.join("\n")).toContain("strategy direct")
    const out = ChunkOutput.toMemory()
    successOf(await runExit(Effect_flat(enc, (input) => decrypt({ backend: "age-lib", input, output: out, passphrase: Buffer.from(PASS) }))))
    expect(digestOf(out.bytes())).toEqual(digestOf(plain))

    const libEnc = ChunkOutput.toMemory()
    successOf(await runExit(encrypt({ backend: "age-lib", input: ChunkInput.fromBytes(plain), output: libEnc, passphrase: Buffer.from(PASS), armor: true })))
    const out2 = ChunkOutput.toMemory()
    const s2 = successOf(await runExit(decrypt({ backend: "age", input: stream(libEnc.bytes()), output: out2, passphraseFile: passFile, strategy: "auto" })))
    expect(s2.strategy).toBe("pipe")
    expect(digestOf(out2.bytes())).toEqual(digestOf(plain))
  })

  it.for(["pipe", "tempfile"] as const)("strategy %s streams stdin to stdout and leaves nothing behind", async (strategy) => {
    const staging = fresh("staging")
    fs.mkdirSync(staging)
    for (const n of [0, 1, CHUNK, 3 * CHUNK + 5]) {
      const plain = bytesOf(n)
      const enc = await lowCostPassphraseFile(plain)
      const out = ChunkOutput.toMemory()
      const s = successOf(await runExit(decrypt({ backend: "age", input: stream(enc), output: out, passphrase: Buffer.from(PASS), strategy, tempDirectory: staging })))
      expect(s.strategy).toBe(strategy)
      expect(digestOf(out.bytes())).toEqual(digestOf(plain))
      expect(fs.readdirSync(staging)).toEqual([])
    }
    // And on failure.
    const enc = await lowCostPassphraseFile(bytesOf(100))
    const e = failureOf(await runExit(decrypt({ backend: "age", input: stream(enc), output: ChunkOutput.toMemory(), passphrase: Buffer.from("wrong"), strategy, tempDirectory: staging })))
    expect((e as AgeError).reason).toBe("WrongPassphrase")
    expect((e as AgeError).exitCode).toBe(3)
    expect(fs.readdirSync(staging)).toEqual([])
    expect(liveStagingDirectories()).toEqual([])
  })

  it("a wrong passphrase removes the .partial output, both backends", async () => {
    const encPath = fresh("w.age")
    fs.writeFileSync(encPath, await lowCostPassphraseFile(bytesOf(1000)))
    for (const backend of ["age", "age-lib"] as const) {
      const out = fresh("w.out")
      const e = failureOf(await runExit(Effect_flat(encPath, (input) => decrypt({ backend, input, output: ChunkOutput.toFile(out), passphrase: Buffer.from("not it") }))))
      expect((e as AgeError).reason).toBe("WrongPassphrase")
      expect(fs.existsSync(out)).toBe(false)
      expect(fs.existsSync(`${out}.partial`)).toBe(false)
    }
  })

  it("refuses unusable passphrases before starting age", async () => {
    for (const bad of ["", "two\nlines", "ctrl\u0003c"]) {
      const e = failureOf(await runExit(encrypt({ backend: "age", input: ChunkInput.fromBytes(bytesOf(3)), output: ChunkOutput.toMemory(), passphrase: Buffer.from(bad) })))
      expect((e as AgeError).reason).toBe("BadPassphrase")
      expect((e as AgeError).message).not.toContain(bad === "" ? "\u0000" : bad)
    }
  })

  it("times out with a clear error when no prompt comes", async () => {
    const fake = fresh("fake-age")
    fs.writeFileSync(fake, "#!/bin/sh\nif [ \"$1\" = --version ]; then echo v1.1.1; exit 0; fi\nsleep 30\n", { mode: 0o755 })
    const e = failureOf(await runExit(decrypt({ backend: "age", ageBin: fake, input: stream(bytesOf(10)), output: ChunkOutput.toMemory(), passphrase: Buffer.from(PASS), promptTimeoutMs: 300 })))
    expect((e as AgeError).reason).toBe("PromptTimeout")
    expect(liveStagingDirectories()).toEqual([])
  })
})

it("publishes run telemetry without secrets", async () => {
  const events: Array<TelemetryEvent> = []
  const run = (passphrase: string) =>
    runExit(decrypt({ backend: "age", input: ChunkInput.fromBytes(Buffer.from("age-encryption.org/v1\n")), output: ChunkOutput.toMemory(), passphrase: Buffer.from(passphrase) })
      .pipe(Effect.provide(Telemetry.layerCallback((e) => events.push(e)))))
  failureOf(await run("telemetry secret 1"))
  const e = new Encrypter()
  e.setPassphrase("telemetry secret 1")
  e.setScryptWorkFactor(10)
  const ok = await runExit(decrypt({ backend: "age-lib", input: ChunkInput.fromBytes(await e.encrypt("hi")), output: ChunkOutput.toMemory(), passphrase: Buffer.from("telemetry secret 1") })
    .pipe(Effect.provide(Telemetry.layerCallback((ev) => events.push(ev)))))
  successOf(ok)
  expect(events.map((ev) => ev.type)).toEqual(["run_start", "run_complete", "run_start", "run_complete"])
  expect(events.map((ev) => ev.type === "run_complete" && ev.ok)).toEqual([false, false, false, true])
  expect(JSON.stringify(events)).not.toContain("telemetry secret")
})

describe("errors", () => {
  it("a missing or too old age is one clear error with the install hint; auto falls back to the library", async () => {
    const e = failureOf(await runExit(findAge({ bin: "/nonexistent/age" })))
    expect(e.reason).toBe("AgeMissing")
    expect(e.message).toContain("apt-get install age")
    expect(e.exitCode).toBe(2)
    const old = fresh("old-age")
    fs.writeFileSync(old, "#!/bin/sh\necho v0.9.0\n", { mode: 0o755 })
    const e2 = failureOf(await runExit(findAge({ bin: old })))
    expect(e2.reason).toBe("AgeTooOld")
    const e3 = failureOf(await runExit(findAge({ env: { PATH: "", CAGE_AGE_BIN: "/nonexistent/age" } })))
    expect(e3.message).toContain("/nonexistent/age")
    const notes: Array<string> = []
    const s = successOf(await runExit(encrypt({ ageBin: "/nonexistent/age", input: ChunkInput.fromBytes(bytesOf(10)), output: ChunkOutput.toMemory(), recipients: [key.recipient], onVerbose: (m) => notes.push(m) })))
    expect(s.backend).toBe("age-lib")
    expect(notes.join()).toContain("not found")
  })

  it("age's usage complaints are exit-2 errors of the right kind", async () => {
    const plain = ChunkInput.fromBytes(bytesOf(10))
    const bad = fresh("bad.txt")
    fs.writeFileSync(bad, "garbage\n")
    const cases: Array<[Promise<unknown>, string]> = [
      [runExit(encrypt({ backend: "age", input: plain, output: ChunkOutput.toMemory(), recipients: ["garbage"] })), "BadRecipient"],
      [runExit(encrypt({ backend: "age", input: plain, output: ChunkOutput.toMemory(), recipients: ["age1qqqq"] })), "BadRecipient"],
      [runExit(encrypt({ backend: "age", input: plain, output: ChunkOutput.toMemory(), recipientFiles: [bad] })), "BadRecipient"],
      [runExit(encrypt({ backend: "age-lib", input: plain, output: ChunkOutput.toMemory(), recipients: ["age1qqqq"] })), "BadRecipient"]
    ]
    const enc = ChunkOutput.toMemory()
    successOf(await runExit(encrypt({ backend: "age-lib", input: plain, output: enc, recipients: [key.recipient] })))
    cases.push([runExit(decrypt({ backend: "age", input: ChunkInput.fromBytes(enc.bytes()), output: ChunkOutput.toMemory(), identityFiles: [bad] })), "Unsupported"])
    const pass = await lowCostPassphraseFile(bytesOf(10))
    cases.push([runExit(decrypt({ backend: "age", input: ChunkInput.fromBytes(pass), output: ChunkOutput.toMemory(), identityFiles: [key.identityFile] })), "BadIdentity"])
    for (const [exit, reason] of cases) {
      const e = failureOf((await exit) as never) as AgeError
      expect(`${e.reason} ${e.message}`).toMatch(new RegExp(`^${reason} `))
      expect(e.exitCode).toBe(2)
    }
  })

  it.for(["age", "age-lib"] as const)("%s: the wrong identity is NoMatch (exit 3), an unreadable identity file is an IoError", async (backend) => {
    const enc = ChunkOutput.toMemory()
    successOf(await runExit(encrypt({ backend, input: ChunkInput.fromBytes(bytesOf(10)), output: enc, recipients: [key.recipient] })))
    const e = failureOf(await runExit(decrypt({ backend, input: ChunkInput.fromBytes(enc.bytes()), output: ChunkOutput.toMemory(), identityFiles: [other.identityFile] })))
    expect((e as AgeError).reason).toBe("NoMatch")
    expect((e as AgeError).exitCode).toBe(3)
    const e2 = failureOf(await runExit(decrypt({ backend, input: ChunkInput.fromBytes(enc.bytes()), output: ChunkOutput.toMemory(), identityFiles: [fresh("missing")] })))
    expect((e2 as { _tag: string })._tag).toBe("IoError")
  })

  it.for(["age", "age-lib"] as const)("%s: any flipped byte or truncation fails with an integrity error (property)", async (backend) => {
    const plain = bytesOf(2 * CHUNK + 100)
    const encOut = ChunkOutput.toMemory()
    successOf(await runExit(encrypt({ backend: "age-lib", input: ChunkInput.fromBytes(plain), output: encOut, recipients: [key.recipient] })))
    const enc = encOut.bytes()
    await fc.assert(
      fc.asyncProperty(fc.nat(enc.length - 1), fc.integer({ min: 1, max: 255 }), fc.boolean(), async (pos, mask, truncate) => {
        const bad = truncate ? enc.subarray(0, pos) : Buffer.from(enc)
        if (!truncate) bad[pos]! ^= mask
        const exit = await runExit(decrypt({ backend, input: ChunkInput.fromBytes(bad), output: ChunkOutput.toMemory(), identityFiles: [key.identityFile] }))
        const e = failureOf(exit) as AgeError
        expect(e).toBeInstanceOf(AgeError)
        expect(e.exitCode).toBe(3)
      }),
      { numRuns: 25 }
    )
  })
})

// ---- small helper: open a file input and run an operation on it ----
import { Effect } from "effect"
function Effect_flat<A, E>(path: string, f: (input: ChunkInput.ChunkInput) => Effect.Effect<A, E>) {
  return Effect.flatMap(ChunkInput.fromFile(path), (input) => Effect.ensuring(f(input), input.close()))
}
