/**
 * The processors that ship with cage, as factories. Keyed ciphers are listed for
 * `cage processors list` but are created by `cage encrypt`/`decrypt` themselves, which own
 * the key material (a pipeline in `cage.toml` can only name their slot).
 *
 * @module
 */
import { type AgcmDecryptOptions, agcmDecryptFactory, type AgcmEncryptOptions, agcmEncryptFactory, PROCESSOR_VERSION as AGCM_VERSION } from "@cage/agcm"
import { digestFactory, type ProcessorFactory } from "@cage/core"
import { jsonIndexFactory, jsonValidateFactory } from "@cage/streamsweep"

/** A built-in processor: a cipher (keyed), or one a pipeline may create from its options. */
export type Builtin =
  | {
    /** Made from `cage.toml` options (`[processors.<name>]`). */
    readonly factory: ProcessorFactory<Record<string, unknown>>
    readonly version: string
    readonly keyed: false
  }
  | {
    /** Needs key material: made only by the command that reads it. */
    readonly factory: ProcessorFactory<AgcmEncryptOptions> | ProcessorFactory<AgcmDecryptOptions>
    readonly version: string
    /** True for ciphers: they need key material and fill the cipher slot of a pipeline. */
    readonly keyed: true
  }

export const builtinFactories: ReadonlyArray<Builtin> = [
  { factory: agcmEncryptFactory, version: AGCM_VERSION, keyed: true },
  // Described with the flag that turns v1 on (the library's description names its option).
  { factory: { ...agcmDecryptFactory, description: "AGCM v2 decryption (and v1 with --legacy-v1)" }, version: AGCM_VERSION, keyed: true },
  { factory: digestFactory as ProcessorFactory<Record<string, unknown>>, version: "1.0.0", keyed: false },
  { factory: jsonValidateFactory as ProcessorFactory<Record<string, unknown>>, version: "1.0.0", keyed: false },
  { factory: jsonIndexFactory as ProcessorFactory<Record<string, unknown>>, version: "1.0.0", keyed: false }
]
