/**
 * The audit trail a run writes: where the log is (`--audit-log`, else `[audit] log` in
 * cage.toml), its rotation size (`[audit] max_bytes`), and the telemetry wiring that records
 * a run into it. Used by encrypt, decrypt, the age backends and the backup commands.
 *
 * @module
 */
import { type AuditWriter, layer as auditLayer, makeWriter, type RunContext } from "@cage/audit"
import { fromSystemError } from "@cage/core"
import { Effect, type Layer, Option } from "effect"
import { Flag } from "effect/cli"
import type { Settings } from "./Config.js"

/** `--audit-log FILE`. */
export const auditLogFlag = Flag.String("audit-log").pipe(Flag.withDescription("Append audit events (JSON Lines) to FILE (default: [audit] log in cage.toml)"), Flag.optional)

/**
 * Opens the audit writer when a log is configured; `undefined` otherwise. The caller closes it.
 * Fails with `IoError` when the log cannot be opened.
 */
export const openAudit = (flag: Option.Option<string>, settings: Settings) =>
  Effect.gen(function*() {
    const path = Option.getOrUndefined(flag) ?? settings.auditLog.value
    if (path === undefined) return undefined
    return yield* Effect.try({ try: () => makeWriter(path, { maxBytes: settings.auditMaxBytes.value }), catch: (e) => fromSystemError("open audit log", path, e) })
  })

/** Provides core telemetry to `effect` so the run is audited into `writer` (no-op without one). */
export const audited = <A, E, R>(writer: AuditWriter | undefined, context: RunContext, effect: Effect.Effect<A, E, R>) =>
  writer ? effect.pipe(Effect.provide(auditLayer(writer, context) as Layer.Layer<never>)) : effect

