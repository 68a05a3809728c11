/**
 * Prometheus counters and the overhead histogram. The data plane updates them on every
 * request, so each (provider, model, key) gets one series object with its label text built
 * once; a request then costs a few map lookups and increments.
 */
import type { Usage } from "@mks/a2a"
import { Prometheus } from "@mks/a2a/internal"

const BUCKETS_MS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100]

/** Counters of one (provider, model, key). */
export class Series {
  readonly requests = new Map<number, number>()
  readonly errors = new Map<string, number>()
  readonly tokens = { input: 0, output: 0, cache_creation: 0, cache_read: 0 }
  /** `provider="…",model="…",key="…"` */
  readonly labels: string

  constructor(provider: string, model: string, key: string) {
    this.labels = Prometheus.labels({ provider, model, key })
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
  private readonly overheadMs = new Prometheus.Histogram(BUCKETS_MS)

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
    this.overheadMs.observe(ms)
  }

  /** The text of `/metrics` (core's shared renderer, as the broker's). */
  render(): string {
    const all = [...this.series.values()].flatMap((m) => [...m.values()].flatMap((k) => [...k.values()]))
    const requests = "a2a_proxy_requests_total"
    const errors = "a2a_proxy_errors_total"
    const tokens = "a2a_proxy_tokens_total"
    const out = new Prometheus.Exposition()
      .counter(requests, "Data-plane requests by provider, model, key and status.")
      .counter(errors, "Data-plane errors by provider, model, key and type.")
      .counter(tokens, "Tokens reported by upstreams, by provider, model, key and kind.")
    for (const s of all) {
      for (const [status, n] of s.requests) out.counter(requests, "", n, `${s.labels},status="${status}"`)
      for (const [type, n] of s.errors) out.counter(errors, "", n, `${s.labels},${Prometheus.labels({ type })}`)
      for (const [kind, n] of Object.entries(s.tokens)) if (n > 0) out.counter(tokens, "", n, `${s.labels},kind="${kind}"`)
    }
    out.histogram("a2a_proxy_overhead_ms", "Time the proxy adds to a request (before forwarding and before answering).", this.overheadMs)
    return out.text()
  }
}
