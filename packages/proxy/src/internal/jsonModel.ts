/**
 * Replace the top-level `"model"` string of a JSON body without re-serialising it, so every
 * other byte reaches the upstream exactly as the client sent it.
 */

const QUOTE = 0x22
const BACKSLASH = 0x5c

/** Index just past the closing quote of the string opening at `open`, or -1. */
const stringEnd = (buf: Buffer, open: number): number => {
  let i = open + 1
  for (;;) {
    // indexOf is a native scan: string contents (most of a Messages body) are skipped fast.
    const quote = buf.indexOf(QUOTE, i)
    if (quote === -1) return -1
    let backslashes = 0
    for (let j = quote - 1; j > open && buf[j] === BACKSLASH; j--) backslashes++
    if (backslashes % 2 === 0) return quote + 1
    i = quote + 1
  }
}

const isSpace = (c: number | undefined) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09

/** The span `[start, end)` of the last top-level `"model"` value if it is a string. */
export const modelSpan = (buf: Buffer): readonly [number, number] | undefined => {
  let depth = 0
  let expectKey = false
  let span: readonly [number, number] | undefined
  let i = 0
  const n = buf.length
  while (i < n) {
    const c = buf[i]!
    if (c === QUOTE) {
      const end = stringEnd(buf, i)
      if (end === -1) return undefined
      if (depth === 1 && expectKey) {
        const raw = buf.toString("utf8", i, end)
        const key = raw.includes("\\") ? (JSON.parse(raw) as string) : raw.slice(1, -1)
        let j = end
        while (isSpace(buf[j])) j++
        if (buf[j] !== 0x3a) return undefined
        j++
        while (isSpace(buf[j])) j++
        if (key === "model" && buf[j] === QUOTE) {
          const valueEnd = stringEnd(buf, j)
          if (valueEnd === -1) return undefined
          span = [j, valueEnd]
          i = valueEnd
        } else {
          i = j
        }
        expectKey = false
        continue
      }
      i = end
      continue
    }
    if (c === 0x7b || c === 0x5b) {
      depth++
      expectKey = c === 0x7b && depth === 1
    } else if (c === 0x7d || c === 0x5d) {
      depth--
    } else if (c === 0x2c && depth === 1) {
      expectKey = true
    }
    i++
  }
  return span
}

/** The body with its top-level model replaced, or `undefined` if it has no such string. */
export const replaceModel = (buf: Buffer, model: string): Buffer | undefined => {
  const span = modelSpan(buf)
  if (span === undefined) return undefined
  return Buffer.concat([buf.subarray(0, span[0]), Buffer.from(JSON.stringify(model), "utf8"), buf.subarray(span[1])])
}
