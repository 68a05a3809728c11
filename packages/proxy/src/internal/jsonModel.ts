/**
 * What the data plane needs from a request body — the top-level `model`, `stream` and
 * `max_tokens` — read in one pass over the bytes, without parsing the rest: a Claude Code body
 * is 100 KB to 1 MB of conversation, and `JSON.parse` of it costs ~1 ms and allocates the whole
 * tree per request. The scan checks the structure (one object; strings closed; brackets
 * balanced and matching; top-level values well-formed) but not every literal nested inside, so
 * a body malformed deep inside reaches the provider, whose 400 passes through. When the scan
 * finds the body malformed, the caller parses it to say why (or to handle it anyway).
 *
 * `spliceModel` replaces the model's bytes, so every other byte reaches the upstream exactly as
 * the client sent it.
 */

const QUOTE = 0x22
const BACKSLASH = 0x5c
const COMMA = 0x2c
const COLON = 0x3a
const OPEN_BRACE = 0x7b
const CLOSE_BRACE = 0x7d
const OPEN_BRACKET = 0x5b
const CLOSE_BRACKET = 0x5d

export interface TopLevel {
  /** The last top-level `model`: its decoded string and the byte span of its JSON string, or what else it was. */
  readonly model: { readonly value: string; readonly start: number; readonly end: number } | "absent" | "not_a_string"
  /** Whether the top-level `stream` is `true`. */
  readonly stream: boolean
  /** The top-level `max_tokens` when it is a number. */
  readonly maxTokens: number | undefined
}

const isSpace = (c: number | undefined) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09

const skipSpace = (buf: Buffer, i: number): number => {
  while (isSpace(buf[i])) i++
  return i
}

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

const hasEscape = (buf: Buffer, start: number, end: number): boolean => {
  for (let j = start; j < end; j++) if (buf[j] === BACKSLASH) return true
  return false
}

/** The string at `[start, end)` (quotes included), decoded. */
const decodeString = (buf: Buffer, start: number, end: number): string | undefined => {
  const raw = buf.toString("utf8", start, end)
  if (!raw.includes("\\")) return raw.slice(1, -1)
  try {
    return JSON.parse(raw) as string
  } catch {
    return undefined
  }
}

const LITERAL = /^(?:true|false|null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)$/

/** Index just past the value starting at `i`, or -1 when it is malformed. */
const valueEnd = (buf: Buffer, i: number): number => {
  const c = buf[i]
  if (c === QUOTE) return stringEnd(buf, i)
  if (c === OPEN_BRACE || c === OPEN_BRACKET) {
    const closers: Array<number> = [c === OPEN_BRACE ? CLOSE_BRACE : CLOSE_BRACKET]
    const n = buf.length
    let j = i + 1
    while (j < n) {
      const d = buf[j]!
      if (d === QUOTE) {
        j = stringEnd(buf, j)
        if (j === -1) return -1
        continue
      }
      if (d === OPEN_BRACE) closers.push(CLOSE_BRACE)
      else if (d === OPEN_BRACKET) closers.push(CLOSE_BRACKET)
      else if (d === CLOSE_BRACE || d === CLOSE_BRACKET) {
        if (closers.pop() !== d) return -1
        if (closers.length === 0) return j + 1
      }
      j++
    }
    return -1
  }
  let j = i
  while (j < buf.length && !isSpace(buf[j]) && buf[j] !== COMMA && buf[j] !== CLOSE_BRACE && buf[j] !== CLOSE_BRACKET) j++
  return j > i && j - i <= 64 && LITERAL.test(buf.toString("latin1", i, j)) ? j : -1
}

/** The top-level fields of a JSON object body, or `"malformed"` (not one well-formed object, as far as the scan can tell). */
export const scanTopLevel = (buf: Buffer): TopLevel | "malformed" => {
  let model: TopLevel["model"] = "absent"
  let stream = false
  let maxTokens: number | undefined
  let i = skipSpace(buf, 0)
  if (buf[i] !== OPEN_BRACE) return "malformed"
  i = skipSpace(buf, i + 1)
  if (buf[i] === CLOSE_BRACE) i++
  else {
    for (;;) {
      if (buf[i] !== QUOTE) return "malformed"
      const keyEnd = stringEnd(buf, i)
      if (keyEnd === -1) return "malformed"
      // Only three keys matter: the others are decoded only when escapes could spell one of them.
      const keyLength = keyEnd - i
      const key = keyLength === 7 || keyLength === 8 || keyLength === 12 || hasEscape(buf, i, keyEnd) ? decodeString(buf, i, keyEnd) : ""
      if (key === undefined) return "malformed"
      i = skipSpace(buf, keyEnd)
      if (buf[i] !== COLON) return "malformed"
      const start = skipSpace(buf, i + 1)
      const end = valueEnd(buf, start)
      if (end === -1) return "malformed"
      if (key === "model") {
        if (buf[start] === QUOTE) {
          const value = decodeString(buf, start, end)
          if (value === undefined) return "malformed"
          model = { value, start, end }
        } else model = "not_a_string"
      } else if (key === "stream") {
        stream = end - start === 4 && buf.toString("latin1", start, end) === "true"
      } else if (key === "max_tokens") {
        const c = buf[start]!
        maxTokens = c === 0x2d || (c >= 0x30 && c <= 0x39) ? Number(buf.toString("latin1", start, end)) : undefined
      }
      i = skipSpace(buf, end)
      if (buf[i] === COMMA) {
        i = skipSpace(buf, i + 1)
        continue
      }
      if (buf[i] !== CLOSE_BRACE) return "malformed"
      i++
      break
    }
  }
  return skipSpace(buf, i) === buf.length ? { model, stream, maxTokens } : "malformed"
}

/** The body with the bytes of `[start, end)` (the model's JSON string) replaced by `model` as a JSON string. */
export const spliceModel = (buf: Buffer, start: number, end: number, model: string): Buffer =>
  Buffer.concat([buf.subarray(0, start), Buffer.from(JSON.stringify(model), "utf8"), buf.subarray(end)])
