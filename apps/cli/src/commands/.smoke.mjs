var __getOwnPropNames = Object.getOwnPropertyNames;
var __esm = (fn, res) => function __init() {
  return fn && (res = (0, fn[__getOwnPropNames(fn)[0]])(fn = 0)), res;
};

// src/Errors.ts
import { ExitCode, exitCodeOf, UsageError } from "@cage/core";
import { Effect } from "effect";
var describe, report, usage;
var init_Errors = __esm({
  "src/Errors.ts"() {
    "use strict";
    describe = (error) => {
      if (error instanceof Error) return error.message;
      if (typeof error === "object" && error !== null && "message" in error) return String(error.message);
      return String(error);
    };
    report = (error) => Effect.sync(() => {
      const code = exitCodeOf(error);
      process.stderr.write(`cage: error: ${describe(error)}
`);
      process.exitCode = code;
    });
    usage = (detail) => Effect.fail(new UsageError({ detail }));
  }
});

// src/commands/.smoke-entry.ts
init_Errors();
import * as NodeRuntime from "@effect/platform-node/NodeRuntime";
import * as NodeServices from "@effect/platform-node/NodeServices";
import { Effect as Effect8 } from "effect";
import { Command as Command3 } from "effect/cli";

// src/commands/audit.ts
import { formatSummary, layer as auditLayer, makeWriter, readLogs, renderReport, summarize } from "@cage/audit";
import { fromSystemError } from "@cage/core";
import { Effect as Effect4, Option } from "effect";
import { Argument, Command, Flag } from "effect/cli";
import * as fs2 from "node:fs";

// src/Config.ts
import { parseSize, UsageError as UsageError2 } from "@cage/core";
import { Effect as Effect2, Schema } from "effect";
import { Toml } from "effect/encoding";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
var Size = Schema.Union([Schema.Number, Schema.String]);
var Names = Schema.Array(Schema.String);
var ConfigFile = Schema.Struct({
  chunk_size: Schema.optionalKey(Size),
  workers: Schema.optionalKey(Schema.Int),
  backend: Schema.optionalKey(Schema.Literals(["agcm", "age", "age-lib"])),
  streaming_strategy: Schema.optionalKey(Schema.Literals(["pipe", "tempfile", "auto"])),
  plugins: Schema.optionalKey(Names),
  pipelines: Schema.optionalKey(Schema.Record(Schema.String, Schema.Struct({ processors: Names }))),
  processors: Schema.optionalKey(Schema.Record(Schema.String, Schema.Record(Schema.String, Schema.Json))),
  backup: Schema.optionalKey(Schema.Struct({
    dir: Schema.optionalKey(Schema.String),
    retention: Schema.optionalKey(Schema.String),
    manifest_threshold: Schema.optionalKey(Size)
  })),
  audit: Schema.optionalKey(Schema.Struct({
    log: Schema.optionalKey(Schema.String),
    max_bytes: Schema.optionalKey(Size)
  }))
});
var configError = (file2, detail) => new UsageError2({ detail: `${file2}: ${detail}` });
var decodeFile = (file2) => Effect2.gen(function* () {
  const text = yield* Effect2.try({ try: () => fs.readFileSync(file2, "utf8"), catch: (e) => configError(file2, `cannot read (${e.code})`) });
  const raw = yield* Effect2.try({ try: () => Toml.parse(text), catch: (e) => configError(file2, `not valid TOML: ${e.message}`) });
  return yield* Schema.decodeUnknownEffect(ConfigFile)(JSON.parse(JSON.stringify(raw)), { onExcessProperty: "error" }).pipe(
    Effect2.mapError((e) => configError(file2, e.message.replace(/\n\s*/g, " ")))
  );
});
var findConfigFiles = (cwd = process.cwd(), env = process.env) => {
  if (env.CAGE_CONFIG) return [env.CAGE_CONFIG];
  const files = [];
  const xdg = env.XDG_CONFIG_HOME || path.join(os.homedir(), ".config");
  const user = path.join(xdg, "cage", "config.toml");
  if (fs.existsSync(user)) files.push(user);
  for (let dir = path.resolve(cwd); ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, "cage.toml");
    if (fs.existsSync(candidate)) {
      files.push(candidate);
      break;
    }
    if (path.dirname(dir) === dir) break;
  }
  return files;
};
var sizeOf = (file2, key, v) => typeof v === "number" ? Effect2.succeed(v) : Effect2.fromNullishOr(parseSize(v)).pipe(Effect2.mapError(() => configError(file2, `${key}: "${v}" is not a size (examples: 65536, "64KiB", "500MB")`)));
var loadSettingsFrom = (cwd = process.cwd(), env = process.env) => Effect2.gen(function* () {
  const files = findConfigFiles(cwd, env);
  let s = {
    files,
    projectDir: cwd,
    chunkSize: { value: void 0, source: "default" },
    workers: { value: void 0, source: "default" },
    backend: { value: "agcm", source: "default" },
    streamingStrategy: { value: "auto", source: "default" },
    plugins: { value: [], source: "default" },
    pipelines: { value: {}, source: "default" },
    processorOptions: { value: {}, source: "default" },
    backupDir: { value: void 0, source: "default" },
    retention: { value: "keep_last:3", source: "default" },
    manifestThreshold: { value: 5e8, source: "default" },
    auditLog: { value: void 0, source: "default" },
    auditMaxBytes: { value: 64 * 1024 * 1024, source: "default" }
  };
  for (const file2 of files) {
    const c = yield* decodeFile(file2);
    const at = (value) => ({ value, source: file2 });
    const rel = (p) => path.resolve(path.dirname(file2), p);
    if (c.workers !== void 0 && c.workers < 1) return yield* Effect2.fail(configError(file2, `workers: expected an integer >= 1, got ${c.workers}`));
    s = {
      ...s,
      projectDir: path.dirname(path.resolve(file2)),
      ...c.chunk_size !== void 0 ? { chunkSize: at(yield* sizeOf(file2, "chunk_size", c.chunk_size)) } : {},
      ...c.workers !== void 0 ? { workers: at(c.workers) } : {},
      ...c.backend !== void 0 ? { backend: at(c.backend) } : {},
      ...c.streaming_strategy !== void 0 ? { streamingStrategy: at(c.streaming_strategy) } : {},
      ...c.plugins !== void 0 ? { plugins: at(c.plugins) } : {},
      ...c.pipelines !== void 0 ? { pipelines: at({ ...s.pipelines.value, ...Object.fromEntries(Object.entries(c.pipelines).map(([k, v]) => [k, v.processors])) }) } : {},
      ...c.processors !== void 0 ? { processorOptions: at({ ...s.processorOptions.value, ...c.processors }) } : {},
      ...c.backup?.dir !== void 0 ? { backupDir: at(rel(c.backup.dir)) } : {},
      ...c.backup?.retention !== void 0 ? { retention: at(c.backup.retention) } : {},
      ...c.backup?.manifest_threshold !== void 0 ? { manifestThreshold: at(yield* sizeOf(file2, "backup.manifest_threshold", c.backup.manifest_threshold)) } : {},
      ...c.audit?.log !== void 0 ? { auditLog: at(rel(c.audit.log)) } : {},
      ...c.audit?.max_bytes !== void 0 ? { auditMaxBytes: at(yield* sizeOf(file2, "audit.max_bytes", c.audit.max_bytes)) } : {}
    };
  }
  return s;
});
var loadSettings = loadSettingsFrom();

// src/Io.ts
import { ChunkInput, ChunkOutput, formatBytes, parseSize as parseSize2 } from "@cage/core";
import { Effect as Effect3 } from "effect";
var printJson = (value) => Effect3.sync(() => process.stdout.write(JSON.stringify(value) + "\n"));
var note = (quiet2, text) => Effect3.sync(() => quiet2 ? void 0 : process.stderr.write(`cage: ${text}
`));

// src/commands/audit.ts
var auditLogFlag = Flag.String("audit-log").pipe(Flag.withDescription("Append audit events (JSON Lines) to FILE (default: [audit] log in cage.toml)"), Flag.optional);
var openAudit = (flag, settings) => Effect4.gen(function* () {
  const path2 = Option.getOrUndefined(flag) ?? settings.auditLog.value;
  if (path2 === void 0) return void 0;
  return yield* Effect4.try({ try: () => makeWriter(path2, { maxBytes: settings.auditMaxBytes.value }), catch: (e) => fromSystemError("open audit log", path2, e) });
});
var audited = (writer, context, effect) => writer ? effect.pipe(Effect4.provide(auditLayer(writer, context))) : effect;
var logFiles = (log2, rotated2) => {
  if (!rotated2) return [log2];
  const older = [];
  for (let k = 1; fs2.existsSync(`${log2}.${k}`); k++) older.unshift(`${log2}.${k}`);
  return [...older, log2];
};
var log = Argument.String("log").pipe(Argument.withDescription("Audit log (JSON Lines)"));
var rotated = Flag.Boolean("rotated").pipe(Flag.withDescription("Also read the rotated files LOG.1, LOG.2, \u2026 (oldest first)"), Flag.withDefault(false));
var summaryCommand = Command.make(
  "summary",
  {
    log,
    rotated,
    json: Flag.Boolean("json").pipe(Flag.withDescription("The summary as JSON on stdout"), Flag.withDefault(false))
  },
  (f) => Effect4.gen(function* () {
    const contents = yield* readLogs(logFiles(f.log, f.rotated));
    const s = summarize(contents);
    if (f.json) yield* printJson(s);
    else yield* Effect4.sync(() => process.stdout.write(formatSummary(s)));
  })
).pipe(Command.withDescription("Totals, chunk throughput percentiles and anomalies of an audit log, as tables"));
var reportCommand = Command.make(
  "report",
  {
    log,
    rotated,
    output: Flag.String("output").pipe(Flag.withAlias("o"), Flag.withDescription("HTML file to write (default report.html)"), Flag.withDefault("report.html")),
    title: Flag.String("title").pipe(Flag.withDescription("Page title"), Flag.optional),
    quiet: Flag.Boolean("quiet").pipe(Flag.withAlias("q"), Flag.withDefault(false))
  },
  (f) => Effect4.gen(function* () {
    const contents = yield* readLogs(logFiles(f.log, f.rotated));
    const html = renderReport(contents, summarize(contents), Option.isSome(f.title) ? { title: f.title.value } : {});
    yield* Effect4.try({ try: () => fs2.writeFileSync(f.output, html, { mode: 420 }), catch: (e) => fromSystemError("write", f.output, e) });
    yield* note(f.quiet, `wrote ${f.output} (${contents.events.length} events)`);
  })
).pipe(Command.withDescription("A self-contained HTML report with a per-chunk throughput chart marking anomalies"));
var auditCommand = Command.make("audit").pipe(
  Command.withDescription("Read audit logs: summaries and HTML reports"),
  Command.withSubcommands([summaryCommand, reportCommand])
);

// src/commands/backup.ts
import { AUDIT_VERSION, now, record, table } from "@cage/audit";
import {
  agcmCipher,
  create,
  list,
  parsePolicy,
  parseRange,
  prune,
  recover,
  restore,
  resume,
  verifyReport,
  BackupDamaged
} from "@cage/backup";
import { formatBytes as formatBytes2, parseSize as parseSize3, Progress as Progress2 } from "@cage/core";
import { Effect as Effect7, Option as Option3 } from "effect";
import { Argument as Argument3, Command as Command2, Flag as Flag3 } from "effect/cli";
import * as nodePath from "node:path";
init_Errors();

// src/commands/crypt.ts
import { agcmDecrypt, agcmEncrypt, decryptRangeTo, DEFAULT_CHUNK_SIZE } from "@cage/agcm";
import { Progress, runPipeline } from "@cage/core";
import { Effect as Effect6, Option as Option2 } from "effect";
import { Argument as Argument2, Flag as Flag2 } from "effect/cli";
init_Errors();

// src/Keys.ts
import { UsageError as UsageError3 } from "@cage/core";
import { Data, Effect as Effect5 } from "effect";
import * as fs3 from "node:fs";
import * as tty from "node:tty";
var KEY_PREFIX = "cage-key-1:";
var KEY_BYTES = 32;
var KeyFileError = class extends Data.TaggedError("KeyFileError") {
  exitCode = 2;
  get message() {
    return `${this.path}: ${this.detail}`;
  }
};
var readSecretFile = (path2) => Effect5.tryPromise({
  try: () => fs3.promises.readFile(path2),
  catch: (e) => new KeyFileError({ path: path2, detail: `cannot read (${e.code ?? "error"})` })
});
var parseKeyText = (text) => {
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"));
  if (lines.length !== 1) return void 0;
  let body = lines[0];
  if (body.startsWith(KEY_PREFIX)) body = body.slice(KEY_PREFIX.length);
  if (/^[0-9a-fA-F]{64}$/.test(body)) return Buffer.from(body, "hex");
  if (/^[A-Za-z0-9_-]{43}$/.test(body)) {
    const b = Buffer.from(body, "base64url");
    return b.length === KEY_BYTES ? b : void 0;
  }
  return void 0;
};
var readKeyFile = (path2) => Effect5.gen(function* () {
  const raw = yield* readSecretFile(path2);
  const key = parseKeyText(raw.toString("utf8"));
  raw.fill(0);
  if (!key) {
    return yield* Effect5.fail(new KeyFileError({ path: path2, detail: `not a key file: expected one line "${KEY_PREFIX}" followed by 32 bytes as base64url or hex, or 64 hex characters` }));
  }
  warnIfShared(path2);
  return key;
});
var readPassphraseFile = (path2) => Effect5.gen(function* () {
  const raw = yield* readSecretFile(path2);
  let end = raw.indexOf(10);
  if (end < 0) end = raw.length;
  if (end > 0 && raw[end - 1] === 13) end--;
  const pass = Uint8Array.prototype.slice.call(raw, 0, end);
  raw.fill(0);
  if (pass.length === 0) return yield* Effect5.fail(new KeyFileError({ path: path2, detail: "the passphrase file is empty (its first line is the passphrase)" }));
  warnIfShared(path2);
  return pass;
});
var warnIfShared = (path2) => {
  try {
    const mode = fs3.statSync(path2).mode;
    if (mode & 63) process.stderr.write(`cage: warning: ${path2} is readable by other users (mode ${(mode & 511).toString(8)}); chmod 600 it
`);
  } catch {
  }
};
var promptPassphrase = (options) => Effect5.tryPromise({
  try: async () => {
    const fd = fs3.openSync("/dev/tty", "r+");
    const input = new tty.ReadStream(fd);
    const ask = (label) => new Promise((resolve3, reject) => {
      fs3.writeSync(fd, label);
      const bytes = [];
      input.setRawMode(true);
      const onData = (d) => {
        for (const b of d) {
          if (b === 3) {
            cleanup();
            return reject(new Error("cancelled"));
          }
          if (b === 13 || b === 10) {
            cleanup();
            const out = Buffer.from(bytes);
            bytes.fill(0);
            return resolve3(out);
          }
          if (b === 127 || b === 8) bytes.pop();
          else bytes.push(b);
        }
      };
      const cleanup = () => {
        input.off("data", onData);
        input.setRawMode(false);
        fs3.writeSync(fd, "\n");
      };
      input.on("data", onData);
    });
    try {
      const first = await ask("Passphrase: ");
      if (first.length === 0) throw new Error("the passphrase is empty");
      if (options.confirm) {
        const second = await ask("Confirm passphrase: ");
        const same = second.equals(first);
        second.fill(0);
        if (!same) {
          first.fill(0);
          throw new Error("the passphrases do not match");
        }
      }
      const out = new Uint8Array(first);
      first.fill(0);
      return out;
    } finally {
      input.destroy();
    }
  },
  catch: (e) => new UsageError3({
    detail: e.code ? "no key given: use --key FILE or --passphrase-file FILE (no terminal to prompt for a passphrase)" : `passphrase prompt: ${e.message}`
  })
});

// src/commands/crypt.ts
var commonFlags = {
  key: Flag2.String("key").pipe(Flag2.withDescription("Key file (from `cage keygen`, or 64 hex characters)"), Flag2.optional),
  passphraseFile: Flag2.String("passphrase-file").pipe(Flag2.withDescription("File whose first line is the passphrase (never pass a passphrase on the command line)"), Flag2.optional),
  output: Flag2.String("output").pipe(Flag2.withAlias("o"), Flag2.withDescription("Output file, or - for stdout"), Flag2.optional),
  workers: Flag2.Int("workers").pipe(Flag2.withDescription("Worker threads (default: available cores; 1 = in-process)"), Flag2.optional),
  noResume: Flag2.Boolean("no-resume").pipe(Flag2.withDescription("Ignore and discard an existing checkpoint; start over"), Flag2.withDefault(false)),
  noFsync: Flag2.Boolean("no-fsync").pipe(Flag2.withDescription("Do not fsync the output (survives kill -9, not a power loss; faster on slow disks)"), Flag2.withDefault(false)),
  checkpointInterval: Flag2.Int("checkpoint-interval").pipe(Flag2.withDescription("Minimum ms between checkpoints (default 1000)"), Flag2.withDefault(1e3)),
  force: Flag2.Boolean("force").pipe(Flag2.withDescription("Replace an existing output file"), Flag2.withDefault(false)),
  quiet: Flag2.Boolean("quiet").pipe(Flag2.withAlias("q"), Flag2.withDescription("No progress bar or notes"), Flag2.withDefault(false)),
  json: Flag2.Boolean("json").pipe(Flag2.withDescription("Print the run summary as JSON on stdout"), Flag2.withDefault(false)),
  backend: Flag2.Literals("backend", ["agcm", "age", "age-lib"]).pipe(Flag2.withDescription("Cipher backend (default agcm, or from cage.toml)"), Flag2.optional),
  input: Argument2.String("input").pipe(Argument2.withDescription("Input file, or - for stdin"))
};
var keyMaterial = (flags, confirm) => Effect6.gen(function* () {
  if (Option2.isSome(flags.key) && Option2.isSome(flags.passphraseFile)) return yield* usage("give either --key or --passphrase-file, not both");
  if (Option2.isSome(flags.key)) return { key: yield* readKeyFile(flags.key.value) };
  if (Option2.isSome(flags.passphraseFile)) return { passphrase: yield* readPassphraseFile(flags.passphraseFile.value) };
  return { passphrase: yield* promptPassphrase({ confirm }) };
});
var wipe = (k) => Effect6.sync(() => "key" in k ? k.key.fill(0) : k.passphrase.fill(0));

// src/commands/backup.ts
var file = Argument3.String("file").pipe(Argument3.withDescription("The source file (as given to backup create)"));
var dirFlag = Flag3.String("dir").pipe(Flag3.withDescription("Backup directory (default: [backup] dir in cage.toml, else ./.cage-backups)"), Flag3.optional);
var generationFlag = Flag3.Int("generation").pipe(Flag3.withAlias("g"), Flag3.withDescription("Generation number (default: the newest complete one)"), Flag3.optional);
var json = Flag3.Boolean("json").pipe(Flag3.withDescription("Machine-readable JSON on stdout"), Flag3.withDefault(false));
var quiet = Flag3.Boolean("quiet").pipe(Flag3.withAlias("q"), Flag3.withDescription("No progress bar or notes"), Flag3.withDefault(false));
var workers = Flag3.Int("workers").pipe(Flag3.withDescription("Worker threads for cipher and hashing (default: available cores)"), Flag3.optional);
var backupDir = (flag, settings) => Option3.getOrUndefined(flag) ?? settings.backupDir.value ?? ".cage-backups";
var auditOutcome = (writer, o) => Effect7.sync(() => writer && record(writer, { v: AUDIT_VERSION, at: now(), type: "backup", ...o }));
var withAudit = (f, settings, operation, source, body, outcome) => Effect7.gen(function* () {
  const writer = yield* openAudit(f.auditLog, settings);
  const started = Date.now();
  return yield* body(writer).pipe(
    Effect7.tap((a) => auditOutcome(writer, { operation, source: nodePath.resolve(source), ...outcome(a), ok: true, durationMs: Date.now() - started, error: null })),
    Effect7.tapError((e) => auditOutcome(writer, { operation, source: nodePath.resolve(source), generation: null, bytes: null, ok: false, durationMs: Date.now() - started, error: String(e.message ?? e) })),
    Effect7.ensuring(Effect7.sync(() => writer?.close()))
  );
});
var keyFlags = { key: commonFlags.key, passphraseFile: commonFlags.passphraseFile };
var createFlags = {
  ...keyFlags,
  dir: dirFlag,
  chunkSize: Flag3.String("chunk-size").pipe(Flag3.withDescription("Plaintext bytes per chunk (AGCM: power of two, 16KiB..4MiB; default 64KiB)"), Flag3.optional),
  manifest: Flag3.Boolean("manifest").pipe(Flag3.withDescription("Write per-chunk digests whatever the size"), Flag3.withDefault(false)),
  manifestThreshold: Flag3.String("manifest-threshold").pipe(Flag3.withDescription("Per-chunk digests from this source size up (default 500MB, or [backup] manifest_threshold)"), Flag3.optional),
  workers,
  auditLog: auditLogFlag,
  json,
  quiet,
  file
};
var runCreate = (mode) => (f) => Effect7.gen(function* () {
  const settings = yield* loadSettings;
  const dir = backupDir(f.dir, settings);
  const chunkSize = Option3.isSome(f.chunkSize) ? parseSize3(f.chunkSize.value) : settings.chunkSize.value;
  if (Option3.isSome(f.chunkSize) && chunkSize === void 0) return yield* usage(`--chunk-size: "${f.chunkSize.value}" is not a size`);
  const threshold = Option3.isSome(f.manifestThreshold) ? parseSize3(f.manifestThreshold.value) : settings.manifestThreshold.value;
  if (threshold === void 0) return yield* usage(`--manifest-threshold: "${Option3.getOrElse(f.manifestThreshold, () => "")}" is not a size`);
  const w = Option3.getOrUndefined(f.workers) ?? settings.workers.value;
  const key = yield* keyMaterial(f, mode === "create");
  const cipher = agcmCipher(key, { ...chunkSize !== void 0 ? { chunkSize } : {}, ...w !== void 0 ? { workers: w } : {} });
  const options = {
    source: f.file,
    dir,
    cipher,
    manifestThreshold: threshold,
    ...f.manifest ? { chunkManifest: true } : {},
    ...w !== void 0 ? { hashWorkers: w } : {},
    progress: Progress2.terminal({ quiet: f.quiet || f.json, label: `backup ${mode}` })
  };
  const r = yield* withAudit(
    f,
    settings,
    mode,
    f.file,
    (writer) => audited(writer, { operation: `backup-${mode}`, strategy: "native" }, mode === "create" ? create(options) : resume(options)),
    (r2) => ({ generation: r2.generation.generation, bytes: r2.summary.outputBytes })
  ).pipe(Effect7.ensuring(wipe(key)));
  if (f.json) yield* printJson({ operation: `backup-${mode}`, generation: r.generation, summary: r.summary });
  else {
    const g = r.generation;
    yield* note(f.quiet, `${mode === "create" ? "created" : "resumed and completed"} generation ${g.generation} of ${g.source}: ${nodePath.join(dir, g.file)} (${formatBytes2(g.plainBytes)} \u2192 ${formatBytes2(g.cipherBytes ?? 0)}, ${r.summary.totalChunks} chunks${g.chunked ? ", per-chunk manifest" : ""})`);
  }
});
var createCommand = Command2.make("create", createFlags, runCreate("create")).pipe(
  Command2.withDescription("Back up FILE as a new encrypted generation (AGCM) with a manifest")
);
var resumeCommand = Command2.make("resume", createFlags, runCreate("resume")).pipe(
  Command2.withDescription("Complete an interrupted backup of FILE from its checkpoint (same key)")
);
var verifyCommand = Command2.make(
  "verify",
  {
    ...keyFlags,
    dir: dirFlag,
    generation: generationFlag,
    deep: Flag3.Boolean("deep").pipe(Flag3.withDescription("Also decrypt every chunk and check plaintext digests (needs the key)"), Flag3.withDefault(false)),
    workers,
    auditLog: auditLogFlag,
    json,
    quiet,
    file
  },
  (f) => Effect7.gen(function* () {
    const settings = yield* loadSettings;
    const dir = backupDir(f.dir, settings);
    const key = f.deep ? yield* keyMaterial(f, false) : void 0;
    const w = Option3.getOrUndefined(f.workers) ?? settings.workers.value;
    const writer = yield* openAudit(f.auditLog, settings);
    const report2 = yield* verifyReport({
      dir,
      source: f.file,
      deep: f.deep,
      ...Option3.isSome(f.generation) ? { generation: f.generation.value } : {},
      ...key ? { cipher: agcmCipher(key, w !== void 0 ? { workers: w } : {}) } : {},
      ...w !== void 0 ? { hashWorkers: w } : {}
    }).pipe(
      Effect7.tap((r) => Effect7.sync(() => writer && record(writer, {
        v: AUDIT_VERSION,
        at: now(),
        type: "verify",
        source: r.source,
        generation: r.generation,
        ok: r.ok,
        deep: r.deep,
        bytes: r.bytes,
        durationMs: r.durationMs,
        damagedChunks: r.damage.flatMap((d) => d.chunk === void 0 ? [] : [d.chunk]),
        damage: r.damage.slice(0, 100).map((d) => `${d.kind}${d.chunk === void 0 ? "" : ` ${d.chunk}`} (bytes ${d.start}..${d.end}): ${d.detail}`)
      }))),
      Effect7.ensuring(key ? wipe(key) : Effect7.void),
      Effect7.ensuring(Effect7.sync(() => writer?.close()))
    );
    if (f.json) yield* printJson(report2);
    else if (report2.ok) {
      yield* note(f.quiet, `generation ${report2.generation} of ${report2.source} verifies: ${report2.chunks} chunks, ${formatBytes2(report2.bytes)}${report2.deep ? ", decrypted and checked" : ""} in ${report2.durationMs} ms`);
    } else {
      for (const d of report2.damage) {
        yield* Effect7.sync(() => process.stdout.write(`damaged ${d.kind}${d.chunk === void 0 ? "" : ` ${d.chunk}`}: bytes ${d.start}..${d.end} of ${report2.file}: ${d.detail}
`));
      }
    }
    if (!report2.ok) return yield* Effect7.fail(new BackupDamaged({ file: report2.file, generation: report2.generation, damage: report2.damage }));
  })
).pipe(Command2.withDescription("Re-read a backup and name every damaged chunk (exit 3 when damaged)"));
var restoreCommand = Command2.make(
  "restore",
  {
    ...keyFlags,
    dir: dirFlag,
    generation: generationFlag,
    output: Flag3.String("output").pipe(Flag3.withAlias("o"), Flag3.withDescription("Output file (default: the original path; never overwritten without --force)"), Flag3.optional),
    range: Flag3.String("range").pipe(Flag3.withDescription("Only plaintext bytes START:END (END exclusive; units allowed; START: means to the end)"), Flag3.optional),
    force: Flag3.Boolean("force").pipe(Flag3.withDescription("Replace an existing output file"), Flag3.withDefault(false)),
    workers,
    auditLog: auditLogFlag,
    json,
    quiet,
    file
  },
  (f) => Effect7.gen(function* () {
    const settings = yield* loadSettings;
    const dir = backupDir(f.dir, settings);
    const range = Option3.isSome(f.range) ? yield* parseRange(f.range.value) : void 0;
    const output = Option3.getOrElse(f.output, () => f.file);
    const w = Option3.getOrUndefined(f.workers) ?? settings.workers.value;
    const key = yield* keyMaterial(f, false);
    const r = yield* withAudit(
      f,
      settings,
      "restore",
      f.file,
      (writer) => audited(writer, { operation: "backup-restore", strategy: "native" }, restore({
        dir,
        source: f.file,
        cipher: agcmCipher(key, w !== void 0 ? { workers: w } : {}),
        output,
        overwrite: f.force,
        ...Option3.isSome(f.generation) ? { generation: f.generation.value } : {},
        ...range ? { range } : {},
        progress: Progress2.terminal({ quiet: f.quiet || f.json, label: "restore" })
      })),
      (r2) => ({ generation: r2.generation, bytes: r2.bytes })
    ).pipe(Effect7.ensuring(wipe(key)));
    if (f.json) yield* printJson({ operation: "backup-restore", ...r });
    else yield* note(f.quiet, `restored generation ${r.generation} of ${f.file} \u2192 ${r.output} (${formatBytes2(r.bytes)}, ${r.chunks} chunks)`);
  })
).pipe(Command2.withDescription("Decrypt a generation (or a byte range of it) to a file"));
var row = (g) => [
  String(g.generation),
  g.status,
  g.createdAt.replace("T", " ").slice(0, 19),
  formatBytes2(g.plainBytes),
  g.cipherBytes === null ? "-" : formatBytes2(g.cipherBytes),
  g.chunked ? "chunks" : "root",
  g.file
];
var listCommand = Command2.make(
  "list",
  {
    dir: dirFlag,
    json,
    file: Argument3.String("file").pipe(Argument3.withDescription("Only this source"), Argument3.optional)
  },
  (f) => Effect7.gen(function* () {
    const settings = yield* loadSettings;
    const gens = yield* list({ dir: backupDir(f.dir, settings), ...Option3.isSome(f.file) ? { source: f.file.value } : {} });
    if (f.json) return yield* printJson(gens);
    const bySource = /* @__PURE__ */ new Map();
    for (const g of gens) bySource.set(g.source, [...bySource.get(g.source) ?? [], g]);
    if (bySource.size === 0) return yield* Effect7.sync(() => process.stdout.write("no backups\n"));
    for (const [source, gs] of bySource) {
      yield* Effect7.sync(() => process.stdout.write(`${source}
${table([["gen", "status", "created (UTC)", "size", "backup", "manifest", "file"], ...gs.map(row)])}

`));
    }
  })
).pipe(Command2.withDescription("List generations (all sources, or FILE's)"));
var pruneCommand = Command2.make(
  "prune",
  {
    dir: dirFlag,
    policy: Flag3.String("policy").pipe(Flag3.withDescription("keep_all | keep_last:N | keep_days:D | keep_last_and_days:N,D (default keep_last:3, or [backup] retention)"), Flag3.optional),
    dryRun: Flag3.Boolean("dry-run").pipe(Flag3.withDescription("Show what would be deleted; delete nothing"), Flag3.withDefault(false)),
    auditLog: auditLogFlag,
    json,
    quiet,
    file: Argument3.String("file").pipe(Argument3.withDescription("Only this source"), Argument3.optional)
  },
  (f) => Effect7.gen(function* () {
    const settings = yield* loadSettings;
    const policyText = Option3.getOrElse(f.policy, () => settings.retention.value);
    const policy = yield* Effect7.try({ try: () => parsePolicy(policyText), catch: (e) => e });
    const source = Option3.getOrElse(f.file, () => "*");
    const r = yield* withAudit(
      f,
      settings,
      f.dryRun ? "prune-dry-run" : "prune",
      source,
      () => prune({ dir: backupDir(f.dir, settings), policy, dryRun: f.dryRun, ...Option3.isSome(f.file) ? { source: f.file.value } : {} }),
      (r2) => ({ generation: null, bytes: r2.deleted.reduce((s, g) => s + (g.cipherBytes ?? 0), 0) })
    );
    if (f.json) return yield* printJson(r);
    const verb = f.dryRun ? "would delete" : "deleted";
    for (const g of r.deleted) yield* note(f.quiet, `${verb} generation ${g.generation} of ${g.source} (${g.file})`);
    for (const g of r.damaged) yield* note(f.quiet, `warning: generation ${g.generation} of ${g.source} does not verify`);
    yield* note(f.quiet, `${policyText}: ${verb} ${r.deleted.length}, kept ${r.kept.length}; newest verified generation kept: ${r.protectedGenerations.map((g) => `${nodePath.basename(g.source)}#${g.generation}`).join(", ") || "none"}`);
  })
).pipe(Command2.withDescription("Delete generations outside the retention policy (never the newest that verifies)"));
var recoverCommand = Command2.make(
  "recover",
  { dir: dirFlag, json, quiet },
  (f) => Effect7.gen(function* () {
    const settings = yield* loadSettings;
    const r = yield* recover({ dir: backupDir(f.dir, settings) });
    if (f.json) return yield* printJson(r);
    yield* note(f.quiet, `rebuilt the registry: ${r.generations} generations (${r.fromManifests} from manifests, ${r.fromBackup} partial from .bak)${r.corruptMovedTo ? `; the corrupt registry is kept as ${r.corruptMovedTo}` : ""}`);
  })
).pipe(Command2.withDescription("Rebuild a corrupt registry from the manifests and the previous good registry"));
var backupCommand = Command2.make("backup").pipe(
  Command2.withDescription("Encrypted backup generations: create, verify, restore, retention"),
  Command2.withSubcommands([createCommand, resumeCommand, verifyCommand, restoreCommand, listCommand, pruneCommand, recoverCommand])
);

// src/commands/.smoke-entry.ts
var root = Command3.make("cage").pipe(Command3.withSubcommands([backupCommand, auditCommand]));
var program = Command3.runWith(root, { version: "0" })(process.argv.slice(2)).pipe(
  Effect8.catch((e) => report(e)),
  Effect8.provide(NodeServices.layer)
);
NodeRuntime.runMain(program, { teardown: (exit, onExit) => onExit(exit._tag === "Failure" ? 1 : Number(process.exitCode ?? 0)) });
