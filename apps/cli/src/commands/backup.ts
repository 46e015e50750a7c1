/**
 * `cage backup create|resume|verify|restore|list|prune|recover`: backups in a backup
 * directory (see @cage/backup).
 *
 * Two kinds of generation live there, numbered together per source:
 * - the chunk store (the default since issue 21): each distinct content-defined chunk is
 *   stored once, so a generation costs only what changed; files and directory trees; every
 *   command on it needs the key (its snapshots are sealed);
 * - full copies (`backup create --copy`, the format before the store): one AGCM file per
 *   generation with a chunk manifest; still listed, verified, restored and pruned.
 *
 * Key options as for `cage encrypt` (`--key FILE`, `--passphrase-file FILE`, or a terminal
 * prompt). Settings from cage.toml: `[backup] dir`, `retention`, `manifest_threshold`; `[audit] log`.
 *
 * @module
 */
import { AUDIT_VERSION, type AuditWriter, now, record, table } from "@cage/audit"
import {
  agcmCipher,
  create,
  type Generation,
  GenerationNotFound,
  list,
  parsePolicy,
  parseRange,
  prune,
  recover,
  restore,
  resume,
  Store,
  verifyReport,
  BackupDamaged,
  type BackupUsageError
} from "@cage/backup"
import type { KeyMaterial } from "@cage/agcm"
import { fromSystemError, Size } from "@cage/core"
import { Effect, Option } from "effect"
import * as ProgressBar from "../ProgressBar.js"
import { Argument, Command, Flag } from "effect/cli"
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { loadSettings, type Settings } from "../Config.js"
import { ExitCode, usage, UserFacing } from "../Errors.js"
import { audited, auditLogFlag, openAudit } from "../AuditTrail.js"
import { commonFlags } from "../Flags.js"
import { changedNotStored, counted, note, printJson, refuseReadFiles, resolveLimitRate, setInterruptNote, skippedNotes } from "../Io.js"
import { keyMaterial, wipe } from "../Keys.js"

const file = Argument.String("file").pipe(Argument.withDescription("The source file (as given to backup create)"))
const dirFlag = Flag.String("dir").pipe(Flag.withDescription("Backup directory (default: [backup] dir in cage.toml, else ./.cage-backups)"), Flag.optional)
const generationFlag = Flag.Int("generation").pipe(Flag.withAlias("g"), Flag.withDescription("Generation number (default: the newest complete one)"), Flag.optional)
const json = Flag.Boolean("json").pipe(Flag.withDescription("Machine-readable JSON on stdout"), Flag.withDefault(false))
const quiet = Flag.Boolean("quiet").pipe(Flag.withAlias("q"), Flag.withDescription("No progress bar or notes"), Flag.withDefault(false))
const workers = Flag.Int("workers").pipe(Flag.withDescription("Worker threads for cipher and hashing (default: available cores)"), Flag.optional)

const backupDir = (flag: Option.Option<string>, settings: Settings) => Option.getOrUndefined(flag) ?? settings.backupDir.value ?? ".cage-backups"

/** Writes a `backup` outcome to the audit log, if any. */
const auditOutcome = (writer: AuditWriter | undefined, o: { operation: string; source: string; generation: number | null; ok: boolean; bytes: number | null; durationMs: number; error: string | null }) =>
  Effect.sync(() => writer && record(writer, { v: AUDIT_VERSION, at: now(), type: "backup", ...o }))

/** Runs `body` with the audit writer open, records the outcome, closes the writer. */
const withAudit = <A, E>(
  f: { auditLog: Option.Option<string> },
  settings: Settings,
  operation: string,
  source: string,
  body: (writer: AuditWriter | undefined) => Effect.Effect<A, E>,
  outcome: (a: A) => { generation: number | null; bytes: number | null }
) =>
  Effect.gen(function*() {
    const writer = yield* openAudit(f.auditLog, settings)
    const started = Date.now()
    return yield* body(writer).pipe(
      Effect.tap((a) => auditOutcome(writer, { operation, source: nodePath.resolve(source), ...outcome(a), ok: true, durationMs: Date.now() - started, error: null })),
      Effect.tapError((e) => auditOutcome(writer, { operation, source: nodePath.resolve(source), generation: null, bytes: null, ok: false, durationMs: Date.now() - started, error: String((e as { message?: unknown }).message ?? e) })),
      Effect.ensuring(Effect.sync(() => writer?.close()))
    )
  })

const keyFlags = { key: commonFlags.key, passphraseFile: commonFlags.passphraseFile }

const createFlags = {
  ...keyFlags,
  dir: dirFlag,
  copy: Flag.Boolean("copy").pipe(Flag.withDescription("Write a full encrypted copy (one AGCM file with a chunk manifest, the format before the chunk store) instead of storing only new chunks"), Flag.withDefault(false)),
  rehash: Flag.Boolean("rehash").pipe(Flag.withDescription("Read every file, even those whose size, times and inode match the previous generation"), Flag.withDefault(false)),
  name: Flag.String("name").pipe(Flag.withDescription("With - (standard input): the name its generations are listed and restored under, e.g. db.sql"), Flag.optional),
  chunkSize: Flag.String("chunk-size").pipe(Flag.withDescription("--copy: plaintext bytes per chunk (AGCM: power of two, 16KiB..4MiB; default 64KiB)"), Flag.optional),
  manifest: Flag.Boolean("manifest").pipe(Flag.withDescription("--copy: write per-chunk digests whatever the size"), Flag.withDefault(false)),
  manifestThreshold: Flag.String("manifest-threshold").pipe(Flag.withDescription("--copy: per-chunk digests from this source size up (default 0: every source; or [backup] manifest_threshold)"), Flag.optional),
  workers,
  limitRate: commonFlags.limitRate,
  auditLog: auditLogFlag,
  json,
  quiet,
  file: Argument.String("path").pipe(Argument.withDescription("The file or directory to back up"))
}

type CreateFlags = {
  limitRate: Option.Option<string>
  key: Option.Option<string>
  passphraseFile: Option.Option<string>
  dir: Option.Option<string>
  copy: boolean
  rehash: boolean
  name: Option.Option<string>
  chunkSize: Option.Option<string>
  manifest: boolean
  manifestThreshold: Option.Option<string>
  workers: Option.Option<number>
  auditLog: Option.Option<string>
  json: boolean
  quiet: boolean
  file: string
}

/** The complete full-copy generations of `source` (an empty list when there are none). */
const copiesOf = (dir: string, source: string) =>
  list({ dir, source }).pipe(Effect.map((gs) => gs.filter((g) => g.status === "complete")))

/** Which flag gave the key, for messages: the key file, the passphrase file, or the prompt. */
const keySource = (f: { key: Option.Option<string>; passphraseFile: Option.Option<string> }) =>
  Option.getOrElse(f.key, () => Option.getOrElse(f.passphraseFile, () => "the passphrase"))

/** Opens the chunk store in `dir` with `key` (not wiped here: the caller's). */
const openStoreWith = (dir: string, key: KeyMaterial, f: { key: Option.Option<string>; passphraseFile: Option.Option<string> }) =>
  Store.open({ dir, key }).pipe(
    Effect.tap((store) => Effect.sync(() => opened.push(store))),
    Effect.mapError((e) =>
      e._tag === "StoreRefused" && e.reason === "Key"
        ? new UserFacing({ detail: `${keySource(f)} does not open the backup store in ${dir}: ${e.detail}`, exitCode: ExitCode.Integrity, cause: e })
        : e
    )
  )

/**
 * Opens the chunk store in `dir` with the key the flags give (prompting on a terminal; twice
 * when the store is created with a passphrase). The key material is wiped once open.
 */
const openStore = (dir: string, f: { key: Option.Option<string>; passphraseFile: Option.Option<string> }) =>
  Effect.gen(function*() {
    const key = yield* keyMaterial(f, !Store.exists(dir))
    return yield* openStoreWith(dir, key, f).pipe(Effect.ensuring(wipe(key)))
  })

// Stores this run opened: their derived keys are wiped when the command ends (`closingStores`).
const opened: Array<Store.Store> = []

/** Runs a command's body, then wipes the keys of every store it opened, whatever the outcome. */
const closingStores = <A, E, R>(body: Effect.Effect<A, E, R>) =>
  body.pipe(Effect.ensuring(Effect.sync(() => {
    for (const s of opened.splice(0)) Store.close(s)
  })))

/** The highest generation number of `source` anywhere in `dir` (full copies, partial ones too, and the store's), 0 when none. */
const newestNumber = (dir: string, source: string, store: Store.Store | undefined) =>
  Effect.gen(function*() {
    const path = nodePath.resolve(source)
    const copies = (yield* list({ dir, source })).map((g) => g.generation)
    const stored = store === undefined ? [] : (yield* Store.snapshots(store)).filter((s) => s.source.path === path).map((s) => s.generation)
    return Math.max(0, ...copies, ...stored)
  })

const runCreate = (mode: "create" | "resume") => (f: CreateFlags) =>
  closingStores(Effect.gen(function*() {
    if (mode === "create" && !f.copy) yield* runStoreCreate(f)
    else yield* runCopyCreate(mode)(f)
  }))

/** `backup create PATH`: a generation in the chunk store. */
const runStoreCreate = (f: CreateFlags) =>
  Effect.gen(function*() {
    const settings = yield* loadSettings
    const dir = backupDir(f.dir, settings)
    for (const [given, flag] of [[Option.isSome(f.chunkSize), "--chunk-size"], [f.manifest, "--manifest"], [Option.isSome(f.manifestThreshold), "--manifest-threshold"], [Option.isSome(f.limitRate), "--limit-rate"], [Option.isSome(f.workers), "--workers"]] as const) {
      if (given) return yield* usage("Option", `${flag} applies to full copies: add --copy, or leave it out (the chunk store cuts content-defined chunks of 512 KiB to 8 MiB)`)
    }
    const stdin = f.file === "-"
    if (stdin && Option.isNone(f.name)) return yield* usage("Option", "backup create - reads standard input: give --name NAME, the name its generations are listed and restored under (e.g. --name db.sql)")
    if (!stdin && Option.isSome(f.name)) return yield* usage("Option", `--name names standard input (backup create - --name NAME); ${f.file} is backed up under its own path`)
    if (stdin && Option.getOrElse(f.name, () => "").trim() === "") return yield* usage("Option", "--name: give a non-empty name, e.g. --name db.sql")
    if (stdin && f.rehash) return yield* usage("Option", "--rehash applies to files: standard input is always read")
    const source = stdin ? Option.getOrThrow(f.name) : f.file
    if (!stdin) {
      const st = yield* Effect.try({ try: () => fs.statSync(f.file), catch: (e) => fromSystemError("stat", f.file, e) })
      if (!st.isFile() && !st.isDirectory()) return yield* usage("Input", `${f.file} is neither a regular file nor a directory`)
    }
    const store = yield* openStore(dir, f)
    // After every generation of the source, full copies included (also an interrupted one, which resume may still complete).
    const firstGeneration = (yield* newestNumber(dir, source, undefined)) + 1
    const started = Date.now()
    const r = yield* withAudit(f, settings, "create", source, () =>
      Store.backup(store, {
        source, rehash: f.rehash, firstGeneration,
        progress: ProgressBar.terminal({ quiet: f.quiet || f.json, label: "backup" }),
        ...(stdin ? { input: process.stdin } : {})
      }),
      (r) => ({ generation: r.generation, bytes: r.storedBytes })
    )
    if (f.json) yield* printJson({ operation: "backup-create", format: "store", dir, durationMs: Date.now() - started, ...r })
    else {
      const what = r.files !== undefined
        ? `${counted(r.files, "file")}${r.filesRead === r.files ? "" : ` (${r.filesRead} read, ${r.files - (r.filesRead ?? 0)} unchanged and not read)`}, ${Size.format(r.bytes)}`
        : r.unchanged ? `${Size.format(r.bytes)}, unchanged since the previous generation (not read)` : Size.format(r.bytes)
      yield* note(f.quiet, `stored generation ${r.generation} of ${stdin ? `standard input as ${source}` : f.file} in ${dir}: ${what}; ${counted(r.chunks, "chunk")}, ${r.addedChunks} new (${Size.format(r.addedBytes)} of new data, ${Size.format(r.storedBytes)} written) in ${Date.now() - started} ms`)
      yield* skippedNotes(f.quiet, f.file, r.skipped ?? [])
    }
    yield* changedNotStored(r.generation, f.file, r.changed ?? [])
  })

const runCopyCreate = (mode: "create" | "resume") => (f: CreateFlags) =>
  Effect.gen(function*() {
    const settings = yield* loadSettings
    const dir = backupDir(f.dir, settings)
    if (f.rehash) return yield* usage("Option", "--rehash applies to the chunk store: a full copy reads the whole file anyway")
    if (Option.isSome(f.name) || f.file === "-") return yield* usage("Option", "a full copy (--copy) reads a file, not standard input: leave out --copy to back up standard input into the store (with --name NAME)")
    const chunkSize = Option.isSome(f.chunkSize) ? Size.parse(f.chunkSize.value) : settings.chunkSize.value
    if (Option.isSome(f.chunkSize) && chunkSize === undefined) return yield* usage("Option", `--chunk-size: "${f.chunkSize.value}" is not a size`)
    const threshold = Option.isSome(f.manifestThreshold) ? Size.parse(f.manifestThreshold.value) : settings.manifestThreshold.value
    if (threshold === undefined) return yield* usage("Option", `--manifest-threshold: "${Option.getOrElse(f.manifestThreshold, () => "")}" is not a size`)
    const w = Option.getOrUndefined(f.workers) ?? settings.workers.value
    const limitRate = yield* resolveLimitRate(f.limitRate, settings)
    const key = yield* keyMaterial(f, mode === "create" && !Store.exists(dir))
    // A new full copy is numbered after the store's generations of the source too: the
    // store opens with the same key (one key per backup directory).
    const firstGeneration = mode === "create" && Store.exists(dir)
      ? (yield* newestNumber(dir, f.file, yield* openStoreWith(dir, key, f).pipe(Effect.tapError(() => wipe(key))))) + 1
      : undefined
    yield* setInterruptNote(`run \`cage backup resume ${f.file}\` (same key and --dir) to complete the generation`)
    const cipher = agcmCipher(key, { ...(chunkSize !== undefined ? { chunkSize } : {}), ...(w !== undefined ? { workers: w } : {}) })
    const options = {
      source: f.file, dir, cipher, manifestThreshold: threshold, limitRate, ...(f.manifest ? { chunkManifest: true } : {}),
      ...(firstGeneration !== undefined ? { firstGeneration } : {}),
      ...(w !== undefined ? { hashWorkers: w } : {}), progress: ProgressBar.terminal({ quiet: f.quiet || f.json, label: `backup ${mode}` }),
      hashProgress: ProgressBar.terminal({ quiet: f.quiet || f.json, label: "manifest" })
    }
    const r = yield* withAudit(f, settings, mode, f.file, (writer) =>
      audited(writer, { operation: `backup-${mode}`, strategy: "native" }, mode === "create" ? create(options) : resume(options)),
      (r) => ({ generation: r.generation.generation, bytes: r.summary.outputBytes })
    ).pipe(Effect.ensuring(wipe(key)))
    if (f.json) yield* printJson({ operation: `backup-${mode}`, format: "copy", generation: r.generation, summary: r.summary })
    else {
      const g = r.generation
      yield* note(f.quiet, `${mode === "create" ? "created" : "resumed and completed"} generation ${g.generation} of ${g.source}: ${nodePath.join(dir, g.file)} (${Size.format(g.plainBytes)} → ${Size.format(g.cipherBytes ?? 0)}, ${counted(r.summary.totalChunks, "chunk")}${g.chunked ? ", per-chunk manifest" : ""})`)
    }
  })

const createCommand = Command.make("create", createFlags, runCreate("create")).pipe(
  Command.withDescription("Back up a file or directory as a new generation: only chunks the store does not hold yet are written (--copy: a full encrypted copy)")
)
const resumeCommand = Command.make("resume", createFlags, runCreate("resume")).pipe(
  Command.withDescription("Complete an interrupted full-copy backup (--copy) of FILE from its checkpoint (same key); an interrupted store backup is simply run again")
)

/** Which generation of `source` a command means: the given number, or the newest; in the store or a full copy. */
const pick = (dir: string, source: string, generation: Option.Option<number>, f: { key: Option.Option<string>; passphraseFile: Option.Option<string> }) =>
  Effect.gen(function*() {
    const copies = yield* copiesOf(dir, source)
    const wanted = Option.getOrUndefined(generation)
    const copy = wanted === undefined ? copies.at(-1) : copies.find((g) => g.generation === wanted)
    // A full copy asked for by number needs no store (nor its key).
    if (copy !== undefined && wanted !== undefined) return { kind: "copy" as const, generation: copy.generation }
    // With a store present, the newest generation may be there: open it (its key is needed) rather than pick an older full copy.
    if (!Store.exists(dir)) {
      if (copy !== undefined) return { kind: "copy" as const, generation: copy.generation }
      return yield* new GenerationNotFound({ source: nodePath.resolve(source), generation: wanted, detail: copies.length === 0 ? `nothing in ${dir}` : `${dir} has generations ${copies.map((g) => g.generation).join(", ")}` })
    }
    const store = yield* openStore(dir, f)
    const path = nodePath.resolve(source)
    const snaps = (yield* Store.snapshots(store)).filter((s) => s.source.path === path)
    const snap = wanted === undefined ? snaps.reduce<Store.Snapshot | undefined>((a, b) => (a === undefined || b.generation > a.generation ? b : a), undefined) : snaps.find((s) => s.generation === wanted)
    if (snap !== undefined && (copy === undefined || snap.generation > copy.generation)) return { kind: "store" as const, generation: snap.generation, store, snapshot: snap }
    if (copy !== undefined) return { kind: "copy" as const, generation: copy.generation, store }
    const have = [...copies.map((g) => g.generation), ...snaps.map((s) => s.generation)].sort((a, b) => a - b)
    return yield* new GenerationNotFound({ source: path, generation: wanted, detail: have.length === 0 ? `nothing in ${dir}` : `${dir} has generations ${have.join(", ")}` })
  })

const describeUse = (u: Store.ChunkUse) => `generation ${u.generation} of ${u.source}${u.path === undefined ? "" : ` (${u.path})`}`

/** Prints a store check: each problem with the generations and paths using the chunk; fails with exit 3 on any. */
const reportCheck = (r: Store.CheckReport & { readonly deep: boolean }, f: { json: boolean; quiet: boolean }, what: string, durationMs: number) =>
  Effect.gen(function*() {
    const ok = r.problems.length === 0 && r.badIndexFiles.length === 0
    if (f.json) yield* printJson({ ok, format: "store", ...r, durationMs })
    else if (ok) yield* note(f.quiet, `${what} verifies: ${counted(r.snapshots, "generation")}, ${counted(r.chunks, "chunk")}, ${Size.format(r.bytes)}${r.deep ? ", every chunk read and authenticated" : " (add --deep to read and authenticate every chunk)"} in ${durationMs} ms`)
    else {
      for (const b of r.badIndexFiles) yield* Effect.sync(() => process.stdout.write(`damaged index file ${b} (run cage backup recover)\n`))
      for (const p of r.problems) {
        yield* Effect.sync(() => process.stdout.write(`${p.kind} chunk ${p.chunk.slice(0, 16)}: ${p.detail}; used by ${p.uses.slice(0, 5).map(describeUse).join(", ")}${p.uses.length > 5 ? ` and ${p.uses.length - 5} more` : ""}\n`))
      }
    }
    if (!ok) {
      return yield* new UserFacing({ detail: `${what}: ${counted(r.problems.length, "damaged or missing chunk")}${r.badIndexFiles.length > 0 ? `, ${counted(r.badIndexFiles.length, "damaged index file")}` : ""}`, exitCode: ExitCode.Integrity })
    }
  })

/** Records a store check in the audit log, if any: damaged chunks are named by id in `damage` (`damagedChunks` holds chunk indices, which a store has not). */
const auditCheck = (f: { auditLog: Option.Option<string>; deep: boolean }, settings: Settings, source: string, generation: number | null, r: Store.CheckReport, durationMs: number) =>
  Effect.gen(function*() {
    const writer = yield* openAudit(f.auditLog, settings)
    yield* Effect.sync(() => {
      if (writer === undefined) return
      record(writer, {
        v: AUDIT_VERSION, at: now(), type: "verify", source, generation, ok: r.problems.length === 0 && r.badIndexFiles.length === 0, deep: f.deep, bytes: r.bytes, durationMs,
        damagedChunks: [], damage: r.problems.slice(0, 100).map((p) => `${p.kind} chunk ${p.chunk.slice(0, 16)}: ${p.detail}`)
      })
      writer.close()
    })
  })

const verifyCommand = Command.make("verify", {
  ...keyFlags,
  dir: dirFlag,
  generation: generationFlag,
  deep: Flag.Boolean("deep").pipe(Flag.withDescription("Also decrypt every chunk and check it (full copies: needs the key; the store always needs it)"), Flag.withDefault(false)),
  workers,
  auditLog: auditLogFlag,
  json,
  quiet,
  file: Argument.String("file").pipe(Argument.withDescription("The source (as given to backup create); without it, every generation in the store"), Argument.optional)
}, (f) =>
  closingStores(Effect.gen(function*() {
    const settings = yield* loadSettings
    const dir = backupDir(f.dir, settings)
    const started = Date.now()
    if (Option.isNone(f.file)) {
      if (Option.isSome(f.generation)) return yield* usage("Option", "--generation needs the source it numbers: cage backup verify -g N FILE")
      if (!Store.exists(dir)) return yield* usage("Option", `${dir} holds no chunk store: name the source to verify its full-copy generations`)
      const store = yield* openStore(dir, f)
      const r = yield* Store.check(store, { deep: f.deep })
      yield* auditCheck(f, settings, nodePath.resolve(dir), null, r, Date.now() - started)
      return yield* reportCheck({ ...r, deep: f.deep }, f, `the store in ${dir}`, Date.now() - started)
    }
    const source = f.file.value
    const target = yield* pick(dir, source, f.generation, f)
    if (target.kind === "store") {
      if (Option.isSome(f.workers)) return yield* usage("Option", `--workers applies to full copies; generation ${target.generation} of ${source} is in the chunk store`)
      const r = yield* Store.check(target.store, { deep: f.deep, snapshots: [target.snapshot.id] })
      yield* auditCheck(f, settings, nodePath.resolve(source), target.generation, r, Date.now() - started)
      return yield* reportCheck({ ...r, deep: f.deep }, f, `generation ${target.generation} of ${source}`, Date.now() - started)
    }
    const key = f.deep ? yield* keyMaterial(f, false) : undefined
    const w = Option.getOrUndefined(f.workers) ?? settings.workers.value
    const writer = yield* openAudit(f.auditLog, settings)
    const report = yield* verifyReport({
      dir, source, deep: f.deep, generation: target.generation,
      ...(key ? { cipher: agcmCipher(key, w !== undefined ? { workers: w } : {}) } : {}), ...(w !== undefined ? { hashWorkers: w } : {})
    }).pipe(
      Effect.tap((r) => Effect.sync(() => writer && record(writer, {
        v: AUDIT_VERSION, at: now(), type: "verify", source: r.source, generation: r.generation, ok: r.ok, deep: r.deep, bytes: r.bytes, durationMs: r.durationMs,
        damagedChunks: r.damage.flatMap((d) => (d.chunk === undefined ? [] : [d.chunk])), damage: r.damage.slice(0, 100).map((d) => `${d.kind}${d.chunk === undefined ? "" : ` ${d.chunk}`} (bytes ${d.start}..${d.end}): ${d.detail}`)
      }))),
      Effect.ensuring(key ? wipe(key) : Effect.void),
      Effect.ensuring(Effect.sync(() => writer?.close()))
    )
    if (f.json) yield* printJson(report)
    else if (report.ok) {
      yield* note(f.quiet, `generation ${report.generation} of ${report.source} verifies: ${counted(report.chunks, "chunk")}, ${Size.format(report.bytes)}${report.deep ? ", decrypted and checked" : ""} in ${report.durationMs} ms`)
    } else {
      for (const d of report.damage) {
        yield* Effect.sync(() => process.stdout.write(`damaged ${d.kind}${d.chunk === undefined ? "" : ` ${d.chunk}`}: bytes ${d.start}..${d.end} of ${report.file}: ${d.detail}\n`))
      }
    }
    if (!report.ok) return yield* Effect.fail(new BackupDamaged({ file: report.file, generation: report.generation, damage: report.damage }))
  }))
).pipe(Command.withDescription("Re-read a generation (or, without FILE, the whole store) and name every damaged chunk (exit 3 when damaged)"))

const restoreCommand = Command.make("restore", {
  ...keyFlags,
  dir: dirFlag,
  generation: generationFlag,
  output: Flag.String("output").pipe(Flag.withAlias("o"), Flag.withDescription("Output file or directory, or - for standard output (default: the original path; a file is never overwritten without --force, a directory never)"), Flag.optional),
  path: Flag.String("path").pipe(Flag.withDescription("A directory backup: only this file or directory in it (relative to the backed-up directory)"), Flag.optional),
  range: Flag.String("range").pipe(Flag.withDescription("Only plaintext bytes START:END of a file (END exclusive; units allowed; START: means to the end)"), Flag.optional),
  force: Flag.Boolean("force").pipe(Flag.withDescription("Replace an existing output file"), Flag.withDefault(false)),
  limitRate: commonFlags.limitRate,
  workers,
  auditLog: auditLogFlag,
  json,
  quiet,
  file
}, (f) =>
  closingStores(Effect.gen(function*() {
    const settings = yield* loadSettings
    const dir = backupDir(f.dir, settings)
    const range = Option.isSome(f.range) ? yield* parseRange(f.range.value) : undefined
    const output = Option.getOrElse(f.output, () => f.file)
    if (output === "-" && f.json) return yield* usage("Option", "-o - writes the restored bytes to standard output: leave out --json (or restore to a file)")
    if (output === "-" && process.stdout.isTTY) return yield* usage("Output", "refusing to write binary output to a terminal: use -o FILE or a pipe")
    if (output !== "-" && f.force && fs.existsSync(output) && nodePath.resolve(output) === nodePath.resolve(f.file)) {
      // --force replaces outputs, never the backed-up source while it still exists: it may be newer than the backup.
      return yield* usage("Option", `-o ${output} is the backed-up source itself, which exists: restore elsewhere with -o, or move it aside first`)
    }
    // Nor, --force or not, a file this command reads: the key, or anything in the backup directory.
    yield* refuseReadFiles(output, [
      ...Option.toArray(f.key).map((k) => ["--key", k] as const),
      ...Option.toArray(f.passphraseFile).map((k) => ["--passphrase-file", k] as const)
    ])
    const inside = nodePath.relative(nodePath.resolve(dir), nodePath.resolve(output))
    if (output !== "-" && inside !== ".." && !inside.startsWith(`..${nodePath.sep}`) && !nodePath.isAbsolute(inside)) {
      return yield* usage("Output", `refusing to restore into the backup directory ${dir}: name an output outside it with -o`)
    }
    const target = yield* pick(dir, f.file, f.generation, f)
    if (target.kind === "store") {
      if (Option.isSome(f.limitRate) || Option.isSome(f.workers)) return yield* usage("Option", `${Option.isSome(f.limitRate) ? "--limit-rate" : "--workers"} applies to full copies; generation ${target.generation} of ${f.file} is in the chunk store`)
      const r = yield* withAudit(f, settings, "restore", f.file, () =>
        Store.restore(target.store, {
          snapshot: target.snapshot.id, output, force: f.force, ...(range ? { range } : {}), ...(Option.isSome(f.path) ? { path: f.path.value } : {}),
          progress: ProgressBar.terminal({ quiet: f.quiet || f.json, label: "restore" })
        }),
        (r) => ({ generation: target.generation, bytes: r.bytes })
      )
      if (f.json) return yield* printJson({ operation: "backup-restore", format: "store", generation: target.generation, ...r })
      yield* note(f.quiet, `restored generation ${target.generation} of ${f.file}${Option.isSome(f.path) ? ` (${f.path.value})` : ""} → ${output === "-" ? "standard output" : r.output} (${Size.format(r.bytes)}, ${counted(r.chunksRead, "chunk")})`)
      for (const p of r.notRestored) yield* note(f.quiet, `not restored: ${p} changed while it was backed up, so this generation did not store it`)
      return
    }
    if (Option.isSome(f.path)) return yield* usage("Option", `--path applies to directory backups; generation ${target.generation} of ${f.file} is a full copy of one file`)
    const w = Option.getOrUndefined(f.workers) ?? settings.workers.value
    const limitRate = yield* resolveLimitRate(f.limitRate, settings)
    const key = yield* keyMaterial(f, false)
    const r = yield* withAudit(f, settings, "restore", f.file, (writer) =>
      audited(writer, { operation: "backup-restore", strategy: "native" }, restore({
        dir, source: f.file, cipher: agcmCipher(key, w !== undefined ? { workers: w } : {}), output, overwrite: f.force, generation: target.generation,
        ...(range ? { range } : {}),
        progress: ProgressBar.terminal({ quiet: f.quiet || f.json, label: "restore" }), limitRate
      })),
      (r) => ({ generation: r.generation, bytes: r.bytes })
    ).pipe(Effect.ensuring(wipe(key)))
    if (f.json) yield* printJson({ operation: "backup-restore", format: "copy", ...r })
    else yield* note(f.quiet, `restored generation ${r.generation} of ${f.file} → ${output === "-" ? "standard output" : r.output} (${Size.format(r.bytes)}, ${counted(r.chunks, "chunk")})`)
  }))
).pipe(Command.withDescription("Restore a generation (a file, a byte range of it, a directory tree or one path in it)"))

const row = (g: Generation) => [
  String(g.generation), "copy", g.status, g.createdAt.replace("T", " ").slice(0, 19), Size.format(g.plainBytes), "-", g.cipherBytes === null ? "-" : Size.format(g.cipherBytes), g.file
]
const storeRow = (s: Store.Snapshot) => [
  String(s.generation), s.tree !== undefined ? "store dir" : "store", "complete", s.createdAt.replace("T", " ").slice(0, 19), Size.format(s.bytes), s.files === undefined ? "-" : String(s.files), Size.format(s.added.bytes), s.id
]

const listCommand = Command.make("list", {
  ...keyFlags,
  dir: dirFlag,
  json,
  file: Argument.String("file").pipe(Argument.withDescription("Only this source"), Argument.optional)
}, (f) =>
  closingStores(Effect.gen(function*() {
    const settings = yield* loadSettings
    const dir = backupDir(f.dir, settings)
    const gens = yield* list({ dir, ...(Option.isSome(f.file) ? { source: f.file.value } : {}) })
    const only = Option.isSome(f.file) ? nodePath.resolve(f.file.value) : undefined
    const snaps = Store.exists(dir) ? (yield* Store.snapshots(yield* openStore(dir, f))).filter((s) => only === undefined || s.source.path === only) : []
    if (f.json) {
      const rows = [
        ...gens.map((g) => ({ format: "copy", ...g })),
        ...snaps.map(({ chunks: _, tree, ...s }) => ({ format: "store", status: "complete", ...s, source: s.source.path, kind: tree !== undefined ? "directory" : "file" }))
      ]
      return yield* printJson(rows.sort((a, b) => a.source.localeCompare(b.source) || a.generation - b.generation))
    }
    const bySource = new Map<string, Array<{ generation: number; cells: Array<string> }>>()
    const add = (source: string, generation: number, cells: Array<string>) => bySource.set(source, [...(bySource.get(source) ?? []), { generation, cells }])
    for (const g of gens) add(g.source, g.generation, row(g))
    for (const s of snaps) add(s.source.path, s.generation, storeRow(s))
    if (bySource.size === 0) return yield* Effect.sync(() => process.stdout.write("no backups\n"))
    for (const [source, rows] of [...bySource].sort((a, b) => a[0].localeCompare(b[0]))) {
      const sorted = rows.sort((a, b) => a.generation - b.generation).map((r) => r.cells)
      yield* Effect.sync(() => process.stdout.write(`${source}\n${table([["gen", "kind", "status", "created (UTC)", "size", "files", "added", "stored as"], ...sorted])}\n\n`))
    }
  }))
).pipe(Command.withDescription("List generations (all sources, or FILE's): size, files, bytes each added"))

const pruneCommand = Command.make("prune", {
  ...keyFlags,
  dir: dirFlag,
  policy: Flag.String("policy").pipe(Flag.withDescription("keep_all | keep_last:N | keep_days:D | keep_last_and_days:N,D | keep_hourly/daily/weekly/monthly/yearly:N, several joined by + (default keep_last:3, or [backup] retention)"), Flag.optional),
  dryRun: Flag.Boolean("dry-run").pipe(Flag.withDescription("Show what would be deleted; delete nothing"), Flag.withDefault(false)),
  auditLog: auditLogFlag,
  json,
  quiet,
  file: Argument.String("file").pipe(Argument.withDescription("Only this source"), Argument.optional)
}, (f) =>
  closingStores(Effect.gen(function*() {
    const settings = yield* loadSettings
    const dir = backupDir(f.dir, settings)
    const policyText = Option.getOrElse(f.policy, () => settings.retention.value)
    const policy = yield* Effect.try({ try: () => parsePolicy(policyText), catch: (e) => e as BackupUsageError })
    const source = Option.getOrElse(f.file, () => "*")
    const store = Store.exists(dir) ? yield* openStore(dir, f) : undefined
    // One policy over both kinds, per source: each counts the other's generations.
    const bySource = <A extends { readonly generation: number; readonly createdAt: string }>(items: ReadonlyArray<A>, path: (a: A) => string, id: (a: A) => string) => {
      const m = new Map<string, Array<{ id: string; generation: number; createdAt: string }>>()
      for (const a of items) m.set(path(a), [...(m.get(path(a)) ?? []), { id: id(a), generation: a.generation, createdAt: a.createdAt }])
      return m
    }
    // Only store generations whose chunks are all indexed stand in for full copies: a damaged
    // newest store generation must not let prune delete the newest copy that verifies.
    const checked = store === undefined ? undefined : yield* Store.check(store)
    const unsound = new Set(checked?.problems.flatMap((p) => p.snapshots) ?? [])
    const snaps = store === undefined || (checked?.badIndexFiles.length ?? 0) > 0 ? [] : (yield* Store.snapshots(store)).filter((s) => !unsound.has(s.id))
    const copies = (yield* list({ dir })).filter((g) => g.status === "complete")
    const r = yield* withAudit(f, settings, f.dryRun ? "prune-dry-run" : "prune", source, () =>
      prune({ dir, policy, dryRun: f.dryRun, elsewhere: bySource(snaps, (s) => s.source.path, (s) => `store:${s.id}`), ...(Option.isSome(f.file) ? { source: f.file.value } : {}) }),
      (r) => ({ generation: null, bytes: r.deleted.reduce((s, g) => s + (g.cipherBytes ?? 0), 0) })
    )
    const s = store === undefined ? undefined : yield* withAudit(f, settings, f.dryRun ? "store-prune-dry-run" : "store-prune", source, () =>
      Effect.gen(function*() {
        const forgot = yield* Store.forget(store, { policy, dryRun: f.dryRun, elsewhere: bySource(copies, (g) => g.source, (g) => `copy:${g.id}`), ...(Option.isSome(f.file) ? { source: f.file.value } : {}) })
        const swept = f.dryRun ? undefined : yield* Store.prune(store)
        return { forgot, swept }
      }),
      (x) => ({ generation: null, bytes: x.swept?.bytesFreed ?? null })
    )
    if (f.json) {
      return yield* printJson({
        ...r,
        ...(s ? { store: { deleted: s.forgot.removed.map((x) => ({ source: x.source.path, generation: x.generation, id: x.id })), kept: s.forgot.kept.length, ...(s.swept ? { prune: s.swept } : {}) } } : {})
      })
    }
    const verb = f.dryRun ? "would delete" : "deleted"
    for (const g of r.deleted) yield* note(f.quiet, `${verb} generation ${g.generation} of ${g.source} (${g.file})`)
    for (const g of r.damaged) yield* note(f.quiet, `warning: generation ${g.generation} of ${g.source} does not verify`)
    if (s) for (const x of s.forgot.removed) yield* note(f.quiet, `${verb} generation ${x.generation} of ${x.source.path} (store)`)
    const deleted = r.deleted.length + (s?.forgot.removed.length ?? 0)
    const kept = r.kept.length + (s?.forgot.kept.length ?? 0)
    yield* note(f.quiet, `${policyText}: ${verb} ${deleted}, kept ${kept}${r.protectedGenerations.length > 0 ? `; newest verified full copy kept: ${r.protectedGenerations.map((g) => `${nodePath.basename(g.source)}#${g.generation}`).join(", ")}` : ""}`)
    if (s?.swept) yield* note(f.quiet, `store: ${counted(s.swept.chunksRemoved, "chunk")} no generation uses removed, ${counted(s.swept.packsDeleted, "pack")} deleted, ${s.swept.packsRepacked} repacked, ${Size.format(Math.max(0, s.swept.bytesFreed))} freed`)
  }))
).pipe(Command.withDescription("Delete generations outside the retention policy (never a source's newest), then the chunks no generation uses"))

const recoverCommand = Command.make("recover", { ...keyFlags, dir: dirFlag, json, quiet }, (f) =>
  closingStores(Effect.gen(function*() {
    const settings = yield* loadSettings
    const dir = backupDir(f.dir, settings)
    const hasCopies = [".cage_backups.json", ".cage_backups.json.bak", ".cage_backups.d"].some((n) => fs.existsSync(nodePath.join(dir, n)))
    if (!hasCopies && !Store.exists(dir)) return yield* usage("Option", `${dir} holds no backups to recover`)
    const r = hasCopies ? yield* recover({ dir }) : undefined
    const s = Store.exists(dir) ? yield* Store.recover(yield* openStore(dir, f)) : undefined
    if (f.json) return yield* printJson({ ...(r ?? {}), ...(s ? { store: s } : {}) })
    if (r) yield* note(f.quiet, `rebuilt the registry: ${counted(r.generations, "generation")} (${r.fromManifests} from manifests, ${r.fromBackup} partial from .bak)${r.corruptMovedTo ? `; the corrupt registry is kept as ${r.corruptMovedTo}` : ""}`)
    if (s) {
      yield* note(f.quiet, `rebuilt the store's index from ${counted(s.packs, "pack")}: ${counted(s.chunks, "chunk")}`)
      for (const d of s.damagedPacks) yield* note(f.quiet, `damaged pack ${d.pack}: ${d.detail} (its chunks are missing; cage backup verify names the generations that use them)`)
    }
  }))
).pipe(Command.withDescription("Rebuild a corrupt registry from the manifests, and the store's index from its packs"))

/** `cage backup …` */
export const backupCommand = Command.make("backup").pipe(
  Command.withDescription("Backups: generations that store each chunk once (or full encrypted copies), verify, restore, retention"),
  Command.withSubcommands([createCommand, resumeCommand, verifyCommand, restoreCommand, listCommand, pruneCommand, recoverCommand])
)
