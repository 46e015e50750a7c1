/**
 * `cage encrypt/decrypt --backend age|age-lib`: wired to @cage/age.
 *
 * @module
 */
import { Effect } from "effect"
import { usage } from "../Errors.js"

export const ageEncryptCommand = (_f: unknown) => usage("the age backend is being wired (see @cage/age)")
export const ageDecryptCommand = (_f: unknown) => usage("the age backend is being wired (see @cage/age)")
void Effect
