/**
 * The metadata gatherer behind `inspect` and the `json-index` processor: scanner events in,
 * bounded statistics out. Every structure here has a fixed budget (see `InspectLimits`).
 *
 * @internal
 */
import * as fs from "node:fs"
import { internKey, keyStep } from "./path.js"
import {
  KIND_ARRAY,
  KIND_NAMES,
  KIND_NUMBER,
  KIND_OBJECT,
  KIND_STRING,
  MODE_DOCUMENT,
  MODE_NDJSON,
  MODE_SEQUENCE,
  S_STRING,
  S_UTF8,
  type ScanEvents,
  EventScanner,
  type Scanner
} from "./scanner.js"

export interface InspectLimits {
  readonly maxDepth: number
  readonly exactKeyLimit: number
  readonly sketchCapacity: number
  readonly pathLimit: number
  readonly topKeys: number
  readonly topPaths: number
  readonly largestTokens: number
  readonly deepThreshold: number
  readonly hugeTokenBytes: number
  readonly anomalyLimit: number
  readonly duplicateKeyBudget: number
  readonly previewBytes: number
}

export type InspectFormat = "auto" | "document" | "array" | "ndjson" | "sequence"

const decoder = new TextDecoder()

/** A bounded list of anomalies: the first `limit` items and the total count. */
export interface AnomalyList<T> {
  count: number
  items: Array<T>
}

export interface Token {
  readonly offset: number
  readonly bytes: number
  readonly path: string
  /** The first bytes of the token (JSON text, quotes included), decoded leniently. */
  readonly preview: string
}

/** A sidecar index writer: `start end\n` lines through a 64 KiB text buffer. */
export class IndexWriter {
  private pending = ""
  private fd: number
  readonly temp: string
  constructor(readonly path: string) {
    this.temp = `${path}.partial`
    this.fd = fs.openSync(this.temp, "w", 0o644)
  }
  add(start: number, end: number) {
    this.pending += `${start} ${end}\n`
    if (this.pending.length >= 65536) this.flush()
  }
  private flush() {
    fs.writeSync(this.fd, this.pending)
    this.pending = ""
  }
  commit() {
    this.flush()
    fs.fsyncSync(this.fd)
    fs.closeSync(this.fd)
    fs.renameSync(this.temp, this.path)
  }
  abort() {
    try {
      fs.closeSync(this.fd)
      fs.unlinkSync(this.temp)
    } catch {
      // already gone
    }
  }
}

/**
 * A node of the collapsed-path trie: one per distinct key path (`$[].user.name`), plus one
 * uncounted `[]` node per array path. Lookups go key by key, so no path string is built
 * per key event.
 */
interface PathNode {
  readonly path: string
  count: number
  children: Map<string, PathNode> | undefined
  items: PathNode | undefined
}

const pathNode = (path: string): PathNode => ({ path, count: 0, children: undefined, items: undefined })

export class Inspector implements ScanEvents {
  readonly eventDepth = Number.MAX_SAFE_INTEGER
  readonly wantKeys = true
  readonly scanner: Scanner
  elementDepth: number
  // Current buffer, for previews.
  private buf: Uint8Array = new Uint8Array(0)
  private bufPos = 0
  private bufFrom = 0

  readonly counts = [0, 0, 0, 0, 0, 0, 0]
  elements = 0
  private elemStart = 0
  private sawTop = false
  // Per open container (index = nesting level).
  private readonly isArray: Array<boolean> = [false]
  private readonly root = pathNode("$")
  /** The collapsed path of the container open at each level. */
  private readonly container: Array<PathNode> = [this.root]
  /** The path of the current member of the object open at each level (undefined before its first key). */
  private readonly member: Array<PathNode | undefined> = [undefined]
  private readonly objectKeys: Array<Set<string> | undefined> = [undefined]
  private trackedKeys = 0
  duplicateCheckComplete = true
  private tokenStart = 0
  // Key statistics.
  private keyCounts = new Map<string, number>()
  keysExact = true
  keysTotal = 0
  sketchError = 0
  distinctKeysAtLeast = 0
  // Key paths.
  distinctPaths = 0
  pathsExact = true
  // Tokens and anomalies.
  readonly largestStrings: Array<Token> = []
  readonly largestNumbers: Array<Token> = []
  readonly deepNesting: AnomalyList<{ offset: number; depth: number; path: string }> = { count: 0, items: [] }
  readonly hugeTokens: AnomalyList<{ offset: number; bytes: number; kind: string; path: string }> = { count: 0, items: [] }
  readonly duplicateKeys: AnomalyList<{ offset: number; key: string; path: string }> = { count: 0, items: [] }
  readonly badUtf8: AnomalyList<number> = { count: 0, items: [] }

  constructor(readonly format: InspectFormat, readonly limits: InspectLimits, readonly index?: IndexWriter) {
    this.elementDepth = format === "array" ? 1 : 0
    this.scanner = new EventScanner({
      mode: format === "ndjson" ? MODE_NDJSON : format === "array" || format === "document" ? MODE_DOCUMENT : MODE_SEQUENCE,
      maxDepth: limits.maxDepth,
      events: this,
      lenientUtf8: true
    })
  }

  write(buf: Uint8Array, from: number, to: number): boolean {
    this.buf = buf
    this.bufPos = this.scanner.pos
    this.bufFrom = from
    const ok = this.scanner.write(buf, from, to)
    const s = this.scanner
    // A value token continues into the next write: keep its first bytes for the preview,
    // so previews do not depend on where the input was cut.
    if (ok && s.state >= S_STRING && !(s.inKey && s.state <= S_UTF8)) this.carryToken(buf, from, to)
    return ok
  }

  private carry = new Uint8Array(0)
  private carryLen = 0
  private carryFor = -1

  private carryToken(buf: Uint8Array, from: number, to: number) {
    const max = this.limits.previewBytes
    if (this.carry.length < max) this.carry = new Uint8Array(max)
    if (this.carryFor !== this.tokenStart) {
      this.carryFor = this.tokenStart
      this.carryLen = 0
      from = Math.max(from, this.tokenStart - this.bufPos + this.bufFrom)
    }
    const n = Math.min(max - this.carryLen, to - from)
    if (n > 0) this.carry.set(buf.subarray(from, from + n), this.carryLen)
    this.carryLen += Math.max(0, n)
  }

  /** The first `previewBytes` bytes of the token `[start, end)`, as text (a character cut at the end dropped). */
  private preview(start: number, end: number): string {
    const text = this.previewText(start, end)
    return end - start > this.limits.previewBytes ? text.replace(/\uFFFD+$/, "") : text
  }

  private previewText(start: number, end: number): string {
    const max = Math.min(this.limits.previewBytes, end - start)
    const i = start - this.bufPos + this.bufFrom
    if (i >= this.bufFrom) return decoder.decode(this.buf.subarray(i, i + max))
    const head = this.carry.subarray(0, Math.min(this.carryLen, max))
    const rest = this.buf.subarray(this.bufFrom, this.bufFrom + (max - head.length))
    const all = new Uint8Array(head.length + rest.length)
    all.set(head)
    all.set(rest, head.length)
    return decoder.decode(all)
  }

  /** Collapsed path node of a value at `depth` (array indices as `[]`). */
  private valueNode(depth: number): PathNode {
    if (depth === 0) return this.root
    const parent = this.container[depth]
    if (this.isArray[depth]) return (parent.items ??= pathNode(`${parent.path}[]`))
    return this.member[depth] ?? parent
  }

  private valuePath(depth: number): string {
    return this.valueNode(depth).path
  }

  valueStart(kind: number, depth: number, offset: number): void {
    this.counts[kind]++
    if (depth === 0 && !this.sawTop) {
      this.sawTop = true
      if (this.format === "auto" && kind === KIND_ARRAY) {
        this.elementDepth = 1
        this.scanner.mode = MODE_DOCUMENT
      }
    }
    if (depth === this.elementDepth) this.elemStart = offset
    if (kind === KIND_OBJECT || kind === KIND_ARRAY) {
      const d = depth + 1
      // Recorded where nesting crosses the threshold, not for every deeper container.
      if (depth === this.limits.deepThreshold) {
        const list = this.deepNesting
        if (list.count++ < this.limits.anomalyLimit) list.items.push({ offset, depth: d, path: this.valuePath(depth) })
      }
      this.isArray[d] = kind === KIND_ARRAY
      this.container[d] = this.valueNode(depth)
      this.member[d] = undefined
      this.objectKeys[d] = undefined
    } else this.tokenStart = offset
  }

  valueEnd(kind: number, depth: number, end: number): void {
    if (depth === this.elementDepth) {
      this.elements++
      this.index?.add(this.elemStart, end)
    }
    if (kind === KIND_OBJECT) {
      const keys = this.objectKeys[depth + 1]
      if (keys !== undefined) {
        this.trackedKeys -= keys.size
        this.objectKeys[depth + 1] = undefined
      }
    } else if (kind === KIND_STRING || kind === KIND_NUMBER) {
      const start = this.tokenStart
      const bytes = end - start
      const list = kind === KIND_STRING ? this.largestStrings : this.largestNumbers
      const n = this.limits.largestTokens
      if (list.length < n || bytes > list[list.length - 1].bytes) {
        const token = { offset: start, bytes, path: this.valuePath(depth), preview: this.preview(start, end) }
        let at = list.length
        while (at > 0 && list[at - 1].bytes < bytes) at--
        list.splice(at, 0, token)
        if (list.length > n) list.pop()
      }
      if (bytes > this.limits.hugeTokenBytes) {
        const huge = this.hugeTokens
        if (huge.count++ < this.limits.anomalyLimit) huge.items.push({ offset: start, bytes, kind: KIND_NAMES[kind], path: this.valuePath(depth) })
      }
    }
  }

  key(bytes: Uint8Array, from: number, to: number, depth: number, truncated: boolean): void {
    const key = truncated ? internKey(bytes, from, to) + "…" : internKey(bytes, from, to)
    this.countKey(key)
    const parent = this.container[depth]
    let node = parent.children?.get(key)
    if (node === undefined) {
      node = pathNode(parent.path + keyStep(key))
      // Past the budget a new path is still followed (for deeper paths) but not remembered.
      if (this.distinctPaths < this.limits.pathLimit) {
        ;(parent.children ??= new Map()).set(key, node)
        this.distinctPaths++
      } else this.pathsExact = false
    }
    node.count++
    this.member[depth] = node
    // Duplicate keys in one object, within a fixed budget of remembered keys.
    let set = this.objectKeys[depth]
    if (set?.has(key)) {
      const list = this.duplicateKeys
      if (list.count++ < this.limits.anomalyLimit) list.items.push({ offset: this.scanner.tokenStart, key, path: parent.path })
    } else if (this.trackedKeys < this.limits.duplicateKeyBudget) {
      if (set === undefined) set = this.objectKeys[depth] = new Set()
      set.add(key)
      this.trackedKeys++
    } else this.duplicateCheckComplete = false
  }

  invalidUtf8(offset: number): void {
    const list = this.badUtf8
    if (list.count++ < this.limits.anomalyLimit) list.items.push(offset)
  }

  private countKey(key: string) {
    this.keysTotal++
    const m = this.keyCounts
    const c = m.get(key)
    if (c !== undefined) {
      m.set(key, c + 1)
      return
    }
    if (this.keysExact) {
      if (m.size < this.limits.exactKeyLimit) {
        m.set(key, 1)
        return
      }
      // Switch to a Misra-Gries sketch seeded with the heaviest exact counts.
      this.keysExact = false
      this.distinctKeysAtLeast = m.size + 1
      const sorted = [...m].sort((a, b) => b[1] - a[1])
      const keep = this.limits.sketchCapacity - 1
      // Keys dropped here lose at most the largest dropped count.
      this.sketchError = keep < sorted.length ? sorted[keep][1] : 0
      this.keyCounts = new Map(sorted.slice(0, keep))
      this.keyCounts.set(key, 1)
      return
    }
    if (m.size < this.limits.sketchCapacity) {
      m.set(key, 1)
      return
    }
    // Misra-Gries: no room, so every counter (and the new key's) loses one.
    this.sketchError++
    for (const [k, v] of m) {
      if (v <= 1) m.delete(k)
      else m.set(k, v - 1)
    }
  }

  topKeys(): Array<{ key: string; count: number }> {
    return [...this.keyCounts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, this.limits.topKeys).map(([key, count]) => ({ key, count }))
  }

  topPaths(): Array<{ path: string; count: number }> {
    const all: Array<{ path: string; count: number }> = []
    const visit = (n: PathNode) => {
      if (n.children !== undefined) {
        for (const c of n.children.values()) {
          all.push({ path: c.path, count: c.count })
          visit(c)
        }
      }
      if (n.items !== undefined) visit(n.items)
    }
    visit(this.root)
    return all.sort((a, b) => b.count - a.count || (a.path < b.path ? -1 : 1)).slice(0, this.limits.topPaths)
  }

  get distinctKeys(): number {
    return this.keysExact ? this.keyCounts.size : this.distinctKeysAtLeast
  }

}
