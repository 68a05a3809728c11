/**
 * Reads usage on the side of a response that is forwarded byte for byte.
 *
 * SSE: lines are reassembled across chunk (and UTF-8) boundaries; only `message_start`,
 * `message_delta` and `error` events are parsed. `message_start.message.usage` sets the usage,
 * every `message_delta.usage` is cumulative and overrides it field by field (core's
 * `Usage.mergeReported`), so the last one wins and nothing is ever added twice.
 */
import { Usage } from "@mks/a2a"
import { StringDecoder } from "node:string_decoder"
import * as zlib from "node:zlib"

export interface Tap {
  push(chunk: Buffer): void
  end(): void
  /** What the upstream reported so far; `undefined` if it reported nothing. */
  readonly usage: Usage.Usage | undefined
  /** Type of an `error` event inside a 200 stream. */
  readonly streamError: string | undefined
}

const INTERESTING = new Set(["message_start", "message_delta", "error"])

const asUsage = (value: unknown): Usage.AnthropicUsage | undefined =>
  value !== null && typeof value === "object" ? (value as Usage.AnthropicUsage) : undefined

/** Numbers only: a malformed field must not turn the counts into NaN or strings. */
const clean = (u: Usage.AnthropicUsage): Usage.AnthropicUsage => {
  const pick = (n: unknown) => (typeof n === "number" && Number.isFinite(n) && n >= 0 ? Math.round(n) : undefined)
  return {
    input_tokens: pick(u.input_tokens),
    output_tokens: pick(u.output_tokens),
    cache_creation_input_tokens: pick(u.cache_creation_input_tokens),
    cache_read_input_tokens: pick(u.cache_read_input_tokens)
  }
}

export class SseTap implements Tap {
  usage: Usage.Usage | undefined
  streamError: string | undefined
  private readonly decoder = new StringDecoder("utf8")
  private pending = ""
  private event = ""
  private data: Array<string> = []
  /** No `event:` line seen yet for this event: keep its data to sniff the type. */
  private keep = true

  /** Whether the bytes so far stop inside an event (no blank line after its last line). */
  get midEvent(): boolean {
    return this.pending !== "" || this.event !== "" || this.data.length > 0 || this.open
  }
  /** A line of the current event was seen (including ignored ones). */
  private open = false

  push(chunk: Buffer): void {
    const text = this.pending + this.decoder.write(chunk)
    let start = 0
    let newline: number
    while ((newline = text.indexOf("\n", start)) !== -1) {
      const end = newline > start && text.charCodeAt(newline - 1) === 13 ? newline - 1 : newline
      this.line(text.slice(start, end))
      start = newline + 1
    }
    this.pending = start === 0 ? text : text.slice(start)
  }

  end(): void {
    const rest = this.pending + this.decoder.end()
    this.pending = ""
    if (rest !== "") this.line(rest)
    this.dispatch()
  }

  private line(line: string): void {
    if (line === "") return this.dispatch()
    this.open = true
    if (line.startsWith("event:")) {
      this.event = line.slice(6).trim()
      this.keep = INTERESTING.has(this.event)
    } else if (line.startsWith("data:") && this.keep) {
      this.data.push(line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5))
    }
  }

  private dispatch(): void {
    const data = this.data.join("\n")
    const event = this.event
    this.event = ""
    this.data = []
    this.keep = true
    this.open = false
    if (data === "") return
    let parsed: unknown
    try {
      parsed = JSON.parse(data)
    } catch {
      return
    }
    if (parsed === null || typeof parsed !== "object") return
    const message = parsed as { type?: unknown; message?: { usage?: unknown }; usage?: unknown; error?: { type?: unknown } }
    const type = event !== "" ? event : typeof message.type === "string" ? message.type : ""
    if (type === "message_start") {
      const u = asUsage(message.message?.usage)
      if (u !== undefined) this.usage = Usage.mergeReported(this.usage ?? Usage.emptyUsage, clean(u))
    } else if (type === "message_delta") {
      const u = asUsage(message.usage)
      if (u !== undefined) this.usage = Usage.mergeReported(this.usage ?? Usage.emptyUsage, clean(u))
    } else if (type === "error") {
      this.streamError = typeof message.error?.type === "string" ? message.error.type : "api_error"
    }
  }
}

/** A JSON body: collected (up to a cap) and read once complete. */
export class JsonTap implements Tap {
  usage: Usage.Usage | undefined
  readonly streamError = undefined
  private readonly chunks: Array<Buffer> = []
  private size = 0

  constructor(private readonly cap: number) {}

  push(chunk: Buffer): void {
    this.size += chunk.length
    if (this.size <= this.cap) this.chunks.push(chunk)
  }

  end(): void {
    if (this.size > this.cap) return
    try {
      const bytes = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size)
      const body = JSON.parse(bytes.toString("utf8")) as { usage?: unknown }
      const u = asUsage(body?.usage)
      if (u !== undefined) this.usage = Usage.mergeReported(Usage.emptyUsage, clean(u))
    } catch {
      // Not JSON after all: nothing reported.
    }
  }
}

/**
 * For an upstream that compresses despite `accept-encoding: identity`: the compressed bytes are
 * forwarded as they are, and decoded here once the response ends (also when it was cut short,
 * as far as it goes), so usage is still read rather than silently counted as nothing.
 */
export class DecodingTap implements Tap {
  private readonly chunks: Array<Buffer> = []
  private size = 0

  constructor(
    private readonly inner: Tap,
    private readonly encoding: string,
    private readonly cap: number
  ) {}

  get usage() {
    return this.inner.usage
  }

  get streamError() {
    return this.inner.streamError
  }

  push(chunk: Buffer): void {
    this.size += chunk.length
    if (this.size <= this.cap) this.chunks.push(chunk)
  }

  end(): void {
    const data = Buffer.concat(this.chunks)
    try {
      const decoded =
        this.encoding === "br"
          ? zlib.brotliDecompressSync(data, { finishFlush: zlib.constants.BROTLI_OPERATION_FLUSH })
          : this.encoding === "deflate"
            ? zlib.inflateSync(data, { finishFlush: zlib.constants.Z_SYNC_FLUSH })
            : zlib.gunzipSync(data, { finishFlush: zlib.constants.Z_SYNC_FLUSH })
      this.inner.push(decoded)
    } catch {
      // Undecodable: nothing reported (the proxy logs it).
    }
    this.inner.end()
  }
}

/** The encodings `DecodingTap` reads. */
export const decodable = (encoding: string | undefined): boolean => encoding === "gzip" || encoding === "deflate" || encoding === "br"
