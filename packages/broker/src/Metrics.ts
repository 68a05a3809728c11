/**
 * Prometheus metrics of the broker, rendered in the text exposition format at `/metrics` by
 * core's shared renderer (`Prometheus` in `@mks/a2a/internal`, also the proxy's). Counters and
 * the latency histogram are updated synchronously on the hot path (a few adds); gauges are
 * sampled when scraped.
 */
import { Prometheus } from "@mks/a2a/internal"
import { Context, Effect, Layer, Ref } from "effect"

const BUCKETS_MS = [0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000]

export interface MetricsService {
  readonly messagesIn: (n: number) => void
  readonly messagesOut: (n: number) => void
  /** Time from a message's append to its frame being written to a live socket. */
  readonly observeDelivery: (ms: number) => void
  readonly httpRequest: (status: number) => void
  /** Register a gauge sampled at scrape time. */
  readonly gauge: (name: string, help: string, sample: Effect.Effect<number>) => Effect.Effect<void>
  readonly render: Effect.Effect<string>
}

export class Metrics extends Context.Tag("@mks/a2a-broker/Metrics")<Metrics, MetricsService>() {}

export const make = Effect.gen(function* () {
  let messagesIn = 0
  let messagesOut = 0
  const delivery = new Prometheus.Histogram(BUCKETS_MS)
  const statuses = new Map<number, number>()
  const gauges = yield* Ref.make<ReadonlyArray<{ name: string; help: string; sample: Effect.Effect<number> }>>([])

  const service: MetricsService = {
    messagesIn: (n) => void (messagesIn += n),
    messagesOut: (n) => void (messagesOut += n),
    observeDelivery: (ms) => delivery.observe(ms),
    httpRequest: (status) => void statuses.set(status, (statuses.get(status) ?? 0) + 1),
    gauge: (name, help, sample) => Ref.update(gauges, (all) => [...all.filter((g) => g.name !== name), { name, help, sample }]),
    render: Effect.gen(function* () {
      const out = new Prometheus.Exposition()
        .counter("a2a_messages_in_total", "Messages accepted (one per send, whatever the fan-out).", messagesIn)
        .counter("a2a_messages_out_total", "Message frames written to live channels.", messagesOut)
        .counter("a2a_http_requests_total", "HTTP requests by status.")
      for (const [status, n] of [...statuses].sort(([a], [b]) => a - b)) out.counter("a2a_http_requests_total", "", n, `status="${status}"`)
      out.histogram("a2a_delivery_latency_ms", "Append-to-socket latency of live deliveries.", delivery)
      for (const g of yield* Ref.get(gauges)) out.gauge(g.name, g.help, yield* g.sample)
      return out.text()
    })
  }
  return service
})

export const layer = Layer.effect(Metrics, make)
