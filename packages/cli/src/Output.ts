/**
 * How the CLI writes: aligned tables and short lines for people, `--json` for scripts,
 * colours only on a TTY (and never with `NO_COLOR`), a progress line on stderr for anything
 * slower than a second, and every failure as one clear line.
 */
import { Data, Duration, Effect, Fiber } from "effect"

/** A failure the user can act on; printed as `a2a: <message>`, exit code 1 (2 for usage errors). */
export class CliError extends Data.TaggedError("CliError")<{ readonly message: string; readonly usage?: boolean }> {}

export interface Output {
  readonly json: boolean
  readonly color: boolean
  readonly out: (line: string) => void
  readonly err: (line: string) => void
}

export const make = (options: { json: boolean; noColor?: boolean }): Output => ({
  json: options.json,
  color: options.noColor !== true && process.stdout.isTTY === true && process.env.NO_COLOR === undefined && process.env.TERM !== "dumb",
  out: (line) => void process.stdout.write(line + "\n"),
  err: (line) => void process.stderr.write(line + "\n")
})

const codes = { bold: [1, 22], dim: [2, 22], red: [31, 39], green: [32, 39], yellow: [33, 39], cyan: [36, 39] } as const
export type Style = keyof typeof codes

export const paint = (o: Output, style: Style, text: string): string =>
  o.color ? `\u001b[${codes[style][0]}m${text}\u001b[${codes[style][1]}m` : text

// eslint-disable-next-line no-control-regex
const visible = (s: string) => s.replace(/\u001b\[[0-9;]*m/g, "").length

/** An aligned table; cells are cut at `max` characters so one long summary cannot wrap every row. */
export const table = (o: Output, headers: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>, max = 60): void => {
  const cut = (s: string) => (visible(s) > max ? s.slice(0, max - 1) + "…" : s)
  const cells = rows.map((r) => r.map((c) => cut(c.replace(/\s+/g, " "))))
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => visible(r[i] ?? ""))))
  const line = (values: ReadonlyArray<string>) =>
    values.map((v, i) => (i === values.length - 1 ? v : v + " ".repeat(widths[i]! - visible(v)))).join("  ").trimEnd()
  o.out(paint(o, "bold", line(headers)))
  for (const r of cells) o.out(line(r))
}

/** Print `value` as JSON (for `--json`). */
export const json = (o: Output, value: unknown) => o.out(JSON.stringify(value, null, 2))

/**
 * Run `effect`; when it takes longer than a second and stderr is a TTY, show `label` with a
 * spinner until it ends.
 */
export const progress = <A, E, R>(o: Output, label: string, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
  if (process.stderr.isTTY !== true || o.json) return effect
  const frames = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"]
  const spinner = Effect.gen(function*() {
    yield* Effect.sleep(Duration.seconds(1))
    for (let i = 0; ; i++) {
      process.stderr.write(`\r${frames[i % frames.length]} ${label}`)
      yield* Effect.sleep(Duration.millis(100))
    }
  }).pipe(Effect.ensuring(Effect.sync(() => process.stderr.write("\r\u001b[2K"))))
  return Effect.gen(function*() {
    const fiber = yield* Effect.fork(spinner)
    return yield* effect.pipe(Effect.ensuring(Fiber.interrupt(fiber)))
  })
}

/** "3s ago", "2m ago", … for a timestamp. */
export const ago = (iso: string, now = Date.now()): string => {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000))
  if (s < 60) return `${s}s ago`
  if (s < 3600) return `${Math.floor(s / 60)}m ago`
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`
  return `${Math.floor(s / 86400)}d ago`
}
