/**
 * Run and chunk telemetry, published on an Effect stream for consumers such as the audit
 * package. Events carry timestamps (ms since the epoch), byte counts and durations (ms);
 * never payload, keys or passphrases.
 *
 * The engine publishes through the {@link Telemetry} service, whose default is a no-op, so
 * runs without a subscriber pay nothing. Provide {@link layerPubSub} to receive events.
 *
 * @module
 */
import { Context, Effect, Layer, PubSub, Stream } from "effect"

interface Base {
  /** Random id shared by every event of one run. */
  readonly runId: string
  /** Wall-clock time in ms since the epoch. */
  readonly at: number
}

/** Every event the engine publishes. */
export type TelemetryEvent =
  | Base & {
    readonly type: "run_start"
    readonly input: string
    readonly output: string | null
    readonly pipeline: ReadonlyArray<string>
    /** Input bytes, or null for a stream. */
    readonly totalBytes: number | null
    /** Chunks in the plan, or null for a stream. */
    readonly totalChunks: number | null
    readonly chunkBytes: number
    /** First chunk index processed (> 0 when resuming). */
    readonly resumedFrom: number
    /**
     * In a run cut into stages (see `runPipeline`), which stage this run is: `index` from 0
     * to `of - 1`, each with its own `runId`. Absent for a one-stage run.
     */
    readonly stage?: { readonly index: number; readonly of: number }
  }
  | Base & { readonly type: "chunk_start"; readonly chunk: number; readonly bytes: number }
  | Base & { readonly type: "chunk_complete"; readonly chunk: number; readonly bytes: number; readonly outputBytes: number; readonly durationMs: number }
  | Base & { readonly type: "chunk_failed"; readonly chunk: number; readonly error: string }
  | Base & {
    readonly type: "run_complete"
    readonly ok: boolean
    /** Input bytes processed by this run. */
    readonly bytes: number
    /** Output bytes written (header included; 0 without output, or when the run failed). */
    readonly outputBytes: number
    readonly chunks: number
    readonly durationMs: number
    readonly error?: string
  }

/** The publisher the engine writes to. */
export interface TelemetryPublisher {
  readonly enabled: boolean
  readonly publish: (event: TelemetryEvent) => Effect.Effect<void>
}

/** The telemetry service; defaults to a disabled no-op publisher. */
export const Telemetry = Context.Reference<TelemetryPublisher>("@cage/core/Telemetry", {
  defaultValue: () => ({ enabled: false, publish: () => Effect.void })
})

/** The subscription side of {@link layerPubSub}. */
export class TelemetryEvents extends Context.Service<TelemetryEvents, {
  /** A stream of every event published after subscription. */
  readonly events: Stream.Stream<TelemetryEvent>
  readonly pubsub: PubSub.PubSub<TelemetryEvent>
}>()("@cage/core/TelemetryEvents") {}

/**
 * A PubSub-backed telemetry layer. Unbounded so a slow subscriber never stalls the engine;
 * subscribers should drain promptly (the audit writer does).
 */
export const layerPubSub: Layer.Layer<TelemetryEvents> = Layer.effectContext(
  Effect.gen(function*() {
    const pubsub = yield* PubSub.unbounded<TelemetryEvent>()
    const publisher: TelemetryPublisher = { enabled: true, publish: (e) => PubSub.publish(pubsub, e).pipe(Effect.asVoid) }
    return Context.make(TelemetryEvents, { events: Stream.fromPubSub(pubsub), pubsub }).pipe(
      Context.add(Telemetry, publisher)
    )
  })
)

/** A telemetry publisher that calls `f` for each event (tests, simple sinks). */
export const layerCallback = (f: (event: TelemetryEvent) => void): Layer.Layer<never> =>
  Layer.succeed(Telemetry, { enabled: true, publish: (e) => Effect.sync(() => f(e)) })
