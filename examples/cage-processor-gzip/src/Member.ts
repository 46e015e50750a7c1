/**
 * The on-disk format: a gzip file (RFC 1952) made of one independent member per chunk.
 *
 * Each member carries its own total length in an extra field (RFC 1952 §2.3.1.1, FEXTRA),
 * the way BGZF (SAM/BAM specification §4.1) does, so a reader can find member boundaries
 * without inflating: that is what lets `gunzip()` decompress one member at a time with
 * memory bounded by the member size. Standard tools ignore the extra field, and RFC 1952
 * §2.2 makes concatenated members one valid file: `gunzip`, `zcat` and Node's
 * `zlib.gunzipSync` all read it.
 *
 * The file ends with an *end member*: an empty member whose extra field is tagged "Ce"
 * instead of "Cg" (BGZF ends with an empty EOF block for the same reason). Without it, a
 * file cut at a member boundary would be a shorter valid file; with it, truncation at any
 * point and data after the end are detected. The end member decompresses to nothing, so
 * standard tools are unaffected.
 *
 * Member layout (all integers little-endian):
 *
 * | bytes | field |
 * |---|---|
 * | 0-1 | ID1 ID2 = 1f 8b |
 * | 2 | CM = 8 (deflate) |
 * | 3 | FLG = 04 (FEXTRA) |
 * | 4-7 | MTIME = 0 (reproducible output) |
 * | 8 | XFL = 0 |
 * | 9 | OS = 255 (unknown) |
 * | 10-11 | XLEN = 8 |
 * | 12-13 | SI1 SI2 = "C" "g" (a data member) or "C" "e" (the end member) |
 * | 14-15 | LEN = 4 |
 * | 16-19 | member length in bytes, header to trailer inclusive |
 * | 20.. | raw deflate data (RFC 1951) |
 * | last 8 | CRC-32 of the uncompressed data, ISIZE = its length mod 2^32 |
 *
 * @module
 */
import * as zlib from "node:zlib"

/** Bytes before the deflate data. */
export const HEADER_BYTES = 20
/** Bytes after the deflate data (CRC-32 and ISIZE). */
export const TRAILER_BYTES = 8
/** The smallest possible member: header, an empty deflate block (2 bytes), trailer. */
export const MIN_MEMBER_BYTES = HEADER_BYTES + 2 + TRAILER_BYTES

const ID1 = 0x1f
const ID2 = 0x8b
const CM_DEFLATE = 8
const FLG_FEXTRA = 0x04
const OS_UNKNOWN = 255
const SI1 = 0x43 // "C"
const SI2_DATA = 0x67 // "g"
const SI2_END = 0x65 // "e"

/** Builds one member around `deflated`, the raw deflate data of `plain`. */
export const encodeMember = (plain: Uint8Array, deflated: Uint8Array, kind: "data" | "end" = "data"): Buffer => {
  const member = Buffer.allocUnsafe(HEADER_BYTES + deflated.length + TRAILER_BYTES)
  member[0] = ID1
  member[1] = ID2
  member[2] = CM_DEFLATE
  member[3] = FLG_FEXTRA
  member.writeUInt32LE(0, 4)
  member[8] = 0
  member[9] = OS_UNKNOWN
  member.writeUInt16LE(8, 10)
  member[12] = SI1
  member[13] = kind === "end" ? SI2_END : SI2_DATA
  member.writeUInt16LE(4, 14)
  member.writeUInt32LE(member.length, 16)
  member.set(deflated, HEADER_BYTES)
  member.writeUInt32LE(zlib.crc32(plain) >>> 0, member.length - 8)
  member.writeUInt32LE(plain.length % 0x1_0000_0000, member.length - 4)
  return member
}

/** What the first {@link HEADER_BYTES} bytes of a member say. */
export type HeaderCheck =
  | { readonly _tag: "Member"; readonly memberBytes: number; readonly end: boolean }
  | { readonly _tag: "NotGzip"; readonly detail: string }
  | { readonly _tag: "NoSizeField"; readonly detail: string }
  | { readonly _tag: "Corrupt"; readonly detail: string }

/** Reads a member header; `header` holds at least {@link HEADER_BYTES} bytes. */
export const readHeader = (header: Uint8Array): HeaderCheck => {
  const b = Buffer.from(header.buffer, header.byteOffset, HEADER_BYTES)
  if (b[0] !== ID1 || b[1] !== ID2 || b[2] !== CM_DEFLATE) {
    return { _tag: "NotGzip", detail: `not a gzip member (starts with ${b.subarray(0, 3).toString("hex")}, expected 1f8b08)` }
  }
  if (b[3] !== FLG_FEXTRA || b.readUInt16LE(10) !== 8 || b[12] !== SI1 || (b[13] !== SI2_DATA && b[13] !== SI2_END) || b.readUInt16LE(14) !== 4) {
    return { _tag: "NoSizeField", detail: "a gzip member without the Cg size field: this is not a file written by @acme/cage-processor-gzip (decompress it with gunzip)" }
  }
  // MTIME, XFL and OS are not covered by the CRC: a writer of this format always sets them to
  // the same values, so anything else is corruption (or another writer) and is refused.
  if (b.readUInt32LE(4) !== 0 || b[8] !== 0 || b[9] !== OS_UNKNOWN) {
    return { _tag: "Corrupt", detail: "corrupt gzip member: unexpected MTIME, XFL or OS header field" }
  }
  return { _tag: "Member", memberBytes: b.readUInt32LE(16), end: b[13] === SI2_END }
}

/** The end member that closes every file (an empty member tagged "Ce"). */
export const END_MEMBER: Buffer = encodeMember(new Uint8Array(0), zlib.deflateRawSync(new Uint8Array(0)), "end")
