/**
 * The chunk store (issue 21, first part: single files, no prune yet): backups that store
 * each distinct chunk once. A file is cut into content-defined chunks (core's
 * `ContentDefined`, FastCDC with restic's bounds), each named by its keyed HMAC, sealed
 * with AES-256-GCM into pack files of a few MiB; a snapshot (one per backup) lists the
 * file's chunks. A chunk already in the store is not written again, and a file whose size,
 * times and inode match its previous snapshot is not even read (`rehash` reads it anyway).
 *
 * Layout under `dir` (see the package README, "a chunk store"): `config.json`, `packs/`,
 * `index/`, `snapshots/`, `lock`. Writes are add-then-reference: packs are durable before
 * the index file that lists them, which is durable before the snapshot that uses them, so a
 * crash at any point leaves every listed snapshot restorable (and at worst packs nothing
 * references yet). One writer at a time (`lock`, refused at once when held).
 *
 * Keys: the 32-byte master key (a Cage key file) never enters the store; every key derives
 * from it and the store's id (`internal/store/keys.ts`).
 *
 * @module
 */
import { ChunkInput, ChunkOutput, ContentDefined, fromSystemError, InputChanged, type IoError, Lock, type LockBusy, Progress, type SourceIdentity, type UsageError } from "@cage/core"
import { Effect } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import type { KeyMaterial } from "@cage/agcm"
import { BackupUsageError, type PackDamaged, SnapshotNotFound, StoreRefused } from "./Error.js"
import { chunkId, deriveStoreKeys, type StoreKeys, STORE_ID_BYTES, wipeStoreKeys } from "./internal/store/keys.js"
import { open, openBlob, type PackEntry, PackWriter, readTable, seal } from "./internal/store/pack.js"
import * as Retention from "./Retention.js"
import type { RetentionPolicy } from "./Retention.js"

/** Default size a pack grows to before it is written, in bytes: 4 MiB. */
export const DEFAULT_PACK_BYTES = 4 * 1024 * 1024
const READ_BYTES = 1024 * 1024
/** Bytes a cluster segment reads of a piece between two looks at the store's lock (`storePieces`): 8 MiB, about 20 to 40 ms of chunking here. */
const HELD_CHECK_BYTES = 8 * 1024 * 1024
/** Pack writes (write, fsync, rename) a backup keeps going at once: libuv runs 4 file operations in parallel. */
const WRITES_IN_FLIGHT = 3
/** Pack files a restore or check keeps open at once. */
const OPEN_PACKS = 32
const INDEX_AAD = Buffer.from("cage.dev/backup/store/v1/index", "latin1")
const SNAPSHOT_AAD = Buffer.from("cage.dev/backup/store/v1/snapshot", "latin1")
const INDEX_ENTRY_BYTES = 32 + 32 + 12

/** Where a chunk is: its pack (SHA-256 hex) and its blob there. */
interface Location {
  readonly pack: string
  readonly offset: number
  readonly sealedBytes: number
  readonly plainBytes: number
}

/** An open store: its directory, keys and index (chunk id, base64 → location). */
export interface Store {
  readonly dir: string
  readonly storeId: string
  readonly chunker: ContentDefined.Params
  readonly packBytes: number
  /** @internal */
  readonly keys: StoreKeys
  /** @internal */
  readonly index: Map<string, Location>
}

/** What a snapshot records of its source. */
export interface SnapshotSource extends SourceIdentity {
  /** File mode bits (permissions), as `stat` gives them. */
  readonly mode: number
}

/** A file's chunks in order: id (base64) and plaintext length in bytes. */
export type ChunkList = ReadonlyArray<readonly [string, number]>

/** One entry of a directory snapshot: a path relative to the root (`/`-separated), with its metadata. */
export interface TreeEntry extends Omit<SnapshotSource, "path"> {
  readonly path: string
  readonly type: "file" | "dir" | "symlink"
  /** Files: the content. Absent for a file that changed while it was read (see `changed`). */
  readonly chunks?: ChunkList
  /** Symlinks: the target, as `readlink` gives it. */
  readonly target?: string
  /** Files that changed while they were read: what changed. Such a file is not stored. */
  readonly changed?: string
}

/** A snapshot: one backup of one file (`chunks`) or of one directory tree (`tree`). */
export interface Snapshot {
  readonly id: string
  /** ISO 8601 UTC. */
  readonly createdAt: string
  readonly source: SnapshotSource
  /**
   * The source's generation number: one more than its newest snapshot's (or
   * `firstGeneration`), so numbers never repeat for a source while its newest is kept.
   */
  readonly generation: number
  /** Plaintext bytes of the source, chunks it has, and the chunks (and their plaintext bytes) this backup added to the store. */
  readonly bytes: number
  readonly chunkCount: number
  readonly added: { readonly chunks: number; readonly bytes: number }
  /** Directories: regular files in the tree. */
  readonly files?: number
  /** A file snapshot: the file's chunks. */
  readonly chunks?: ChunkList
  /** A directory snapshot: every entry below the root, parents before children. */
  readonly tree?: ReadonlyArray<TreeEntry>
}

/** Every chunk list of a snapshot (one for a file, one per stored file of a tree). */
const chunkListsOf = (s: Snapshot): ReadonlyArray<ChunkList> =>
  s.tree !== undefined ? s.tree.flatMap((e) => (e.chunks ? [e.chunks] : [])) : [s.chunks ?? []]

/** What `backup` did, in bytes and chunks. */
export interface BackupSummary {
  readonly snapshot: string
  /** The snapshot's generation number for its source. */
  readonly generation: number
  readonly source: string
  readonly bytes: number
  readonly chunks: number
  /** Chunks (and their plaintext bytes) this backup added to the store. */
  readonly addedChunks: number
  readonly addedBytes: number
  /** Bytes written to the store: packs and the index (sealed), and the snapshot. */
  readonly storedBytes: number
  /** True when the source matched its previous snapshot (size, times, inode) and was not read. */
  readonly unchanged: boolean
  /** Directories: regular files backed up, and those read (the others matched the previous snapshot). */
  readonly files?: number
  readonly filesRead?: number
  /** Directories: files that changed while they were read (not stored), and entries skipped (sockets, devices, FIFOs). */
  readonly changed?: ReadonlyArray<string>
  readonly skipped?: ReadonlyArray<string>
}

const io = <A>(operation: string, path: string, f: () => A): Effect.Effect<A, IoError> =>
  Effect.try({ try: f, catch: (e) => fromSystemError(operation, path, e) })

/** Writes `bytes` to `path` durably: `<path>.partial` (0600), fsync, rename, directory fsync. Rejects with the system error. */
const writeFileDurably = async (path: string, bytes: Uint8Array): Promise<void> => {
  await fs.promises.mkdir(nodePath.dirname(path), { recursive: true })
  const partial = `${path}.partial`
  const h = await fs.promises.open(partial, "w", 0o600)
  try {
    await h.writeFile(bytes)
    await h.sync()
  } finally {
    await h.close()
  }
  await fs.promises.rename(partial, path)
  const dir = await fs.promises.open(nodePath.dirname(path), "r")
  try {
    await dir.sync()
  } finally {
    await dir.close()
  }
}

/** {@link writeFileDurably} as an effect (fails with `IoError`). */
const writeDurably = (path: string, bytes: Uint8Array): Effect.Effect<void, IoError> =>
  Effect.tryPromise({ try: () => writeFileDurably(path, bytes), catch: (e) => fromSystemError("write", path, e) })

const paths = (dir: string) => ({
  config: nodePath.join(dir, "config.json"),
  packs: nodePath.join(dir, "packs"),
  index: nodePath.join(dir, "index"),
  snapshots: nodePath.join(dir, "snapshots"),
  lock: nodePath.join(dir, "lock"),
  pack: (id: string) => nodePath.join(dir, "packs", id.slice(0, 2), id)
})

/** A passphrase store's KDF: scrypt with r = 8, p = 1, and the cost and salt recorded in its config. */
interface Kdf {
  readonly scrypt: { readonly logN: number; readonly salt: string }
}

/** The config's MAC: HMAC-SHA-256 under the index key of its other fields, in a fixed order. */
const configMac = (keys: StoreKeys, storeId: string, chunker: ContentDefined.Params, kdf: Kdf | undefined) =>
  crypto.createHmac("sha256", keys.config)
    .update(JSON.stringify(["cage-store", 1, storeId, chunker.minBytes, chunker.avgBytes, chunker.maxBytes, kdf?.scrypt.logN ?? null, kdf?.scrypt.salt ?? null]))
    .digest("hex")

const SCRYPT_LABEL = "cage.dev/backup/store/v1/scrypt"

/**
 * The 32-byte master key from key material: the raw key, or scrypt of the passphrase under
 * the store's recorded cost and salt (refused above `maxScryptLogN`, default 18).
 */
const masterKey = (dir: string, material: KeyMaterial, kdf: Kdf | undefined): Effect.Effect<Buffer, StoreRefused> =>
  Effect.suspend((): Effect.Effect<Buffer, StoreRefused> => {
    const refuse = (detail: string) => Effect.fail(new StoreRefused({ reason: "Key", path: dir, detail }))
    const m = material as { key?: Uint8Array; passphrase?: Uint8Array; maxScryptLogN?: number }
    if (kdf === undefined) {
      if (m.key === undefined) return refuse("this store is opened with a key file, not a passphrase")
      return m.key.length === 32 ? Effect.succeed(Buffer.from(m.key)) : refuse(`a store key is 32 bytes, got ${m.key.length}`)
    }
    if (m.passphrase === undefined) return refuse("this store is opened with a passphrase, not a key file")
    if (m.passphrase.length === 0) return refuse("the passphrase is empty")
    const { logN, salt } = kdf.scrypt
    const max = m.maxScryptLogN ?? 18
    if (!Number.isInteger(logN) || logN < 10 || logN > max) return refuse(`the store asks for scrypt cost 2^${logN}, outside 2^10..2^${max}`)
    const passphrase = m.passphrase
    return Effect.callback<Buffer, StoreRefused>((resume) => {
      crypto.scrypt(passphrase, Buffer.concat([Buffer.from(SCRYPT_LABEL), Buffer.from(salt, "hex")]), 32, { N: 2 ** logN, r: 8, p: 1, maxmem: 128 * 2 ** logN * 8 + (16 << 20) }, (e, key) => {
        resume(e ? Effect.die(e) : Effect.succeed(key))
      })
    })
  })

/**
 * Opens the store at `dir` with `key` (`@cage/agcm`'s `KeyMaterial`: a 32-byte `{ key }`, or
 * `{ passphrase }`, stretched with scrypt, cost `scryptLogN`, default 2^17, recorded in the
 * config), creating it when `dir` holds no store yet (with `chunker` bounds, default
 * restic's; fixed for the store's life). The key material is not wiped: the caller's.
 *
 * Fails with `StoreRefused` (`"Key"`: the key does not open it, or is the other kind;
 * `"Corrupt"`: the config or an index file does not parse or authenticate), `UsageError`
 * (bad chunker bounds) or `IoError`.
 */
export const open_ = (options: {
  readonly dir: string
  readonly key: KeyMaterial
  readonly chunker?: ContentDefined.Params
  readonly packBytes?: number
}): Effect.Effect<Store, StoreRefused | UsageError | IoError> =>
  Effect.gen(function*() {
    const p = paths(options.dir)
    let text = yield* io("read", p.config, () => (fs.existsSync(p.config) ? fs.readFileSync(p.config, "utf8") : undefined))
    if (text === undefined) {
      const chunker = options.chunker ?? ContentDefined.DEFAULT_PARAMS
      yield* Effect.try({ try: () => ContentDefined.make(chunker), catch: (e) => e as UsageError })
      const storeId = crypto.randomBytes(STORE_ID_BYTES).toString("hex")
      const m = options.key as { passphrase?: Uint8Array; scryptLogN?: number }
      const kdf: Kdf | undefined = m.passphrase !== undefined ? { scrypt: { logN: m.scryptLogN ?? 17, salt: crypto.randomBytes(16).toString("hex") } } : undefined
      const master = yield* masterKey(options.dir, options.key, kdf)
      const keys = deriveStoreKeys(master, Buffer.from(storeId, "hex"))
      master.fill(0)
      // Every directory a store writes into exists (and is durable) from the start: a pack
      // is never written into a directory that a crash could still lose.
      yield* io("create", options.dir, () => {
        for (const d of [p.index, p.snapshots]) fs.mkdirSync(d, { recursive: true, mode: 0o700 })
        for (let b = 0; b < 256; b++) fs.mkdirSync(nodePath.join(p.packs, b.toString(16).padStart(2, "0")), { recursive: true, mode: 0o700 })
      })
      for (const d of [p.packs, options.dir, nodePath.dirname(nodePath.resolve(options.dir))]) yield* ChunkOutput.syncDirectory(d)
      const fresh = JSON.stringify({ format: "cage-store", version: 1, storeId, chunker, ...(kdf ? { kdf } : {}), mac: configMac(keys, storeId, chunker, kdf) }, null, 2)
      // Published with link(), which fails when the file exists: of two first opens at
      // once, one config wins and the other process reads it (never two store ids).
      const staged = `${p.config}.${crypto.randomBytes(8).toString("hex")}`
      yield* Effect.tryPromise({ try: () => writeFileDurably(staged, Buffer.from(fresh)), catch: (e) => fromSystemError("write", p.config, e) })
      yield* io("create", p.config, () => {
        try {
          fs.linkSync(staged, p.config)
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e
        } finally {
          fs.rmSync(staged, { force: true })
        }
      })
      yield* ChunkOutput.syncDirectory(options.dir)
      text = yield* io("read", p.config, () => fs.readFileSync(p.config, "utf8"))
    }
    const corrupt = (path: string, detail: string) => new StoreRefused({ reason: "Corrupt", path, detail })
    let config: { format?: unknown; version?: unknown; storeId?: unknown; chunker?: ContentDefined.Params; kdf?: Kdf; mac?: unknown }
    try {
      config = JSON.parse(text)
    } catch {
      return yield* corrupt(p.config, "not a Cage store config (not JSON)")
    }
    if (config.format !== "cage-store" || config.version !== 1 || typeof config.storeId !== "string" || !/^[0-9a-f]{32}$/.test(config.storeId) || typeof config.mac !== "string" || config.chunker === undefined) {
      return yield* corrupt(p.config, "not a version 1 Cage store config")
    }
    const chunker: ContentDefined.Params = { minBytes: Number(config.chunker.minBytes), avgBytes: Number(config.chunker.avgBytes), maxBytes: Number(config.chunker.maxBytes) }
    const kdf: Kdf | undefined = config.kdf?.scrypt ? { scrypt: { logN: Number(config.kdf.scrypt.logN), salt: String(config.kdf.scrypt.salt) } } : undefined
    const master = yield* masterKey(options.dir, options.key, kdf)
    const keys = deriveStoreKeys(master, Buffer.from(config.storeId, "hex"))
    master.fill(0)
    const mac = configMac(keys, config.storeId, chunker, kdf)
    if (mac.length !== config.mac.length || !crypto.timingSafeEqual(Buffer.from(mac), Buffer.from(config.mac))) {
      wipeStoreKeys(keys)
      return yield* new StoreRefused({ reason: "Key", path: options.dir, detail: "this key does not open the store (another key, or its config.json was edited)" })
    }
    const index = yield* loadIndex(options.dir, keys).pipe(Effect.tapError(() => Effect.sync(() => wipeStoreKeys(keys))))
    return { dir: options.dir, storeId: config.storeId, chunker, packBytes: options.packBytes ?? DEFAULT_PACK_BYTES, keys, index }
  })

/** Every index file's entries (chunk id, base64 → location), and the index files' paths. */
const loadIndexFiles = (dir: string, keys: StoreKeys): Effect.Effect<{ readonly index: Map<string, Location>; readonly files: ReadonlyArray<string>; readonly bad: ReadonlyArray<string> }, IoError> =>
  Effect.gen(function*() {
    const p = paths(dir)
    const index = new Map<string, Location>()
    // Staged index files of a running cluster job (`NAME.job-ID`) are not part of the store
    // until its commit renames them: see `storePieces`.
    const names = yield* io("read", p.index, () => fs.readdirSync(p.index).filter((n) => !n.endsWith(".partial") && !n.includes(JOB_STAGED)).sort())
    const files = names.map((n) => nodePath.join(p.index, n))
    // An index file that does not authenticate is left out (and reported by check), so a
    // store with a damaged index still opens and `recover` can rebuild it from the packs.
    const bad: Array<string> = []
    for (const file of files) {
      const sealed = yield* io("read", file, () => fs.readFileSync(file))
      const entries = open(keys.index, sealed, INDEX_AAD)
      if (entries === undefined || entries.length % INDEX_ENTRY_BYTES !== 0) {
        bad.push(file)
        continue
      }
      for (let at = 0; at < entries.length; at += INDEX_ENTRY_BYTES) {
        index.set(entries.subarray(at, at + 32).toString("base64"), {
          pack: entries.subarray(at + 32, at + 64).toString("hex"),
          offset: entries.readUInt32LE(at + 64),
          sealedBytes: entries.readUInt32LE(at + 68),
          plainBytes: entries.readUInt32LE(at + 72)
        })
      }
    }
    return { index, files, bad }
  })

const loadIndex = (dir: string, keys: StoreKeys) => loadIndexFiles(dir, keys).pipe(Effect.map((r) => r.index))

/**
 * Reloads the store's index from disk: another process may have written or pruned since
 * this one opened the store (a stale index could skip storing a chunk a prune removed).
 */
const refresh = (store: Store): Effect.Effect<void, IoError> =>
  Effect.gen(function*() {
    replaceIndex(store, yield* loadIndex(store.dir, store.keys))
  })

/** Makes `index` the store's in-memory index. */
const replaceIndex = (store: Store, index: ReadonlyMap<string, Location>): void => {
  store.index.clear()
  for (const [k, v] of index) store.index.set(k, v)
}

/** What ends a staged index file's name: `.job-` and the job's id. */
const JOB_STAGED = ".job-"

/** Writes an index file listing `entries` (durably), named by its hash (and `suffix`); returns its path and size in bytes. */
const writeIndex = (dir: string, keys: StoreKeys, entries: ReadonlyMap<string, Location>, suffix = ""): Effect.Effect<{ readonly path: string; readonly bytes: number }, IoError> =>
  Effect.suspend(() => {
    const bytes = Buffer.alloc(entries.size * INDEX_ENTRY_BYTES)
    let at = 0
    for (const [key, loc] of entries) {
      Buffer.from(key, "base64").copy(bytes, at)
      Buffer.from(loc.pack, "hex").copy(bytes, at + 32)
      bytes.writeUInt32LE(loc.offset, at + 64)
      bytes.writeUInt32LE(loc.sealedBytes, at + 68)
      bytes.writeUInt32LE(loc.plainBytes, at + 72)
      at += INDEX_ENTRY_BYTES
    }
    const sealed = seal(keys.index, bytes, INDEX_AAD)
    const path = nodePath.join(paths(dir).index, crypto.createHash("sha256").update(sealed).digest("hex") + suffix)
    return writeDurably(path, sealed).pipe(Effect.as({ path, bytes: sealed.length }))
  })

/** Reads and opens one snapshot file. */
const readSnapshot = (store: Store, file: string): Effect.Effect<Snapshot, StoreRefused | IoError> =>
  Effect.gen(function*() {
    const sealed = yield* io("read", file, () => fs.readFileSync(file))
    const plain = open(store.keys.snapshot, sealed, SNAPSHOT_AAD)
    if (plain === undefined) return yield* new StoreRefused({ reason: "Corrupt", path: file, detail: "a snapshot that does not authenticate" })
    return JSON.parse(plain.toString("utf8")) as Snapshot
  })

/** Every snapshot, oldest first. */
export const snapshots = (store: Store): Effect.Effect<ReadonlyArray<Snapshot>, StoreRefused | IoError> =>
  Effect.gen(function*() {
    const dir = paths(store.dir).snapshots
    const names = yield* io("read", dir, () => fs.readdirSync(dir).filter((n) => !n.endsWith(".partial")).sort())
    return yield* Effect.forEach(names, (n) => readSnapshot(store, nodePath.join(dir, n)))
  })

/** Options of {@link backup}. */
export interface BackupOptions {
  /** A regular file or a directory. */
  readonly source: string
  /** Read every file, even those matching the previous snapshot. */
  readonly rehash?: boolean
  /**
   * The lowest generation number this snapshot may get (a caller that numbered the
   * source's earlier backups elsewhere, such as full-copy generations, continues after them).
   */
  readonly firstGeneration?: number
  /** Told the source's size (undefined for a directory), then bytes read and bytes stored so far. */
  readonly progress?: Progress.ProgressReporter
  /**
   * Back up this stream (standard input: `pg_dump | cage backup create - --name db.sql`)
   * to its end instead of reading `source`, which then only names it: its generations are
   * listed and restored under that path (resolved), as a file's would be. A stream has no
   * identity to compare, so it is always read.
   */
  readonly input?: NodeJS.ReadableStream
}

/**
 * Backs up the regular file or directory `source` into a new snapshot. Chunks the store holds are not
 * stored again; a source matching its latest snapshot (size, mtime, ctime, inode, device)
 * is not read unless `rehash`.
 *
 * Fails with `InputChanged` when the source changed while it was read (nothing is
 * referenced then, and the packs this run wrote are removed), `LockBusy` when another
 * process writes the store, `BackupUsageError` (`"Path"`: neither a regular file nor a
 * directory), `StoreRefused`, `IoError`.
 */
export const backup = (store: Store, options: BackupOptions): Effect.Effect<BackupSummary, InputChanged | LockBusy | StoreRefused | BackupUsageError | IoError> =>
  Effect.acquireUseRelease(
    Lock.acquireOrRefuse(paths(store.dir).lock, store.dir),
    () => backupLocked(store, options),
    (holder) => Effect.sync(() => Lock.release(paths(store.dir).lock, holder))
  )

/** The identity of an lstat (bigint) result. */
const identityOf = (path: string, st: fs.BigIntStats): SnapshotSource => ({
  path,
  size: Number(st.size),
  mtimeNs: st.mtimeNs.toString(),
  ctimeNs: st.ctimeNs.toString(),
  ino: st.ino.toString(),
  dev: st.dev.toString(),
  mode: Number(st.mode)
})

/**
 * What one backup writes: chunks sealed into packs (up to WRITES_IN_FLIGHT pack writes run
 * while the next pack fills, so the disk works while the CPU chunks, hashes and seals), and
 * the index entries of the packs written.
 */
const makeWriter = (store: Store, progress: Progress.ProgressReporter) => {
  const p = paths(store.dir)
  let readBytes = 0
  // Buffers of packs already written, for the next packs: the same few buffers cycle
  // through a whole backup, so no pack buffer waits for the collector (6 MiB each, four
  // of them, would otherwise pile up as garbage between collections).
  const spare: Array<Buffer> = []
  const newPack = () => new PackWriter(store.keys, store.packBytes + 2 * store.chunker.avgBytes, spare.pop())
  let pack = newPack()
  const written: Array<string> = []
  const added = new Map<string, Location>()
  // Chunks this run sealed: known before their pack is written and listed in `added`.
  const sealedIds = new Set<string>()
  const counters = { storedBytes: 0, addedBytes: 0 }
  // Plain promises, so each write always runs to its end (a failed run waits for them
  // before removing what it wrote).
  const writing: Array<Promise<IoError | undefined>> = []
  const settle = (keep: number) =>
    Effect.gen(function*() {
      while (writing.length > keep) {
        const error = yield* Effect.promise(() => writing.shift()!)
        if (error) return yield* error
      }
    })
  const flush = Effect.gen(function*() {
    if (pack.count === 0) return
    const finished = pack.finish()
    yield* settle(WRITES_IN_FLIGHT - 1)
    pack = newPack()
    const file = p.pack(finished.packId)
    written.push(file)
    writing.push(writeFileDurably(file, finished.bytes).then(() => {
      spare.push(finished.buffer)
      counters.storedBytes += finished.bytes.length
      for (const e of finished.entries) added.set(e.id.toString("base64"), { pack: finished.packId, offset: e.offset, sealedBytes: e.sealedBytes, plainBytes: e.plainBytes })
      return undefined
    }, (e: unknown) => fromSystemError("write", file, e)))
  })
  const take = (list: Array<readonly [string, number]>, chunk: Buffer) =>
    Effect.gen(function*() {
      const id = chunkId(store.keys, chunk)
      const key = id.toString("base64")
      list.push([key, chunk.length])
      if (store.index.has(key) || sealedIds.has(key)) return
      pack.add(id, chunk)
      sealedIds.add(key)
      counters.addedBytes += chunk.length
      if (pack.bytes >= store.packBytes) yield* flush
    })
  // One staging buffer, read into in place: what the chunker has not cut yet (less than a
  // maximum chunk) stays at its front, so reading and cutting allocate nothing.
  const staging = Buffer.allocUnsafe(store.chunker.maxBytes + READ_BYTES)
  /** Cuts everything `read` gives (into `staging` at an offset, at most READ_BYTES; 0 at the end) into chunks, stored as they come. */
  const chunkAll = <E>(read: (at: number) => Effect.Effect<number, E>) =>
    Effect.gen(function*() {
      const list: Array<readonly [string, number]> = []
      const chunker = ContentDefined.make(store.chunker)
      let filled = 0
      for (let done = false; !done;) {
        const n = yield* read(filled)
        const cuts = n === 0 ? chunker.end() : chunker.push(staging.subarray(filled, filled + n))
        filled += n
        readBytes += n
        progress.update(readBytes, counters.storedBytes)
        done = n === 0
        let start = 0
        for (const length of cuts) {
          yield* take(list, staging.subarray(start, start + length))
          start += length
        }
        staging.copyWithin(0, start, filled)
        filled -= start
      }
      return list as ChunkList
    })
  /**
   * The chunks of the file at `path` (or of its bytes `[range.start, range.end)`), with its
   * identity after the read, or what changed when it is no longer `before` (by default: the
   * file as it was when opened). `between`, when given, runs before every
   * {@link HELD_CHECK_BYTES} read after the first, and its failure ends the read.
   */
  const chunkFile = <E = never>(
    path: string,
    before: SnapshotSource | undefined,
    range?: { readonly start: number; readonly end: number },
    between?: Effect.Effect<void, E>
  ) =>
    // acquireUseRelease, not try/finally: a failure yielded inside Effect.gen abandons the
    // generator without running its `finally` (a cancelled backup's segment, a read error),
    // and a runner is a long-lived process that would keep the descriptor.
    Effect.acquireUseRelease(
      io("open", path, () => fs.openSync(path, "r")),
      (fd) => Effect.gen(function*() {
        const was = before ?? identityOf(path, yield* io("stat", path, () => fs.fstatSync(fd, { bigint: true })))
        let position = range?.start ?? 0
        let sinceCheck = 0
        // Asynchronous: a long backup never blocks the event loop (progress, signals).
        // Uninterruptible: the release closes `fd` only once no read into `staging` is in
        // flight (a read on a closed, reused descriptor number would fill it from another file).
        const readAt = (at: number) =>
          Effect.uninterruptible(Effect.callback<number, IoError>((resume) => {
            const want = range === undefined ? READ_BYTES : Math.min(READ_BYTES, range.end - position)
            if (want <= 0) return resume(Effect.succeed(0))
            fs.read(fd, staging, at, want, range === undefined ? null : position, (e, got) => {
              position += got
              sinceCheck += got
              resume(e ? Effect.fail(fromSystemError("read", path, e)) : Effect.succeed(got))
            })
          }))
        const list = yield* chunkAll((at): Effect.Effect<number, IoError | E> => {
          if (between === undefined || sinceCheck < HELD_CHECK_BYTES) return readAt(at)
          sinceCheck = 0
          return Effect.andThen(between, readAt(at))
        })
        const after = identityOf(path, yield* io("stat", path, () => fs.fstatSync(fd, { bigint: true })))
        const change = ChunkInput.changeOf(was, after)
        return change === undefined ? { chunks: list, identity: after, changed: undefined } : { chunks: undefined, identity: after, changed: change }
      }),
      (fd) => Effect.sync(() => fs.closeSync(fd))
    )
  /** The chunks of a stream (standard input), read to its end; `name` names it in errors. */
  const chunkStream = (stream: NodeJS.ReadableStream, name: string) =>
    Effect.suspend(() => {
      const pieces = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>
      let pending: Buffer | undefined
      return chunkAll((at) =>
        Effect.gen(function*() {
          while (pending === undefined || pending.length === 0) {
            const next = yield* Effect.tryPromise({ try: () => pieces.next(), catch: (e) => fromSystemError("read", name, e) })
            if (next.done === true) return 0
            const v = next.value as Uint8Array | string
            // Bytes as they come (a Buffer, or any Uint8Array); text only from a stream given an encoding.
            pending = typeof v === "string" ? Buffer.from(v, (stream as { readableEncoding?: BufferEncoding | null }).readableEncoding ?? "utf8") : Buffer.from(v.buffer, v.byteOffset, v.length)
          }
          const n = pending.copy(staging, at, 0, Math.min(pending.length, READ_BYTES))
          pending = pending.subarray(n)
          return n
        })
      )
    })
  return {
    chunkFile,
    chunkStream,
    counters,
    added,
    /** Writes the last pack and waits for every write. */
    finish: Effect.andThen(flush, settle(0)),
    /** After a failure: once the writes ended, removes the packs this run wrote (it holds the lock). */
    discard: Effect.promise(() => Promise.all(writing)).pipe(Effect.andThen(Effect.sync(() => {
      for (const f of written) for (const g of [f, `${f}.partial`]) fs.rmSync(g, { force: true })
    })))
  }
}

/**
 * Walks the tree at `root` (sorted, parents first): directories and symlinks become entries
 * here, each regular file the entry `file` makes of it (or none); entries that vanished since
 * `readdir` (normal churn in a live tree) or are none of those go to `skipped`.
 */
const walkTree = <P, E>(root: string, file: (full: string, path: string, meta: Omit<SnapshotSource, "path">) => Effect.Effect<P, E>) =>
  Effect.gen(function*() {
    const tree: Array<Omit<TreeEntry, "chunks" | "changed"> | P> = []
    const skipped: Array<string> = []
    const walk = (dir: string, rel: string): Effect.Effect<void, IoError | E> =>
      Effect.gen(function*() {
        const names = yield* io("read", dir, () => fs.readdirSync(dir).sort())
        for (const name of names) {
          const full = nodePath.join(dir, name)
          const path = rel === "" ? name : `${rel}/${name}`
          const st = yield* io("stat", full, () => fs.lstatSync(full, { bigint: true, throwIfNoEntry: false }))
          if (st === undefined) {
            skipped.push(path)
            continue
          }
          const { path: _, ...meta } = identityOf(full, st)
          if (st.isDirectory()) {
            tree.push({ ...meta, path, type: "dir" })
            yield* walk(full, path)
          } else if (st.isSymbolicLink()) {
            tree.push({ ...meta, path, type: "symlink", target: yield* io("readlink", full, () => fs.readlinkSync(full)) })
          } else if (st.isFile()) {
            tree.push(yield* file(full, path, meta))
          } else {
            skipped.push(path)
          }
        }
      })
    yield* walk(root, "")
    return { tree, skipped }
  })

/** Whether a file's entry in the previous snapshot can stand for it unread (same size, times, inode, device). */
const unchangedSince = (was: TreeEntry | undefined, full: string, meta: Omit<SnapshotSource, "path">, rehash: boolean): was is TreeEntry & { readonly chunks: ChunkList } =>
  !rehash && was?.type === "file" && was.chunks !== undefined && ChunkInput.changeOf({ ...was, path: full }, { ...meta, path: full }) === undefined

/** Walks the tree at `root`, storing files; `previous` by path lets unchanged files be reused. */
const backupTree = (root: string, w: ReturnType<typeof makeWriter>, previous: ReadonlyMap<string, TreeEntry>, rehash: boolean) =>
  Effect.gen(function*() {
    const changed: Array<string> = []
    let files = 0
    let filesRead = 0
    const { tree, skipped } = yield* walkTree(root, (full, path, meta) =>
      Effect.gen(function*() {
        files++
        const was = previous.get(path)
        if (unchangedSince(was, full, meta, rehash)) return { ...meta, path, type: "file", chunks: was.chunks } satisfies TreeEntry
        filesRead++
        const r = yield* w.chunkFile(full, { ...meta, path: full }).pipe(
          Effect.catchIf((e): e is IoError => e._tag === "IoError" && e.reason === "NotFound", () => Effect.succeed({ chunks: undefined, changed: "it was removed while the backup ran" }))
        )
        if (r.changed !== undefined) {
          changed.push(path)
          return { ...meta, path, type: "file", changed: r.changed } satisfies TreeEntry
        }
        return { ...meta, path, type: "file", chunks: r.chunks } satisfies TreeEntry
      })
    )
    return { tree: tree as Array<TreeEntry>, changed, skipped, files, filesRead }
  })

const backupLocked = (store: Store, options: BackupOptions) =>
  Effect.gen(function*() {
    const p = paths(store.dir)
    const sourcePath = nodePath.resolve(options.source)
    yield* refresh(store)
    const stream = options.input
    // A stream's identity: its name, a regular file's mode, the time it was read (filled in with its size below).
    const now = BigInt(Date.now()) * 1_000_000n
    let source: SnapshotSource = stream !== undefined
      ? { path: sourcePath, size: 0, mtimeNs: now.toString(), ctimeNs: now.toString(), ino: "0", dev: "0", mode: 0o100600 }
      : identityOf(sourcePath, yield* io("stat", sourcePath, () => fs.statSync(sourcePath, { bigint: true })))
    const isTree = (source.mode & 0o170000) === 0o040000
    // A FIFO or a device would block or never end: only regular files and directories.
    if (!isTree && (source.mode & 0o170000) !== 0o100000) {
      return yield* new BackupUsageError({ reason: "Path", detail: `${options.source} is neither a regular file nor a directory` })
    }
    const ofSource = (yield* snapshots(store)).filter((s) => s.source.path === sourcePath)
    const previous = ofSource.at(-1)
    const generation = Math.max(options.firstGeneration ?? 1, ...ofSource.map((s) => s.generation + 1))
    const rehash = options.rehash === true
    const progress = options.progress ?? Progress.silent
    progress.start(isTree || stream !== undefined ? undefined : source.size, 0)
    const w = makeWriter(store, progress)
    let body: { readonly chunks: ChunkList } | Effect.Success<ReturnType<typeof backupTree>> | undefined
    let unchanged = false
    const run = Effect.gen(function*() {
      if (stream !== undefined) {
        const chunks = yield* w.chunkStream(stream, options.source)
        source = { ...source, size: chunks.reduce((n, c) => n + c[1], 0) }
        body = { chunks }
      } else if (isTree) {
        body = yield* backupTree(sourcePath, w, new Map((previous?.tree ?? []).map((e) => [e.path, e])), rehash)
      } else if (!rehash && previous?.chunks !== undefined && ChunkInput.changeOf(previous.source, source) === undefined) {
        unchanged = true
        body = { chunks: previous.chunks }
      } else {
        const r = yield* w.chunkFile(sourcePath, source)
        if (r.changed !== undefined) return yield* new InputChanged({ path: options.source, detail: r.changed })
        body = { chunks: r.chunks }
      }
      yield* w.finish
    })
    // A failed run references nothing: remove the packs it wrote.
    yield* run.pipe(Effect.onError(() => w.discard), Effect.ensuring(Effect.sync(() => progress.stop())))
    if (w.added.size > 0) {
      w.counters.storedBytes += (yield* writeIndex(store.dir, store.keys, w.added)).bytes
      for (const [key, loc] of w.added) store.index.set(key, loc)
    }
    const createdAt = new Date().toISOString()
    const id = `${createdAt.replace(/[-:.]/g, "")}-${crypto.randomBytes(4).toString("hex")}`
    const b = body!
    const lists = "tree" in b ? b.tree.flatMap((e) => (e.chunks ? [e.chunks] : [])) : [b.chunks]
    const bytes = lists.reduce((n, l) => l.reduce((m, c) => m + c[1], n), 0)
    const chunkCount = lists.reduce((n, l) => n + l.length, 0)
    const common = { id, createdAt, source, generation, bytes, chunkCount, added: { chunks: w.added.size, bytes: w.counters.addedBytes } }
    const snapshot: Snapshot = "tree" in b ? { ...common, files: b.files, tree: b.tree } : { ...common, chunks: b.chunks }
    const sealed = seal(store.keys.snapshot, Buffer.from(JSON.stringify(snapshot)), SNAPSHOT_AAD)
    yield* writeDurably(nodePath.join(p.snapshots, id), sealed)
    return {
      snapshot: id,
      generation,
      source: options.source,
      bytes,
      chunks: chunkCount,
      addedChunks: w.added.size,
      addedBytes: w.counters.addedBytes,
      storedBytes: w.counters.storedBytes + sealed.length,
      unchanged,
      ...("tree" in b ? { files: b.files, filesRead: b.filesRead, changed: b.changed, skipped: b.skipped } : {})
    } satisfies BackupSummary
  })

// Distributed backups (`cage cluster submit backup`, issue 16). A cluster job holds the
// store's lock for its whole run ({@link lockForJob}), plans the tree on one machine
// ({@link planTree}), lets runners on many machines store pieces of its files at once
// ({@link storePieces}: packs and one index file each, never a snapshot), and writes the
// snapshot once every piece is stored ({@link commitTree}). Packs are named by their bytes and
// index files by theirs, so writers never collide; a chunk two runners both stored is
// indexed twice, which every reader and `prune` tolerate (the index keeps one location, and
// prune drops the pack it does not point to).

/** A file or directory entry of a planned tree backup: no chunks yet; `reuse` marks a file unchanged since the plan's `previous` snapshot (taken from it, never read). */
export type PlannedEntry = Omit<TreeEntry, "chunks" | "changed"> & { readonly reuse?: boolean }

/** What {@link planTree} found: the directory's identity, the snapshot unchanged files come from, and every entry below it. */
export interface TreePlan {
  readonly source: SnapshotSource
  /** Id of the source's newest snapshot (its unchanged files' chunks), if any. */
  readonly previous: string | undefined
  readonly entries: ReadonlyArray<PlannedEntry>
  /** Paths neither a file, a directory nor a symlink, or gone while listed. */
  readonly skipped: ReadonlyArray<string>
}

/**
 * Lists the directory `source` for a distributed backup (lstat only, nothing is read): every
 * entry, with the files unchanged since the source's newest snapshot marked `reuse` (not
 * with `rehash`). Fails with `BackupUsageError` `"Path"` when `source` is not a directory.
 */
export const planTree = (store: Store, source: string, options: { readonly rehash?: boolean } = {}): Effect.Effect<TreePlan, StoreRefused | BackupUsageError | IoError> =>
  Effect.gen(function*() {
    const root = nodePath.resolve(source)
    const identity = identityOf(root, yield* io("stat", root, () => fs.statSync(root, { bigint: true })))
    if ((identity.mode & 0o170000) !== 0o040000) return yield* new BackupUsageError({ reason: "Path", detail: `${source} is not a directory` })
    yield* refresh(store)
    const previous = (yield* snapshots(store)).filter((s) => s.source.path === root).at(-1)
    const before = new Map((previous?.tree ?? []).map((e) => [e.path, e]))
    const { tree, skipped } = yield* walkTree(root, (full, path, meta) =>
      Effect.succeed({ ...meta, path, type: "file", ...(unchangedSince(before.get(path), full, meta, options.rehash === true) ? { reuse: true } : {}) } satisfies PlannedEntry)
    )
    return { source: identity, previous: previous?.tree === undefined ? undefined : previous.id, entries: tree, skipped }
  })

/** Bytes `[start, end)` of the file at `path` (absolute), planned when the file was `identity`. */
export interface Piece {
  readonly path: string
  readonly start: number
  readonly end: number
}

/** A stored piece: its chunks and the file's identity after the read, or what changed while it was read. */
export type PieceResult =
  | { readonly chunks: ChunkList; readonly identity: SnapshotSource; readonly changed?: undefined }
  | { readonly chunks?: undefined; readonly changed: string }

/** Fails with `LockBusy` unless the store's lock is held for cluster job `job` (a job that was cancelled or ended holds it no more). */
const heldFor = (store: Store, job: string): Effect.Effect<void, LockBusy> =>
  Effect.suspend(() => {
    const lock = paths(store.dir).lock
    const holder = Lock.readLock(lock)?.holder
    return holder?.job === job ? Effect.void : Effect.fail(new Lock.LockBusy({ resource: store.dir, lock, holder }))
  })

/**
 * Stores `pieces` (a runner's share of cluster job `job`'s backup): cuts each into chunks,
 * seals the chunks the store lacks into packs, and writes one index file for them *staged*
 * (`index/HASH.job-JOB`): no other reader or writer sees those entries until the job's
 * {@link commitTree} renames them into place. So a segment still running after its job was
 * cancelled or failed (the lock released, maybe a prune running) changes nothing another
 * writer relies on: its packs are unindexed, and the next `prune` removes them with the
 * staged file. Takes no lock, writes no snapshot; fails with `LockBusy` when the store's
 * lock is not held for `job`: at once, before any later piece, or within 8 MiB of a piece's
 * reading. A piece whose file changed
 * while it was read, or that
 * is gone, comes back with `changed`. On failure the packs it wrote are removed. Fails with
 * `LockBusy`, `IoError`.
 */
export const storePieces = (store: Store, pieces: ReadonlyArray<Piece>, options: { readonly job: string }): Effect.Effect<{
  readonly pieces: ReadonlyArray<PieceResult>
  readonly addedChunks: number
  readonly addedBytes: number
  readonly storedBytes: number
}, LockBusy | IoError> =>
  Effect.gen(function*() {
    yield* heldFor(store, options.job)
    const w = makeWriter(store, Progress.silent)
    const results: Array<PieceResult> = []
    yield* Effect.gen(function*() {
      for (const [i, piece] of pieces.entries()) {
        // Again before each later piece, and every 8 MiB within one: a cancelled job's lock
        // goes at once, and a segment of it that is still running stops soon after (effect
        // does not interrupt a running activity), its packs removed.
        if (i > 0) yield* heldFor(store, options.job)
        const r = yield* w.chunkFile(piece.path, undefined, piece, heldFor(store, options.job)).pipe(
          Effect.catchIf((e): e is IoError => e._tag === "IoError" && e.reason === "NotFound", () => Effect.succeed({ chunks: undefined, identity: undefined, changed: "it was removed while the backup ran" }))
        )
        results.push(r.changed === undefined ? { chunks: r.chunks, identity: r.identity } : { changed: r.changed })
      }
      yield* w.finish
    }).pipe(Effect.onError(() => w.discard))
    if (w.added.size > 0) {
      w.counters.storedBytes += (yield* writeIndex(store.dir, store.keys, w.added, `${JOB_STAGED}${options.job}`)).bytes
      // This handle knows what it stored (the job's later segments on it need not store it again).
      for (const [key, loc] of w.added) store.index.set(key, loc)
    }
    return { pieces: results, addedChunks: w.added.size, addedBytes: w.counters.addedBytes, storedBytes: w.counters.storedBytes }
  })

/** A file of a distributed backup as its pieces came back (in file order). */
export interface StoredFile {
  readonly path: string
  readonly pieces: ReadonlyArray<PieceResult>
}

/**
 * Commits cluster job `job`'s backup: the job's staged index files renamed into place, then
 * the snapshot: the plan's entries, each read file's chunks from its pieces (a file whose
 * pieces saw different versions of it, or not the planned size, is recorded as changed and
 * not stored, as in {@link backup}; the device number is not compared, since each machine
 * numbers a shared mount its own way), the unchanged files' from the plan's previous
 * snapshot. Every chunk the snapshot references must be indexed and its pack present (a job
 * never publishes a snapshot it cannot restore). Runs only while the store's lock is held
 * for `job`, and uninterruptibly (a cancel waits for it). Idempotent: the snapshot's id ends
 * in `-JOB`, and a snapshot with that ending already written is returned as it is. Fails
 * with `LockBusy` (the lock is not the job's), `StoreRefused` (`"Missing"`), `IoError`.
 */
export const commitTree = (store: Store, options: {
  readonly job: string
  readonly plan: TreePlan
  readonly files: ReadonlyArray<StoredFile>
  readonly firstGeneration?: number
  readonly added: { readonly chunks: number; readonly bytes: number; readonly storedBytes: number }
}): Effect.Effect<BackupSummary, LockBusy | StoreRefused | IoError> =>
  Effect.uninterruptible(Effect.gen(function*() {
    const p = paths(store.dir)
    const { plan } = options
    const summarize = (snap: Snapshot, sealedBytes: number): BackupSummary => ({
      snapshot: snap.id,
      generation: snap.generation,
      source: snap.source.path,
      bytes: snap.bytes,
      chunks: snap.chunkCount,
      addedChunks: snap.added.chunks,
      addedBytes: snap.added.bytes,
      storedBytes: options.added.storedBytes + sealedBytes,
      unchanged: false,
      files: snap.files,
      filesRead: plan.entries.filter((e) => e.type === "file" && e.reuse !== true).length,
      changed: (snap.tree ?? []).filter((e) => e.changed !== undefined).map((e) => e.path),
      skipped: plan.skipped
    })
    const done = yield* io("read", p.snapshots, () => fs.readdirSync(p.snapshots).find((n) => n.endsWith(`-${options.job}`)))
    if (done !== undefined) return summarize(yield* readSnapshot(store, nodePath.join(p.snapshots, done)), 0)
    yield* heldFor(store, options.job)
    // The job's index files join the store (a crash between renames: the next commit renames the rest).
    const staged = yield* io("read", p.index, () => fs.readdirSync(p.index).filter((n) => n.endsWith(`${JOB_STAGED}${options.job}`)))
    for (const n of staged) yield* io("rename", nodePath.join(p.index, n), () => fs.renameSync(nodePath.join(p.index, n), nodePath.join(p.index, n.slice(0, n.indexOf(JOB_STAGED)))))
    if (staged.length > 0) yield* ChunkOutput.syncDirectory(p.index)
    yield* refresh(store)
    const all = yield* snapshots(store)
    const previous = plan.previous === undefined ? undefined : all.find((s) => s.id === plan.previous)
    if (plan.previous !== undefined && previous === undefined) return yield* new StoreRefused({ reason: "Missing", path: p.snapshots, detail: `snapshot ${plan.previous}, which unchanged files come from, is gone` })
    const before = new Map((previous?.tree ?? []).map((e) => [e.path, e]))
    const stored = new Map(options.files.map((f) => [f.path, f.pieces]))
    const sameFile = (a: SnapshotSource, b: SnapshotSource) => ChunkInput.changeOf({ ...a, dev: "0" }, { ...b, dev: "0" })
    const tree: Array<TreeEntry> = []
    for (const { reuse, ...e } of plan.entries) {
      const was = before.get(e.path)
      if (e.type !== "file") tree.push(e)
      else if (reuse === true && was?.chunks !== undefined) tree.push({ ...e, chunks: was.chunks })
      else {
        const pieces = stored.get(e.path) ?? []
        const read = pieces.flatMap((x) => (x.changed === undefined ? [x] : []))
        const changed = pieces.find((x) => x.changed !== undefined)?.changed ??
          (read.length === 0 ? "it was not read" : undefined) ??
          (read.some((x) => sameFile(read[0].identity, x.identity) !== undefined) ? "it changed between the reads of its pieces" : undefined) ??
          (read[0].identity.size !== e.size ? `its size changed from ${e.size} to ${read[0].identity.size} bytes` : undefined)
        if (changed !== undefined) tree.push({ ...e, changed })
        else {
          // As read (a file rewritten after the plan but read whole is stored as read), with
          // the plan's device number, which the next plan on the same machine compares.
          const { path: _p, dev: _d, ...now } = read[0].identity
          tree.push({ ...e, ...now, chunks: read.flatMap((x) => x.chunks) })
        }
      }
    }
    // Every referenced chunk indexed, its pack present: what a restore will need.
    const packs = new Set<string>()
    for (const e of tree) {
      for (const [key] of e.chunks ?? []) {
        const loc = store.index.get(key)
        if (loc === undefined) return yield* new StoreRefused({ reason: "Missing", path: p.index, detail: `chunk ${Buffer.from(key, "base64").toString("hex").slice(0, 16)}… of ${e.path} is in no index` })
        packs.add(loc.pack)
      }
    }
    for (const pack of packs) {
      if (!(yield* io("stat", p.pack(pack), () => fs.existsSync(p.pack(pack))))) return yield* new StoreRefused({ reason: "Missing", path: p.pack(pack), detail: "a pack the backup's chunks are in is gone" })
    }
    const generation = Math.max(options.firstGeneration ?? 1, ...all.filter((s) => s.source.path === plan.source.path).map((s) => s.generation + 1))
    const createdAt = new Date().toISOString()
    const lists = tree.flatMap((e) => (e.chunks ? [e.chunks] : []))
    const snapshot: Snapshot = {
      id: `${createdAt.replace(/[-:.]/g, "")}-${options.job}`,
      createdAt,
      source: plan.source,
      generation,
      bytes: lists.reduce((n, l) => l.reduce((m, c) => m + c[1], n), 0),
      chunkCount: lists.reduce((n, l) => n + l.length, 0),
      added: { chunks: options.added.chunks, bytes: options.added.bytes },
      files: tree.filter((e) => e.type === "file").length,
      tree
    }
    const sealed = seal(store.keys.snapshot, Buffer.from(JSON.stringify(snapshot)), SNAPSHOT_AAD)
    yield* writeDurably(nodePath.join(p.snapshots, snapshot.id), sealed)
    return summarize(snapshot, sealed.length)
  }))

/** Whether cluster job `job` wrote its snapshot into the store in `dir` (its id ends in `-JOB`; needs no key). */
export const committed = (dir: string, job: string): boolean =>
  fs.existsSync(paths(dir).snapshots) && fs.readdirSync(paths(dir).snapshots).some((n) => n.endsWith(`-${job}`))

/** The store's lock held on behalf of cluster job `job` (no process: see core's `Lock.Holder.job`). */
const jobHolder = (job: string): Lock.Holder => ({ pid: 0, host: "cage cluster", startTicks: null, token: `job-${job}`, at: new Date().toISOString(), job })

/**
 * Takes the store's writer lock in `dir` for cluster job `job`, for the job's whole run:
 * other writers (`backup`, `prune`, `forget`, another job) are refused at once with
 * `LockBusy` naming the job. Taking it again for the same job succeeds (a job retried after
 * a crash). Fails with `LockBusy`, `IoError`.
 */
export const lockForJob = (dir: string, job: string): Effect.Effect<void, LockBusy | IoError> =>
  Effect.suspend(() => {
    const lock = paths(dir).lock
    if (Lock.readLock(lock)?.holder?.job === job) return Effect.void
    return Lock.acquireOrRefuse(lock, dir, { holder: jobHolder(job) }).pipe(Effect.asVoid)
  })

/** The cluster job holding the store's lock in `dir`, if a job holds it. */
export const heldBy = (dir: string): string | undefined => Lock.readLock(paths(dir).lock)?.holder?.job

/** Releases the lock {@link lockForJob} took for `job` (nothing when another holds it). */
export const releaseJobLock = (dir: string, job: string): void => Lock.release(paths(dir).lock, jobHolder(job))

/** Reads, authenticates and checks one chunk. */
const readChunk = (store: Store, key: string, fds: Map<string, number>): Effect.Effect<Buffer, StoreRefused | PackDamaged | IoError> =>
  Effect.gen(function*() {
    const loc = store.index.get(key)
    if (loc === undefined) return yield* new StoreRefused({ reason: "Missing", path: store.dir, detail: `chunk ${Buffer.from(key, "base64").toString("hex").slice(0, 16)}… is in no index` })
    const file = paths(store.dir).pack(loc.pack)
    let fd = fds.get(loc.pack)
    if (fd === undefined) {
      // A few packs open at once (oldest closed first): a deep check of a large store
      // must not run out of descriptors.
      if (fds.size >= OPEN_PACKS) {
        const [oldest, f] = fds.entries().next().value as [string, number]
        fs.closeSync(f)
        fds.delete(oldest)
      }
      fd = yield* io("open", file, () => fs.openSync(file, "r"))
      fds.set(loc.pack, fd)
    }
    const sealed = Buffer.alloc(loc.sealedBytes)
    const f = fd
    const n = yield* io("read", file, () => fs.readSync(f, sealed, 0, loc.sealedBytes, loc.offset))
    const entry: PackEntry = { id: Buffer.from(key, "base64"), offset: loc.offset, sealedBytes: loc.sealedBytes, plainBytes: loc.plainBytes }
    return yield* Effect.try({ try: () => openBlob(loc.pack, entry, sealed.subarray(0, n), store.keys), catch: (e) => e as PackDamaged })
  })

const withFds = <A, E>(f: (fds: Map<string, number>) => Effect.Effect<A, E>) =>
  Effect.acquireUseRelease(Effect.sync(() => new Map<string, number>()), f, (fds) => Effect.sync(() => {
    for (const fd of fds.values()) fs.closeSync(fd)
  }))

/**
 * Restores snapshot `id` to `output`.
 *
 * - A file snapshot (or `path` naming one file of a tree): `<output>.partial`, fsync, then
 *   published; an existing file is refused unless `force`; `-` writes to standard output. With `range`, only the bytes
 *   `[start, end)`, reading only the chunks that hold them.
 * - A directory snapshot (or `path` naming a directory of it): the tree, with modes, mtimes
 *   and symlinks, built in `<output>.partial/` and renamed to `output` once complete; an
 *   existing `output` is refused, `force` or not (a directory is never merged into).
 *   Files that changed while they were backed up were not stored: `notRestored` names them.
 *
 * Fails with `SnapshotNotFound`, `BackupUsageError` (`"Path"`, `"Range"`), `PackDamaged`
 * (nothing is published), `StoreRefused`, `IoError`.
 */
export const restore = (store: Store, options: {
  readonly snapshot: string
  readonly output: string
  readonly range?: { readonly start: number; readonly end?: number | undefined }
  readonly path?: string
  readonly force?: boolean
  /** Told the bytes to restore, then the bytes written so far. */
  readonly progress?: Progress.ProgressReporter
}) =>
  Effect.gen(function*() {
    const file = nodePath.join(paths(store.dir).snapshots, options.snapshot)
    if (!/^[0-9A-Za-z-]+$/.test(options.snapshot) || !fs.existsSync(file)) return yield* new SnapshotNotFound({ dir: store.dir, id: options.snapshot })
    const snap = yield* readSnapshot(store, file)
    yield* refresh(store)
    if (snap.tree === undefined) {
      if (options.path !== undefined) return yield* new BackupUsageError({ reason: "Path", detail: `snapshot ${snap.id} holds one file (${snap.source.path}), not a directory: leave out the path` })
      return yield* restoreFile(store, snap.id, snap.chunks ?? [], options)
    }
    const wanted = options.path?.replace(/^\/+|\/+$/g, "")
    const entries = wanted === undefined || wanted === "" ? snap.tree : snap.tree.filter((e) => e.path === wanted || e.path.startsWith(`${wanted}/`))
    if (entries.length === 0) return yield* new BackupUsageError({ reason: "Path", detail: `no ${wanted} in snapshot ${snap.id} of ${snap.source.path}` })
    if (options.output === "-" && !(entries.length === 1 && entries[0].path === wanted && entries[0].type === "file")) {
      return yield* new BackupUsageError({ reason: "Path", detail: `only a file can be written to standard output; ${wanted ?? snap.source.path} is not one: give an output path` })
    }
    if (options.range !== undefined && !(entries.length === 1 && entries[0].path === wanted && entries[0].type === "file")) {
      return yield* new BackupUsageError({ reason: "Range", detail: "a range applies to one file: name it with a path" })
    }
    if (entries.length === 1 && entries[0].path === wanted && entries[0].type === "symlink") {
      const link = entries[0]
      // One symlink: made as `output` itself, never over an existing file.
      yield* io("create", options.output, () => fs.symlinkSync(link.target ?? "", options.output))
      return { snapshot: snap.id, output: options.output, bytes: 0, chunksRead: 0, notRestored: [] as ReadonlyArray<string> }
    }
    const single = entries.length === 1 && entries[0].path === wanted && entries[0].type === "file" ? entries[0] : undefined
    if (single !== undefined) {
      if (single.chunks === undefined) return yield* new BackupUsageError({ reason: "Path", detail: `${wanted} changed while it was backed up (${single.changed}): snapshot ${snap.id} did not store it` })
      return yield* restoreFile(store, snap.id, single.chunks, options)
    }
    return yield* restoreTree(store, snap, entries, wanted ?? "", options.output, options.progress ?? Progress.silent)
  })

const restoreFile = (store: Store, id: string, chunks: ChunkList, options: {
  readonly output: string
  readonly range?: { readonly start: number; readonly end?: number | undefined }
  readonly force?: boolean
  readonly progress?: Progress.ProgressReporter
}) =>
  Effect.gen(function*() {
    const size = chunks.reduce((n, c) => n + c[1], 0)
    const start = options.range?.start ?? 0
    const end = options.range?.end ?? size
    const progress = options.progress ?? Progress.silent
    if (start < 0 || end > size || start > end) return yield* new BackupUsageError({ reason: "Range", detail: `${start}:${end} is not within the ${size} bytes of the file` })
    const out = options.output === "-" ? ChunkOutput.toStream(process.stdout) : ChunkOutput.toFile(options.output, { overwrite: options.force ?? false })
    yield* out.open()
    let chunksRead = 0
    let written = 0
    progress.start(end - start, 0)
    const write = withFds((fds) =>
      Effect.gen(function*() {
        let at = 0
        for (const [key, length] of chunks) {
          const from = at
          at += length
          if (at <= start || from >= end) continue
          const bytes = yield* readChunk(store, key, fds)
          chunksRead++
          const piece = bytes.subarray(Math.max(0, start - from), Math.min(length, end - from))
          yield* out.write([piece])
          written += piece.length
          progress.update(written, written)
        }
      })
    )
    yield* Effect.andThen(write, out.commit()).pipe(Effect.onError(() => out.abort({ keepPartial: false })), Effect.ensuring(Effect.sync(() => progress.stop())))
    return { snapshot: id, output: options.output, bytes: end - start, chunksRead, notRestored: [] as ReadonlyArray<string> }
  })

const restoreTree = (store: Store, snap: Snapshot, entries: ReadonlyArray<TreeEntry>, base: string, output: string, progress: Progress.ProgressReporter) =>
  Effect.gen(function*() {
    // One writer per output, as for files: a second restore to it is refused at once.
    return yield* Effect.acquireUseRelease(
      Lock.acquireOrRefuse(ChunkOutput.lockPath(output), output),
      () => restoreTreeClaimed(store, snap, entries, base, output, progress).pipe(Effect.ensuring(Effect.sync(() => progress.stop()))),
      (holder) => Effect.sync(() => Lock.release(ChunkOutput.lockPath(output), holder))
    )
  })

const restoreTreeClaimed = (store: Store, snap: Snapshot, entries: ReadonlyArray<TreeEntry>, base: string, output: string, progress: Progress.ProgressReporter) =>
  Effect.gen(function*() {
    progress.start(entries.reduce((n, e) => (e.chunks ?? []).reduce((m, c) => m + c[1], n), 0), 0)
    if (fs.existsSync(output)) return yield* Effect.fail(fromSystemError("create", output, Object.assign(new Error("exists"), { code: "EEXIST" })))
    const staging = `${output}.partial`
    // A leftover staging directory is Cage's own, from an interrupted restore: start it over.
    yield* io("create", staging, () => {
      fs.rmSync(staging, { recursive: true, force: true })
      fs.mkdirSync(staging, { mode: 0o700 })
    })
    const under = (e: TreeEntry) => nodePath.join(staging, base === "" ? e.path : e.path.slice(base.length + 1))
    const notRestored: Array<string> = []
    let bytes = 0
    let chunksRead = 0
    // Node takes times as seconds in a double, which holds a time of today to about 0.24 µs:
    // the whole microsecond alone could come back just below it, and a time 0.1 µs past a
    // millisecond would be restored in the millisecond before. Half a microsecond over it
    // keeps the microsecond (so the millisecond and the second) the source had.
    const seconds = (ns: string) => (Number(BigInt(ns) / 1000n) + 0.5) / 1e6
    const build = withFds((fds) =>
      Effect.gen(function*() {
        for (const e of entries) {
          const target = under(e)
          if (e.path === base && e.type === "dir") continue // the root: `staging` itself
          if (e.type === "dir") yield* io("create", target, () => fs.mkdirSync(target, { mode: 0o700 }))
          else if (e.type === "symlink") yield* io("create", target, () => fs.symlinkSync(e.target ?? "", target))
          else if (e.chunks === undefined) notRestored.push(e.path)
          else {
            const chunks = e.chunks
            // Not try/finally: a failure yielded inside Effect.gen skips its `finally`.
            yield* Effect.acquireUseRelease(
              io("create", target, () => fs.openSync(target, "wx", 0o600)),
              (fd) =>
                Effect.gen(function*() {
                  for (const [key] of chunks) {
                    const b = yield* readChunk(store, key, fds)
                    chunksRead++
                    bytes += b.length
                    yield* io("write", target, () => fs.writeSync(fd, b))
                    progress.update(bytes, bytes)
                  }
                  yield* io("sync", target, () => fs.fsyncSync(fd))
                }),
              (fd) => Effect.sync(() => fs.closeSync(fd))
            )
            yield* io("chmod", target, () => fs.chmodSync(target, e.mode & 0o7777))
            yield* io("utimes", target, () => fs.utimesSync(target, seconds(e.mtimeNs), seconds(e.mtimeNs)))
          }
          if (e.type === "symlink") yield* io("utimes", target, () => fs.lutimesSync(target, seconds(e.mtimeNs), seconds(e.mtimeNs)))
        }
        // Directories last, deepest first: writing into a directory changes its mtime.
        const root = entries.find((e) => e.path === base && e.type === "dir")
        const dirs = entries.filter((e) => e.type === "dir" && e !== root).reverse()
        for (const d of [...dirs, ...(root ? [root] : [{ ...snap.source, path: "", type: "dir" as const }])]) {
          const target = d.path === base || d.path === "" ? staging : under(d)
          yield* io("chmod", target, () => fs.chmodSync(target, d.mode & 0o7777))
          yield* io("utimes", target, () => fs.utimesSync(target, seconds(d.mtimeNs), seconds(d.mtimeNs)))
        }
      })
    )
    // Every directory durable (deepest first) before the tree is published under its name.
    const syncDirs = Effect.gen(function*() {
      const dirs = entries.filter((e) => e.type === "dir" && e.path !== base).map(under).reverse()
      for (const d of [...dirs, staging]) yield* ChunkOutput.syncDirectory(d)
    })
    const publish = Effect.andThen(syncDirs, io("rename", output, () => fs.renameSync(staging, output)))
    yield* Effect.andThen(build, publish).pipe(Effect.onError(() => Effect.sync(() => fs.rmSync(staging, { recursive: true, force: true }))))
    yield* ChunkOutput.syncDirectory(nodePath.dirname(nodePath.resolve(output)))
    return { snapshot: snap.id, output, bytes, chunksRead, notRestored }
  })

/** A snapshot that uses a chunk: its id, source, generation, and the path in its tree (absent for a file snapshot). */
export interface ChunkUse {
  readonly snapshot: string
  readonly source: string
  readonly generation: number
  readonly path?: string
}

/** What `check` found: every damaged or missing chunk, with the snapshots (and paths in them) that use it. */
export interface CheckReport {
  /** Snapshots checked. */
  readonly snapshots: number
  /** Index files that do not authenticate (their chunks count as missing; `recover` rebuilds them). */
  readonly badIndexFiles: ReadonlyArray<string>
  /** Distinct chunks referenced. */
  readonly chunks: number
  /** Plaintext bytes of those chunks. */
  readonly bytes: number
  readonly problems: ReadonlyArray<{
    /** The chunk id, hex. */
    readonly chunk: string
    readonly kind: "missing" | "damaged"
    readonly detail: string
    /** Ids of the snapshots that use it. */
    readonly snapshots: ReadonlyArray<string>
    readonly uses: ReadonlyArray<ChunkUse>
  }>
}

/**
 * Checks that every chunk a snapshot references (every snapshot's, or only those whose ids
 * are in `snapshots`) is in the index and, with `deep`, that it reads back and authenticates
 * as itself. Reports each problem once, naming the snapshots and the paths in them that use
 * the chunk. Fails only on a store it cannot read (`StoreRefused`, `IoError`).
 */
export const check = (store: Store, options: { readonly deep?: boolean; readonly snapshots?: ReadonlyArray<string> } = {}): Effect.Effect<CheckReport, StoreRefused | IoError> =>
  Effect.gen(function*() {
    const { index, bad } = yield* loadIndexFiles(store.dir, store.keys)
    replaceIndex(store, index)
    const only = options.snapshots === undefined ? undefined : new Set(options.snapshots)
    const all = (yield* snapshots(store)).filter((s) => only === undefined || only.has(s.id))
    const users = new Map<string, Array<ChunkUse>>()
    const plainBytes = new Map<string, number>()
    const use = (key: string, length: number, u: ChunkUse) => {
      const list = users.get(key)
      if (list === undefined) {
        users.set(key, [u])
        plainBytes.set(key, length)
      } else if (list.at(-1)?.snapshot !== u.snapshot || list.at(-1)?.path !== u.path) list.push(u)
    }
    for (const s of all) {
      const base = { snapshot: s.id, source: s.source.path, generation: s.generation }
      if (s.tree === undefined) for (const [key, length] of s.chunks ?? []) use(key, length, base)
      else for (const e of s.tree) for (const [key, length] of e.chunks ?? []) use(key, length, { ...base, path: e.path })
    }
    const problems: Array<CheckReport["problems"][number]> = []
    const report = (hex: string, kind: "missing" | "damaged", detail: string, uses: ReadonlyArray<ChunkUse>) =>
      problems.push({ chunk: hex, kind, detail, snapshots: [...new Set(uses.map((u) => u.snapshot))], uses })
    yield* withFds((fds) =>
      Effect.forEach([...users.keys()], (key) => {
        const hex = Buffer.from(key, "base64").toString("hex")
        const uses = users.get(key)!
        if (!store.index.has(key)) return Effect.sync(() => report(hex, "missing", "in no index", uses))
        if (options.deep !== true) return Effect.void
        // A damaged blob, or a pack that is gone or unreadable: reported, and the check goes on.
        return readChunk(store, key, fds).pipe(
          Effect.asVoid,
          Effect.catchTags({
            PackDamaged: (e) => Effect.sync(() => report(hex, "damaged", e.message, uses)),
            IoError: (e) => Effect.sync(() => report(hex, "damaged", e.message, uses))
          })
        )
      }, { discard: true })
    )
    let bytes = 0
    for (const n of plainBytes.values()) bytes += n
    return { snapshots: all.length, badIndexFiles: bad, chunks: users.size, bytes, problems }
  })

/** Runs `f` holding the store's writer lock (refused at once with `LockBusy` when held). */
const locked = <A, E>(store: Store, f: Effect.Effect<A, E>): Effect.Effect<A, E | LockBusy | IoError> =>
  Effect.acquireUseRelease(
    Lock.acquireOrRefuse(paths(store.dir).lock, store.dir),
    () => f,
    (holder) => Effect.sync(() => Lock.release(paths(store.dir).lock, holder))
  )

/** Deletes `files` and makes their removal durable (directory fsync). */
const removeDurably = (files: ReadonlyArray<string>): Effect.Effect<void, IoError> =>
  Effect.gen(function*() {
    const dirs = new Set<string>()
    for (const f of files) {
      yield* io("unlink", f, () => fs.rmSync(f, { force: true }))
      dirs.add(nodePath.dirname(f))
    }
    for (const d of dirs) yield* ChunkOutput.syncDirectory(d)
  })

/**
 * Deletes the snapshots `policy` does not keep, per source (the same policies as
 * generations: `Retention.parsePolicy`), as of `now` (ms since the epoch). Each source's
 * newest snapshot is always kept, whatever the policy (as for generations, a source is
 * never left with no backup). The chunks only the removed snapshots used stay in the
 * store until {@link prune}. With `dryRun`, reports and deletes nothing; with `source`, only
 * that source's snapshots are considered. Returns the snapshots removed and kept.
 */
export const forget = (store: Store, options: {
  readonly policy: RetentionPolicy
  readonly now?: number
  readonly dryRun?: boolean
  readonly source?: string
  /** Generations of the same sources kept elsewhere (full copies), by resolved path: counted by the policy, never deleted here. */
  readonly elsewhere?: ReadonlyMap<string, ReadonlyArray<{ readonly id: string; readonly generation: number; readonly createdAt: string }>>
}) =>
  locked(store, Effect.gen(function*() {
    const only = options.source === undefined ? undefined : nodePath.resolve(options.source)
    const all = (yield* snapshots(store)).filter((s) => only === undefined || s.source.path === only)
    const bySource = new Map<string, Array<Snapshot>>()
    for (const s of all) bySource.set(s.source.path, [...(bySource.get(s.source.path) ?? []), s])
    const keep = new Set<string>()
    for (const [source, list] of bySource) {
      const others = (options.elsewhere?.get(source) ?? []).map((o) => ({ ...o, status: "complete" as const }))
      const kept = Retention.kept(options.policy, [...list.map((s) => ({ id: s.id, generation: s.generation, status: "complete" as const, createdAt: s.createdAt })), ...others], options.now ?? Date.now())
      for (const id of kept) keep.add(id)
      keep.add(list.reduce((a, b) => (b.generation > a.generation ? b : a)).id)
    }
    const removed = all.filter((s) => !keep.has(s.id))
    if (options.dryRun !== true) yield* removeDurably(removed.map((s) => nodePath.join(paths(store.dir).snapshots, s.id)))
    return { removed, kept: all.filter((s) => keep.has(s.id)) }
  }))

/** Wipes the store's derived keys (zeroes them): `store` cannot be used afterwards. */
export const close = (store: Store): void => wipeStoreKeys(store.keys)

/** True when `dir` holds a chunk store (its `config.json`); needs no key. */
export const exists = (dir: string): boolean => fs.existsSync(paths(dir).config)

/** What `prune` did. */
export interface PruneSummary {
  /** Packs deleted: wholly unreferenced, unindexed (left by an interrupted backup), or repacked. */
  readonly packsDeleted: number
  /** Packs whose live chunks were copied into new packs. */
  readonly packsRepacked: number
  readonly packsWritten: number
  /** Chunks no snapshot references any more, now gone. */
  readonly chunksRemoved: number
  /** Bytes of packs deleted minus bytes of packs written. */
  readonly bytesFreed: number
}

/**
 * Removes what no snapshot references: packs none of whose chunks is used are deleted, and
 * packs where at least `repackGarbage` (default 0.5) of the bytes are unused are repacked
 * (their live chunks copied into new packs). Safe under `kill -9` at any point: new packs
 * are durable before the one new index file that lists every live chunk, which is durable
 * before the old index files go, which go before any pack is deleted. Holds the writer lock.
 */
export const prune = (store: Store, options: { readonly repackGarbage?: number } = {}): Effect.Effect<PruneSummary, StoreRefused | PackDamaged | LockBusy | IoError> =>
  locked(store, Effect.gen(function*() {
    const p = paths(store.dir)
    const threshold = options.repackGarbage ?? 0.5
    const live = new Set<string>()
    for (const s of yield* snapshots(store)) for (const list of chunkListsOf(s)) for (const [key] of list) live.add(key)
    const { index, files: oldIndexFiles, bad } = yield* loadIndexFiles(store.dir, store.keys)
    // Packs listed only by an unreadable index file would look unreferenced: never delete
    // them; `recover` rebuilds the index from the packs first.
    if (bad.length > 0) return yield* new StoreRefused({ reason: "Corrupt", path: bad[0], detail: `an index file that does not authenticate (${bad.length} in all): run recover before prune` })
    // Nor when a chunk a snapshot uses is in no index: its pack would look unreferenced and
    // be deleted, where `recover` can still find it.
    let missing = 0
    for (const key of live) if (!index.has(key)) missing++
    if (missing > 0) return yield* new StoreRefused({ reason: "Missing", path: p.index, detail: `${missing} chunk${missing === 1 ? "" : "s"} that snapshots use ${missing === 1 ? "is" : "are"} in no index: run recover before prune (it rebuilds the index from the packs)` })
    replaceIndex(store, index)
    const packFiles = yield* io("read", p.packs, () =>
      fs.readdirSync(p.packs, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => nodePath.join(e.parentPath, e.name)))
    const packBytes = new Map<string, number>()
    for (const f of packFiles) if (!f.endsWith(".partial")) packBytes.set(nodePath.basename(f), yield* io("stat", f, () => fs.statSync(f).size))
    // Per pack: the bytes of its blobs still used (each chunk counts in the one pack the index points to).
    const usedBytes = new Map<string, number>()
    let chunksRemoved = 0
    for (const [key, loc] of index) {
      if (live.has(key)) usedBytes.set(loc.pack, (usedBytes.get(loc.pack) ?? 0) + loc.sealedBytes)
      else chunksRemoved++
    }
    const repack = [...packBytes].filter(([id, size]) => (usedBytes.get(id) ?? 0) > 0 && 1 - (usedBytes.get(id) ?? 0) / size >= threshold).map(([id]) => id)
    const repacking = new Set(repack)
    // The live chunks, where they will be: unchanged, or copied into new packs.
    const next = new Map<string, Location>()
    let pack = new PackWriter(store.keys, store.packBytes + 2 * store.chunker.avgBytes)
    let written = 0
    let writtenBytes = 0
    const flush = Effect.suspend(() => {
      if (pack.count === 0) return Effect.void
      const finished = pack.finish()
      pack = new PackWriter(store.keys, store.packBytes + 2 * store.chunker.avgBytes)
      return writeDurably(p.pack(finished.packId), finished.bytes).pipe(Effect.tap(() => {
        written++
        writtenBytes += finished.bytes.length
        for (const e of finished.entries) next.set(e.id.toString("base64"), { pack: finished.packId, offset: e.offset, sealedBytes: e.sealedBytes, plainBytes: e.plainBytes })
        return Effect.void
      }))
    })
    yield* withFds((fds) =>
      Effect.gen(function*() {
        for (const [key, loc] of index) {
          if (!live.has(key)) continue
          if (!repacking.has(loc.pack)) {
            next.set(key, loc)
            continue
          }
          pack.add(Buffer.from(key, "base64"), yield* readChunk(store, key, fds))
          if (pack.bytes >= store.packBytes) yield* flush
        }
        yield* flush
      })
    )
    // One index file lists every live chunk; then the old ones go; then the packs.
    const changed = repack.length > 0 || chunksRemoved > 0 || oldIndexFiles.length > 1
    if (changed) {
      const fresh = yield* writeIndex(store.dir, store.keys, next)
      yield* removeDurably(oldIndexFiles.filter((f) => f !== fresh.path))
    }
    const stillUsed = new Set([...next.values()].map((l) => l.pack))
    const doomed = packFiles.filter((f) => f.endsWith(".partial") || !stillUsed.has(nodePath.basename(f)))
    // Staging files an interrupted write left (never referenced: only renamed files are).
    // (Also the staged index files of cluster jobs that never committed: prune holds the
    // lock, so no job is running; their packs went above as unindexed.)
    const leftovers = yield* io("read", store.dir, () =>
      [p.index, p.snapshots].flatMap((d) => fs.readdirSync(d).filter((n) => n.endsWith(".partial") || (d === p.index && n.includes(JOB_STAGED))).map((n) => nodePath.join(d, n))))
    yield* removeDurably(leftovers)
    const freed = doomed.reduce((n, f) => n + (packBytes.get(nodePath.basename(f)) ?? 0), 0)
    yield* removeDurably(doomed)
    replaceIndex(store, next)
    return { packsDeleted: doomed.filter((f) => !f.endsWith(".partial")).length, packsRepacked: repack.length, packsWritten: written, chunksRemoved, bytesFreed: freed - writtenBytes } satisfies PruneSummary
  }))

/** What `recover` found. */
export interface RecoverSummary {
  readonly packs: number
  readonly chunks: number
  /** Packs whose table does not read back (their chunks cannot be indexed): pack id and why. */
  readonly damagedPacks: ReadonlyArray<{ readonly pack: string; readonly detail: string }>
}

/**
 * Rebuilds the index from the packs' own tables (for a lost or damaged `index/`): writes one
 * index file listing every chunk of every pack whose table authenticates, then removes the
 * old index files. Holds the writer lock.
 */
export const recover = (store: Store): Effect.Effect<RecoverSummary, LockBusy | IoError> =>
  locked(store, Effect.gen(function*() {
    const p = paths(store.dir)
    const files = yield* io("read", p.packs, () =>
      fs.readdirSync(p.packs, { recursive: true, withFileTypes: true }).filter((e) => e.isFile() && !e.name.endsWith(".partial")).map((e) => nodePath.join(e.parentPath, e.name)))
    const next = new Map<string, Location>()
    const damagedPacks: Array<{ pack: string; detail: string }> = []
    // What readable index files say stays (for packs still there): a pack whose table is
    // damaged may still hold intact chunks they locate.
    const present = new Set(files.map((f) => nodePath.basename(f)))
    for (const [key, loc] of yield* loadIndex(store.dir, store.keys)) if (present.has(loc.pack)) next.set(key, loc)
    for (const file of files.sort()) {
      const pack = nodePath.basename(file)
      const bytes = yield* io("read", file, () => fs.readFileSync(file))
      try {
        for (const e of readTable(pack, bytes, store.keys)) {
          const key = e.id.toString("base64")
          if (!next.has(key)) next.set(key, { pack, offset: e.offset, sealedBytes: e.sealedBytes, plainBytes: e.plainBytes })
        }
      } catch (e) {
        damagedPacks.push({ pack, detail: (e as PackDamaged).detail ?? String(e) })
      }
    }
    const old = yield* io("read", p.index, () => fs.readdirSync(p.index).map((n) => nodePath.join(p.index, n)))
    const fresh = yield* writeIndex(store.dir, store.keys, next)
    yield* removeDurably(old.filter((f) => f !== fresh.path))
    replaceIndex(store, next)
    return { packs: files.length, chunks: next.size, damagedPacks }
  }))

export { open_ as open }
