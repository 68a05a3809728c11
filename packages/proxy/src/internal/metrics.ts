/**
 * Prometheus counters and the overhead histogram. The data plane updates them on every
 * request, so each (provider, model, key) gets one series object with its label text built
 * once; a request then costs a few map lookups and increments.
 */
import type { Usage } from "@mks/a2a"

const BUCKETS_MS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100]

const escape = (value: string): string => value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")

/** Counters of one (provider, model, key). */
export class Series {
  readonly requests = new Map<number, number>()
  readonly errors = new Map<string, number>()
  readonly tokens = { input: 0, output: 0, cache_creation: 0, cache_read: 0 }
  /** `provider="…",model="…",key="…"` */
  readonly labels: string

  constructor(provider: string, model: string, key: string) {
    this.labels = `provider="${escape(provider)}",model="${escape(model)}",key="${escape(key)}"`
  }

  request(status: number): void {
    this.requests.set(status, (this.requests.get(status) ?? 0) + 1)
  }

  /** `type`: the Anthropic error type (ours), `http_<status>` (upstream's), or how a stream ended. */
  error(type: string): void {
    this.errors.set(type, (this.errors.get(type) ?? 0) + 1)
  }

  usage(u: Usage.Usage): void {
    this.tokens.input += u.inputTokens
    this.tokens.output += u.outputTokens
    this.tokens.cache_creation += u.cacheCreationInputTokens
    this.tokens.cache_read += u.cacheReadInputTokens
  }
}

export class Metrics {
  private readonly series = new Map<string, Map<string, Map<string, Series>>>()
  private readonly buckets = new Array<number>(BUCKETS_MS.length).fill(0)
  private overheadSum = 0
  private overheadCount = 0

  /** The series of a (provider, model, key); requests refused before routing use `none`. */
  of(provider: string, model: string, key: string): Series {
    let byModel = this.series.get(provider)
    if (byModel === undefined) this.series.set(provider, (byModel = new Map()))
    let byKey = byModel.get(model)
    if (byKey === undefined) byModel.set(model, (byKey = new Map()))
    let series = byKey.get(key)
    if (series === undefined) byKey.set(key, (series = new Series(provider, model, key)))
    return series
  }

  overhead(ms: number): void {
    this.overheadSum += ms
    this.overheadCount++
    for (let i = 0; i < BUCKETS_MS.length; i++) {
      if (ms <= BUCKETS_MS[i]!) {
        this.buckets[i]!++
        break
      }
    }
  }

  render(): string {
    const all = [...this.series.values()].flatMap((m) => [...m.values()].flatMap((k) => [...k.values()]))
    const out: Array<string> = []
    out.push("# HELP a2a_proxy_requests_total Data-plane requests by provider, model, key and status.", "# TYPE a2a_proxy_requests_total counter")
    for (const s of all) for (const [status, n] of s.requests) out.push(`a2a_proxy_requests_total{${s.labels},status="${status}"} ${n}`)
    out.push("# HELP a2a_proxy_errors_total Data-plane errors by provider, model, key and type.", "# TYPE a2a_proxy_errors_total counter")
    for (const s of all) for (const [type, n] of s.errors) out.push(`a2a_proxy_errors_total{${s.labels},type="${escape(type)}"} ${n}`)
    out.push("# HELP a2a_proxy_tokens_total Tokens reported by upstreams, by provider, model, key and kind.", "# TYPE a2a_proxy_tokens_total counter")
    for (const s of all) {
      for (const [kind, n] of Object.entries(s.tokens)) if (n > 0) out.push(`a2a_proxy_tokens_total{${s.labels},kind="${kind}"} ${n}`)
    }
    out.push("# HELP a2a_proxy_overhead_ms Time the proxy adds to a request (before forwarding and before answering).")
    out.push("# TYPE a2a_proxy_overhead_ms histogram")
    let cumulative = 0
    for (let i = 0; i < BUCKETS_MS.length; i++) {
      cumulative += this.buckets[i]!
      out.push(`a2a_proxy_overhead_ms_bucket{le="${BUCKETS_MS[i]}"} ${cumulative}`)
    }
    out.push(`a2a_proxy_overhead_ms_bucket{le="+Inf"} ${this.overheadCount}`)
    out.push(`a2a_proxy_overhead_ms_sum ${this.overheadSum}`, `a2a_proxy_overhead_ms_count ${this.overheadCount}`)
    return out.join("\n") + "\n"
  }
}
