/** Deterministic NDJSON test inputs of an exact size (records padded with spaces). */
const encoder = new TextEncoder()

const record = (i: number, rnd: () => number): string =>
  JSON.stringify({
    id: i,
    name: `é€😀 "q" \\ ${"x".repeat(Math.floor(rnd() * 20))}`,
    n: [-1.5e-3, 0, 12345678901234567000, -0.25, 1e300][i % 5],
    ok: rnd() < 0.5,
    nil: null,
    xs: [1, [2, {}], { deep: { er: [i] } }]
  }) + "\n"

export const ndjsonInput = (size: number, seed: number): Uint8Array => {
  let s = seed >>> 0 || 1
  const rnd = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32
  const parts: Array<string> = []
  let length = 0
  for (let i = 0; ; i++) {
    const r = record(i, rnd)
    const n = encoder.encode(r).length
    if (length + n > size) break
    parts.push(r)
    length += n
  }
  return encoder.encode(parts.join("") + " ".repeat(size - length))
}

/** About `total` bytes of NDJSON as repeated 1 MiB blocks (the memory check's input). */
export function* largeNdjson(total: number): Iterable<Uint8Array> {
  const block = ndjsonInput(1 << 20, 7)
  for (let n = 0; n < total; n += block.length) yield block
}
