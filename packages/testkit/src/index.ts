/**
 * @cage/testkit: the conformance kit every Cage chunk processor runs on itself.
 *
 * @module
 */
export {
  boundarySizes,
  checkBoundary,
  checkByteByByte,
  checkFailure,
  checkIdentity,
  checkMemory,
  checkOutOfOrder,
  checkResume,
  checks,
  checkTampering,
  type ConformanceOptions,
  describeProcessorConformance,
  effectiveChunkBytes,
  InjectedFailure,
  type Interruption,
  type MemoryReport,
  pseudoRandomBytes
} from "./Conformance.js"
