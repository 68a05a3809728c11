/**
 * The Prometheus text exposition format (version 0.0.4) for the servers' `/metrics`: one
 * renderer and one histogram, so the broker and the proxy write the same, correct format.
 *
 * Deliberately not Effect's `Metric`: the data planes update their figures synchronously on
 * every request (a few adds on plain numbers, label text built once per series), which a
 * `Metric` update (a fiber-ref read, a registry lookup keyed by hashed labels) would cost more
 * than; and Effect has no Prometheus text exporter outside OpenTelemetry. Servers keep their
 * figures where they like and hand them to an {@link Exposition} when scraped.
 */

/** The `Content-Type` of the text format. */
export const CONTENT_TYPE = "text/plain; version=0.0.4"

export type Type = "counter" | "gauge" | "histogram"

/** A label value as the format wants it: `\` → `\\`, `"` → `\"`, newline → `\n`. */
export const escapeLabelValue = (value: string): string => value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")

/** A HELP text as the format wants it: `\` → `\\`, newline → `\n`. */
export const escapeHelp = (help: string): string => help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")

/** A sample value: integers and decimals as JavaScript prints them, `+Inf`, `-Inf`, `NaN`. */
export const formatValue = (value: number): string =>
  value === Number.POSITIVE_INFINITY ? "+Inf" : value === Number.NEGATIVE_INFINITY ? "-Inf" : String(value)

/**
 * Label text for a sample, without braces: `provider="anthropic",key="k1"` (values escaped).
 * Build it once per series and keep it; a request should not pay for it.
 */
export const labels = (pairs: Readonly<Record<string, string | number>>): string =>
  Object.entries(pairs)
    .map(([name, value]) => `${name}="${escapeLabelValue(String(value))}"`)
    .join(",")

const withLabels = (text: string, extra?: string): string => {
  const all = text === "" ? (extra ?? "") : extra === undefined ? text : `${text},${extra}`
  return all === "" ? "" : `{${all}}`
}

/**
 * A histogram with fixed upper bounds: an observation increments one bucket (bounds ascending),
 * the cumulative counts the format wants are summed when it is rendered.
 */
export class Histogram {
  private readonly counts: Array<number>
  sum = 0
  count = 0

  constructor(readonly bounds: ReadonlyArray<number>) {
    this.counts = bounds.map(() => 0)
  }

  observe(value: number): void {
    this.sum += value
    this.count++
    const bounds = this.bounds
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]!) {
        this.counts[i]!++
        return
      }
    }
  }

  /** The cumulative count of each bound (without `+Inf`, which is `count`). */
  cumulative(): Array<number> {
    let running = 0
    return this.counts.map((n) => (running += n))
  }
}

interface Family {
  readonly type: Type
  readonly help: string
  readonly lines: Array<string>
}

/**
 * One scrape's text. Samples are grouped by family whatever the order they are added in, and
 * each family gets its `# HELP` and `# TYPE` lines once (also when it has no sample yet).
 */
export class Exposition {
  private readonly families = new Map<string, Family>()

  private family(name: string, type: Type, help: string): Family {
    const known = this.families.get(name)
    if (known !== undefined) {
      if (known.type !== type) throw new Error(`metric ${name} is a ${known.type}, not a ${type}`)
      return known
    }
    const family: Family = { type, help, lines: [] }
    this.families.set(name, family)
    return family
  }

  /** Declare a counter; `value` (with `labelText`, from {@link labels}) adds one sample. */
  counter(name: string, help: string, value?: number, labelText = ""): this {
    const family = this.family(name, "counter", help)
    if (value !== undefined) family.lines.push(`${name}${withLabels(labelText)} ${formatValue(value)}`)
    return this
  }

  /** Declare a gauge; `value` (with `labelText`) adds one sample. */
  gauge(name: string, help: string, value?: number, labelText = ""): this {
    const family = this.family(name, "gauge", help)
    if (value !== undefined) family.lines.push(`${name}${withLabels(labelText)} ${formatValue(value)}`)
    return this
  }

  /** A histogram's series: `_bucket{le=…}` for each bound and `+Inf`, `_sum`, `_count`. */
  histogram(name: string, help: string, histogram: Histogram, labelText = ""): this {
    const family = this.family(name, "histogram", help)
    const cumulative = histogram.cumulative()
    histogram.bounds.forEach((bound, i) =>
      family.lines.push(`${name}_bucket${withLabels(labelText, `le="${formatValue(bound)}"`)} ${cumulative[i]}`)
    )
    family.lines.push(
      `${name}_bucket${withLabels(labelText, 'le="+Inf"')} ${histogram.count}`,
      `${name}_sum${withLabels(labelText)} ${formatValue(histogram.sum)}`,
      `${name}_count${withLabels(labelText)} ${histogram.count}`
    )
    return this
  }

  /** The text, ending with a newline. */
  text(): string {
    const out: Array<string> = []
    for (const [name, family] of this.families) {
      out.push(`# HELP ${name} ${escapeHelp(family.help)}`, `# TYPE ${name} ${family.type}`)
      for (const line of family.lines) out.push(line)
    }
    return out.join("\n") + "\n"
  }
}
