#!/usr/bin/env node
/**
 * The `cage` program (bundled as `dist/cli.cjs`; `src/bin.ts` runs it through V8's code cache).
 * How it runs (signals, exit codes, a closed pipe): `Program.ts`.
 *
 * @module
 */
import { cli } from "./main.js"
import { runProgram } from "./Program.js"

runProgram(cli)
