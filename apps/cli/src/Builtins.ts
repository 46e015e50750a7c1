/**
 * The processors that ship with cage, as factories. Keyed ciphers are listed for
 * `cage processors list` but are created by `cage encrypt`/`decrypt` themselves, which own
 * the key material.
 *
 * @module
 */
import { PROCESSOR_VERSION as AGCM_VERSION } from "@cage/agcm"
import { digestFactory, PROCESSOR_API_VERSION, type ProcessorFactory, UsageError } from "@cage/core"
import { jsonIndexFactory, jsonValidateFactory } from "@cage/streamsweep"

export interface Builtin {
  readonly factory: ProcessorFactory<Record<string, unknown>>
  readonly version: string
  /** True for ciphers: they need key material and fill the cipher slot of a pipeline. */
  readonly keyed: boolean
}

const keyedOnly = (name: string) => () => {
  throw new UsageError({ detail: `${name} is created by cage encrypt/decrypt with its key options` })
}

export const builtinFactories: ReadonlyArray<Builtin> = [
  {
    factory: { name: "agcm-encrypt", apiVersion: PROCESSOR_API_VERSION, description: "AGCM v2 encryption (AES-256-GCM, C2SP chunked encryption)", capabilities: { kind: "transform", ordered: false }, make: keyedOnly("agcm-encrypt") },
    version: AGCM_VERSION,
    keyed: true
  },
  {
    factory: { name: "agcm-decrypt", apiVersion: PROCESSOR_API_VERSION, description: "AGCM v2 decryption (and v1 with --legacy-v1)", capabilities: { kind: "transform", ordered: false }, make: keyedOnly("agcm-decrypt") },
    version: AGCM_VERSION,
    keyed: true
  },
  { factory: digestFactory as ProcessorFactory<Record<string, unknown>>, version: "1.0.0", keyed: false },
  { factory: jsonValidateFactory as ProcessorFactory<Record<string, unknown>>, version: "1.0.0", keyed: false },
  { factory: jsonIndexFactory as ProcessorFactory<Record<string, unknown>>, version: "1.0.0", keyed: false }
]
