import { ChunkInput, ChunkOutput } from "@cage/core"
import { createHash } from "node:crypto"
import * as cctv from "cctv-age"
import { Cause, Effect, Exit } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import * as zlib from "node:zlib"
import type { AgeError, AgeSummary } from "../src/index.js"

/** The age CLI is a hard requirement of this suite: fail loudly when it is missing. */
export const requireAge = (): string => {
  const out = execFileSync("age", ["--version"], { encoding: "utf8" }).trim()
  if (!/\d+\.\d+\.\d+/.test(out)) throw new Error(`age --version printed ${out}`)
  return out.replace(/^v/, "")
}

export const tempDir = (): string => fs.mkdtempSync(nodePath.join(os.tmpdir(), "cage-age-test-"))

export interface Keypair {
  readonly identityFile: string
  readonly recipient: string
}

export const keygen = (dir: string, name = "key"): Keypair => {
  const identityFile = nodePath.join(dir, `${name}.txt`)
  execFileSync("age-keygen", ["-o", identityFile], { stdio: "ignore" })
  const recipient = execFileSync("age-keygen", ["-y", identityFile], { encoding: "utf8" }).trim()
  return { identityFile, recipient }
}

export interface Vector {
  readonly name: string
  readonly expect: "success" | "no match" | "HMAC failure" | "header failure" | "payload failure" | "armor failure"
  readonly payload: string | undefined
  readonly identities: ReadonlyArray<string>
  readonly passphrases: ReadonlyArray<string>
  readonly armored: boolean
  readonly body: Uint8Array
}

/** Every vector of the CCTV age suite (npm `cctv-age`), in name order. */
export const vectors = (): ReadonlyArray<Vector> =>
  Object.entries(cctv as unknown as Record<string, Uint8Array>)
    .filter(([, v]) => v instanceof Uint8Array)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, raw]) => {
      const b = Buffer.from(raw)
      const split = b.indexOf("\n\n")
      const kv: Record<string, Array<string>> = {}
      for (const line of b.subarray(0, split).toString("utf8").split("\n")) {
        const i = line.indexOf(": ")
        ;(kv[line.slice(0, i)] ??= []).push(line.slice(i + 2))
      }
      let body: Uint8Array = b.subarray(split + 2)
      if (kv.compressed?.[0] === "zlib") body = zlib.inflateSync(body)
      return {
        name,
        expect: kv.expect![0] as Vector["expect"],
        payload: kv.payload?.[0],
        identities: kv.identity ?? [],
        passphrases: kv.passphrase ?? [],
        armored: kv.armored?.[0] === "yes",
        body
      }
    })

/** CCTV failure class of an AgeError reason. */
export const cctvClass = (e: AgeError): string | undefined =>
  ({
    NoMatch: "no match",
    WrongPassphrase: "no match",
    HmacFailure: "HMAC failure",
    HeaderFailure: "header failure",
    PayloadFailure: "payload failure",
    ArmorFailure: "armor failure"
  } as Record<string, string>)[e.reason]

export const runExit = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromiseExit(effect)

/** The typed failure of an exit, or throws when it succeeded or died. */
export const failureOf = <A, E>(exit: Exit.Exit<A, E>): E => {
  if (Exit.isSuccess(exit)) throw new Error(`expected a failure, got success ${JSON.stringify(exit.value)}`)
  const f = Cause.findErrorOption(exit.cause)
  if (f._tag === "None") throw new Error(`expected a typed failure, got ${Cause.pretty(exit.cause)}`)
  return f.value
}

export const successOf = <E>(exit: Exit.Exit<AgeSummary, E>): AgeSummary => {
  if (Exit.isSuccess(exit)) return exit.value
  throw new Error(`expected success, got ${Cause.pretty(exit.cause)}`)
}

export { ChunkInput, ChunkOutput }

/**
 * Length and SHA-256 of bytes: compare these instead of the bytes (vitest's deep equality
 * walks a Buffer element by element, seconds for a few hundred KiB).
 */
export const digestOf = (b: Uint8Array) => ({ length: b.length, sha256: createHash("sha256").update(b).digest("hex") })
