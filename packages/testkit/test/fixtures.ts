import { type ChunkProcessor, PROCESSOR_API_VERSION } from "@cage/core"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs"

const base = { version: "1.0.0", apiVersion: PROCESSOR_API_VERSION, finalize: () => Effect.succeed({}), init: () => Effect.succeed({}) }

/** A correct unordered transform: XOR every byte, append the chunk index, frame with a header/trailer. */
export const xor = (mask = 0x5a): ChunkProcessor => ({
  ...base,
  name: "fixture-xor",
  capabilities: { kind: "transform", ordered: false },
  options: { mask },
  init: () => Effect.succeed({ header: Uint8Array.of(0xca, 0x9e) }),
  process: (chunk, data) =>
    Effect.sync(() => {
      const out = new Uint8Array(data.length + 1)
      for (let i = 0; i < data.length; i++) out[i] = data[i] ^ mask
      out[data.length] = chunk.index & 0xff
      return out
    }),
  finalize: () => Effect.succeed({ trailer: Uint8Array.of(0xee) })
})

/** The inverse of {@link xor}: drops header, per-chunk index bytes and trailer (ordered, input chunks are cs+1 bytes). */
export const unxor = (mask = 0x5a): ChunkProcessor => {
  let pending = Buffer.alloc(0)
  let cs = 0
  return {
    ...base,
    name: "fixture-unxor",
    capabilities: { kind: "transform", ordered: true, resumable: false },
    options: { mask },
    init: (ctx) => Effect.sync(() => { cs = ctx.chunkBytes; pending = Buffer.alloc(0) }),
    // The forward framing is known only as a whole: buffer it and decode at the end.
    process: (_chunk, data) => Effect.sync(() => { pending = Buffer.concat([pending, data]); return new Uint8Array(0) }),
    finalize: () =>
      Effect.suspend(() => {
        const body = pending.subarray(2, pending.length - 1)
        const parts: Array<Uint8Array> = []
        for (let at = 0; at < body.length; at += cs + 1) {
          const piece = body.subarray(at, Math.min(body.length, at + cs + 1))
          parts.push(Buffer.from(piece.subarray(0, piece.length - 1).map((b) => b ^ mask)))
        }
        return Effect.succeed({ trailer: Buffer.concat(parts) })
      })
  }
}

/** A correct ordered observer that cannot snapshot its state (a running SHA-256). */
export const sha256 = (): ChunkProcessor => {
  let h = createHash("sha256")
  return {
    ...base,
    name: "fixture-sha256",
    capabilities: { kind: "observer", ordered: true, resumable: false },
    options: {},
    init: () => Effect.sync(() => { h = createHash("sha256") }),
    process: (_c, data) => Effect.sync(() => { h.update(data); return undefined }),
    finalize: () => Effect.sync(() => ({ result: h.digest("hex") }))
  }
}

/** A correct ordered observer that snapshots its state: counts bytes, resumes from the count. */
export const byteCount = (): ChunkProcessor => {
  let n = 0
  return {
    ...base,
    name: "fixture-count",
    capabilities: { kind: "observer", ordered: true },
    options: {},
    init: (ctx) => Effect.sync(() => { n = typeof ctx.resume === "number" ? ctx.resume : 0 }),
    process: (_c, data) => Effect.sync(() => { n += data.length; return undefined }),
    snapshot: () => n,
    finalize: () => Effect.sync(() => ({ result: n }))
  }
}

// ---- broken processors: each violates one rule the kit must catch ----

/** Keeps references to `data` and hashes them in finalize: sees the engine's reused bytes. */
export const keepsReferences = (): ChunkProcessor => {
  const kept: Array<Uint8Array> = []
  return {
    ...base,
    name: "broken-keeps-references",
    capabilities: { kind: "observer", ordered: true },
    options: {},
    process: (_c, data) => Effect.sync(() => { kept.push(data); return undefined }),
    finalize: () => Effect.sync(() => ({ result: createHash("sha256").update(Buffer.concat(kept)).digest("hex") }))
  }
}

/** Claims `ordered: false` but numbers its output with a running counter. */
export const fakeUnordered = (): ChunkProcessor => {
  let seen = 0
  return {
    ...base,
    name: "broken-fake-unordered",
    capabilities: { kind: "transform", ordered: false },
    options: {},
    process: (_c, data) => Effect.sync(() => Buffer.concat([Buffer.of(seen++ & 0xff), data]))
  }
}

/** Fails on an empty input: finalize assumes at least one chunk. */
export const failsOnEmpty = (): ChunkProcessor => {
  let chunks = 0
  return {
    ...base,
    name: "broken-empty",
    capabilities: { kind: "observer", ordered: true },
    options: {},
    process: () => Effect.sync(() => { chunks++; return undefined }),
    finalize: () => (chunks === 0 ? Effect.die(new Error("no chunks")) : Effect.succeed({}))
  }
}

/** Never completes the effect for chunk 3. */
export const hangs = (): ChunkProcessor => ({
  ...base,
  name: "broken-hangs",
  capabilities: { kind: "observer", ordered: false },
  options: {},
  process: (c) => (c.index === 3 ? Effect.never : Effect.succeed(undefined))
})

/** Retains every chunk it sees: memory grows with the input. */
export const leaks = (): ChunkProcessor => {
  const kept: Array<Uint8Array> = []
  return {
    ...base,
    name: "broken-leaks",
    capabilities: { kind: "observer", ordered: true },
    options: {},
    process: (_c, data) => Effect.sync(() => { kept.push(Buffer.from(data)); return undefined })
  }
}

/** Snapshot claims the state is saved, but init ignores it on resume. */
export const forgetsOnResume = (): ChunkProcessor => {
  let n = 0
  return {
    ...base,
    name: "broken-forgets",
    capabilities: { kind: "observer", ordered: true },
    options: {},
    init: () => Effect.sync(() => { n = 0 }),
    process: (_c, data) => Effect.sync(() => { n += data.length; return undefined }),
    snapshot: () => n,
    finalize: () => Effect.sync(() => ({ result: n }))
  }
}

/**
 * {@link xor} with direct mode: preads each chunk of a segment and pwrites its output at
 * the offset the engine gives. `skew` shifts every chunk after the first by that many bytes
 * (a broken offset computation the kit must catch).
 */
export const xorDirect = (skew = 0): ChunkProcessor => {
  const p = xor()
  let cs = 0
  return {
    ...p,
    name: skew === 0 ? "fixture-xor-direct" : "fixture-xor-direct-skewed",
    init: (context) =>
      Effect.sync(() => {
        cs = context.chunkBytes
        return { header: Uint8Array.of(0xca, 0x9e), direct: { outputChunkBytes: cs + 1 } }
      }),
    processDirect: (chunks, segment) =>
      Effect.sync(() => {
        const first = chunks[0]
        for (const c of chunks) {
          const data = Buffer.alloc(c.length)
          fs.readSync(segment.inputFd, data, 0, c.length, segment.inputOffset + (c.start - first.start))
          const out = Buffer.alloc(c.length + 1)
          for (let i = 0; i < c.length; i++) out[i] = data[i] ^ 0x5a
          out[c.length] = c.index & 0xff
          const k = c.index - first.index
          fs.writeSync(segment.outputFd, out, 0, out.length, segment.outputOffset + k * (cs + 1) + (k > 0 ? skew : 0))
        }
      })
  }
}

// ---- a streaming redactor (a third party's transform) and broken copies of it ----

/** What the redactors replace, and the samples that exercise them (matches everywhere, partial ones at the ends). */
export const PATTERN = Buffer.from("secret")
export const REDACT_SAMPLES: ReadonlyArray<Uint8Array> = [
  "my secret is out, the secret is safe; no secrets here",
  "secretsecret secsecret ssecret secrecy secre",
  "secret",
  "a line without it, then at the very end: secre",
  `${"x".repeat(70)}secret${"y".repeat(57)}secret${"z".repeat(131)}secret`
].map((t) => Buffer.from(t))

const STAR = 0x2a

const matchesAt = (buf: Uint8Array, pattern: Uint8Array, at: number) => {
  for (let j = 0; j < pattern.length; j++) if (buf[at + j] !== pattern[j]) return false
  return true
}

/** Replaces, in `buf`, every match of `pattern` that fits in it, left to right, by as many `*`. */
const redactIn = (buf: Uint8Array, pattern: Uint8Array) => {
  for (let i = 0; i + pattern.length <= buf.length;) {
    if (matchesAt(buf, pattern, i)) {
      buf.fill(STAR, i, i + pattern.length)
      i += pattern.length
    } else {
      i++
    }
  }
}

/** The reference: the whole input redacted in one piece. */
export const redactAll = (input: Uint8Array): Uint8Array => {
  const out = Uint8Array.from(input)
  redactIn(out, PATTERN)
  return out
}

interface RedactFlaws {
  /** Redacts each chunk alone: misses matches split across chunks. */
  readonly perChunk?: boolean
  /** Forgets the held-back bytes in finalize. */
  readonly dropsHeld?: boolean
  /** "Wipes" the secret from the engine's read buffer too: writes the redacted bytes back into `data`. */
  readonly scrubsInput?: boolean
}

/**
 * A streaming redactor: holds back `pattern.length - 1` bytes per chunk so that a match split
 * across chunks is seen whole, and emits them in finalize's trailer. Ordered, not resumable
 * (its state is data, which must not go into a checkpoint), deterministic (a replay rebuilds it).
 */
const redactor = (name: string, flaws: RedactFlaws): ChunkProcessor => {
  const keepBytes = PATTERN.length - 1
  let held: Uint8Array = new Uint8Array(0)
  const process = (_c: unknown, data: Uint8Array) =>
    Effect.sync(() => {
      if (flaws.perChunk) {
        const out = Uint8Array.from(data)
        redactIn(out, PATTERN)
        return out
      }
      const buf = Buffer.concat([held, data])
      redactIn(buf, PATTERN)
      if (flaws.scrubsInput) data.set(buf.subarray(held.length))
      const keep = Math.min(buf.length, keepBytes)
      held = Uint8Array.prototype.slice.call(buf, buf.length - keep)
      return buf.subarray(0, buf.length - keep)
    })
  return {
    ...base,
    name,
    capabilities: { kind: "transform", ordered: true, resumable: false, deterministic: true },
    options: { pattern: PATTERN.toString() },
    init: () => Effect.sync(() => { held = new Uint8Array(0) }),
    process,
    // The engine's batch form, so that its calls are watched too.
    processSegment: (chunks, data) => Effect.forEach(chunks, (c, k) => process(c, data[k])),
    finalize: () => Effect.sync(() => (flaws.dropsHeld || flaws.perChunk ? {} : { trailer: held }))
  }
}

/** The correct redactor. */
export const redact = (): ChunkProcessor => redactor("fixture-redact", {})
/** Broken: its output depends on the chunk size (each chunk redacted alone). */
export const redactPerChunk = (): ChunkProcessor => redactor("broken-redact-per-chunk", { perChunk: true })
/** Broken: drops the bytes it held back at the end of the input. */
export const redactDropsHeld = (): ChunkProcessor => redactor("broken-redact-drops-held", { dropsHeld: true })
/** Broken: changes its input buffer in place (its output is right). */
export const redactInPlace = (): ChunkProcessor => redactor("broken-redact-in-place", { scrubsInput: true })

// ---- what a processor may do with the buffers the engine lends it ----

/** Allowed: a transform that returns its input itself, unchanged (the engine owns both). */
export const passThrough = (): ChunkProcessor => ({
  ...base,
  name: "fixture-pass-through",
  capabilities: { kind: "transform", ordered: false },
  options: {},
  process: (_c, data) => Effect.succeed(data)
})

/** Allowed: processSegment takes the segment's whole ArrayBuffer (as a worker-thread transfer would), inverting its bytes. */
export const takesSegment = (): ChunkProcessor => ({
  ...base,
  name: "fixture-takes-segment",
  capabilities: { kind: "transform", ordered: false },
  options: {},
  process: (_c, data) => Effect.sync(() => data.map((b) => b ^ 0xff)),
  processSegment: (_chunks, data) =>
    Effect.sync(() => {
      if (data.length === 0) return []
      const views = data.map((d) => [d.byteOffset, d.length] as const)
      const moved = structuredClone(data[0].buffer, { transfer: [data[0].buffer as ArrayBuffer] })
      return views.map(([offset, length]) => new Uint8Array(moved, offset, length).map((b) => b ^ 0xff))
    })
})

/** Broken: `process` takes the chunk's ArrayBuffer (only processSegment may take a segment's buffer). */
export const detachesInProcess = (): ChunkProcessor => ({
  ...base,
  name: "broken-detaches-in-process",
  capabilities: { kind: "transform", ordered: false },
  options: {},
  process: (_c, data) =>
    Effect.sync(() => {
      const moved = structuredClone(data.buffer, { transfer: [data.buffer as ArrayBuffer] })
      return new Uint8Array(moved, data.byteOffset, data.length).map((b) => b ^ 0xff)
    })
})

/** Broken: returns its input as output and declares `release`, so it would reuse the engine's read buffer. */
export const releasesInput = (): ChunkProcessor => ({
  ...passThrough(),
  name: "broken-releases-input",
  release: () => {}
})
