import { describe, expect, it } from "vitest"
import * as Prometheus from "../src/Prometheus.js"

describe("Prometheus text exposition", () => {
  it("escapes label values (backslash, double quote, newline) and HELP text (backslash, newline)", () => {
    expect(Prometheus.escapeLabelValue('a\\b"c\nd')).toBe('a\\\\b\\"c\\nd')
    expect(Prometheus.labels({ model: 'claude "x"\\y\nz', status: 200 })).toBe('model="claude \\"x\\"\\\\y\\nz",status="200"')
    const text = new Prometheus.Exposition().counter("c_total", "Line one\nline \\two", 1).text()
    expect(text).toBe("# HELP c_total Line one\\nline \\\\two\n# TYPE c_total counter\nc_total 1\n")
  })

  it("writes HELP and TYPE once per family, groups its samples, and keeps families in declaration order", () => {
    const out = new Prometheus.Exposition()
      .counter("req_total", "Requests.")
      .gauge("up", "Up.", 1)
    out.counter("req_total", "", 3, Prometheus.labels({ status: 200 }))
    out.counter("req_total", "", 1, Prometheus.labels({ status: 500 }))
    out.gauge("empty_gauge", "Nothing sampled yet.")
    expect(out.text()).toBe(
      [
        "# HELP req_total Requests.",
        "# TYPE req_total counter",
        'req_total{status="200"} 3',
        'req_total{status="500"} 1',
        "# HELP up Up.",
        "# TYPE up gauge",
        "up 1",
        "# HELP empty_gauge Nothing sampled yet.",
        "# TYPE empty_gauge gauge",
        ""
      ].join("\n")
    )
    expect(() => out.gauge("req_total", "x", 1)).toThrow(/req_total is a counter/)
  })

  it("renders gauge values Prometheus understands (NaN, +Inf, -Inf, decimals)", () => {
    const text = new Prometheus.Exposition().gauge("a", "A.", Number.NaN).gauge("b", "B.", Infinity).gauge("c", "C.", -Infinity).gauge("d", "D.", 0.25).text()
    expect(text.split("\n").filter((l) => !l.startsWith("#"))).toEqual(["a NaN", "b +Inf", "c -Inf", "d 0.25", ""])
  })

  it("renders histograms with cumulative buckets, +Inf, _sum and _count (with labels too)", () => {
    const h = new Prometheus.Histogram([1, 5, 10])
    for (const v of [0.5, 1, 3, 7, 50]) h.observe(v)
    const text = new Prometheus.Exposition()
      .histogram("lat_ms", "Latency.", h)
      .histogram("lat_ms", "", new Prometheus.Histogram([1]), Prometheus.labels({ route: "/a" }))
      .text()
    expect(text).toBe(
      [
        "# HELP lat_ms Latency.",
        "# TYPE lat_ms histogram",
        'lat_ms_bucket{le="1"} 2',
        'lat_ms_bucket{le="5"} 3',
        'lat_ms_bucket{le="10"} 4',
        'lat_ms_bucket{le="+Inf"} 5',
        "lat_ms_sum 61.5",
        "lat_ms_count 5",
        'lat_ms_bucket{route="/a",le="1"} 0',
        'lat_ms_bucket{route="/a",le="+Inf"} 0',
        'lat_ms_sum{route="/a"} 0',
        'lat_ms_count{route="/a"} 0',
        ""
      ].join("\n")
    )
  })
})
