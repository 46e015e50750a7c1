/**
 * @cage/testkit: the conformance kit every Cage chunk processor runs on itself.
 *
 * @module
 */
export {
  boundarySizes,
  checkBoundary,
  checkByteByByte,
  checkChunkSizeIndependence,
  checkFailure,
  checkIdentity,
  checkInputChangesOutput,
  checkMemory,
  checkOutOfOrder,
  checkReference,
  checkResume,
  checks,
  checkTampering,
  type ConformanceOptions,
  describeProcessorConformance,
  effectiveChunkBytes,
  InjectedFailure,
  type Interruption,
  type MemoryReport,
  pseudoRandomBytes,
  referenceChunkSizes
} from "./Conformance.js"
