/** A FIFO of byte buffers that hands out exact-length runs (copying only when a run spans buffers). */
export class ByteQueue {
  private parts: Array<Uint8Array> = []
  private head = 0
  private readonly mine = new WeakSet<Uint8Array>()
  length = 0

  push(b: Uint8Array): void {
    if (b.length === 0) return
    this.parts.push(b)
    this.length += b.length
  }

  /** Removes and returns the first `n` bytes (`n <= length`). */
  take(n: number): Uint8Array {
    const out = new Uint8Array(n)
    let at = 0
    while (at < n) {
      const p = this.parts[0]
      const avail = p.length - this.head
      const k = Math.min(avail, n - at)
      out.set(p.subarray(this.head, this.head + k), at)
      at += k
      this.head += k
      if (this.head === p.length) {
        this.parts.shift()
        this.head = 0
      }
    }
    this.length -= n
    return out
  }

  /**
   * Replaces what is left with one copy of its own, so the queue no longer holds views of
   * buffers it was given: a caller may reuse its buffer once `write` resolves (a read loop
   * refilling one buffer), and the leftover never pins a large buffer of the caller's.
   */
  own(): void {
    // Only the caller's parts are copied (once each: a copy is the queue's own from then on),
    // so writing in small pieces never copies a leftover over and over.
    for (let k = 0; k < this.parts.length; k++) {
      const p = this.parts[k]
      if (this.mine.has(p)) continue
      const copy = new Uint8Array(p.subarray(k === 0 ? this.head : 0)) // a copy (Buffer#slice would be a view)
      this.mine.add(copy)
      this.parts[k] = copy
      if (k === 0) this.head = 0
    }
  }

  /** A copy of the first `n` bytes without removing them. */
  peek(n: number): Uint8Array {
    const out = new Uint8Array(Math.min(n, this.length))
    let at = 0
    let head = this.head
    for (const p of this.parts) {
      if (at >= out.length) break
      const k = Math.min(p.length - head, out.length - at)
      out.set(p.subarray(head, head + k), at)
      at += k
      head = 0
    }
    return out
  }
}
