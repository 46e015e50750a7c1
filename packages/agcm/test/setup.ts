// Every test file of this package: segments reach the worker pool from its start, whether
// or not its workers are online yet, so that tests of the pool route the same way each run.
// The last describe block of test/direct.test.ts turns it off to test the default (the calling thread runs segments
// until a worker is online).
import { poolSeam } from "../src/internal/faults.js"

poolSeam.routeBeforeOnline = true
