/**
 * One source for a command line: its commands, flags, environment variables and defaults.
 * From a `Spec` come the argument parser (`node:util`'s `parseArgs`), the `--help` text, the
 * value of each setting (flag, else environment, else the caller's default) and the tables in
 * docs/ (`markdown`, kept in sync by `scripts/cli-docs.mjs`, checked by each bin's tests).
 *
 * No `effect` here: the MCP server's front answers `--help` before it loads the Effect part.
 * (`@effect/cli` was measured for this: a three-flag command's `--help` takes ~330 ms against
 * ~100 ms for `node -e ''` on the reference machine, and its help cannot name the environment
 * variables; the bins parse their arguments before loading anything heavy.)
 */
import { parseArgs } from "node:util"

/** A setting: a flag, an environment variable, or both (the flag wins). */
export interface Setting {
  /** The long flag without `--`; absent for a setting read from the environment only. */
  readonly flag?: string
  readonly short?: string
  /** The value's placeholder (`N`, `URL`); absent for a switch (`--json`). */
  readonly arg?: string
  /** The flag may be given more than once. */
  readonly multiple?: boolean
  readonly env?: string
  /** The default as users should read it (`4200`, `<home>/broker.db`); absent: none. */
  readonly default?: string
  /** One sentence; Markdown code spans and links are allowed (plain in `--help`). */
  readonly what: string
  /** Shown in the docs table only when false (a flag `parseArgs` must accept but that is described elsewhere). */
  readonly listed?: boolean
}

/** A line of the usage: `usage` follows the bin's name. */
export interface Command {
  readonly usage: string
  readonly what: string
  /** A heading the command is listed under (`--help` and docs keep the order of first use). */
  readonly group?: string
}

export interface Spec {
  readonly bin: string
  readonly summary: string
  readonly commands: ReadonlyArray<Command>
  readonly settings: ReadonlyArray<Setting>
  /** Closing lines of `--help` (plain text). */
  readonly footer?: ReadonlyArray<string>
}

/** The built-in switches every bin has. */
const BUILT_IN: ReadonlyArray<Setting> = [
  { flag: "help", short: "h", what: "print this help and exit" },
  { flag: "version", what: "print the version and exit" }
]

const all = (spec: Spec): ReadonlyArray<Setting> => [...spec.settings, ...BUILT_IN.filter((b) => !spec.settings.some((s) => s.flag === b.flag))]

/** `parseArgs` options of a spec (every flag, strings and switches). */
export const options = (spec: Spec) => {
  const out: Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }> = {}
  for (const s of all(spec)) {
    if (s.flag === undefined) continue
    out[s.flag] = {
      type: s.arg === undefined ? "boolean" : "string",
      ...(s.short !== undefined ? { short: s.short } : {}),
      ...(s.multiple ? { multiple: true } : {})
    }
  }
  return out
}

export interface Parsed {
  readonly values: Readonly<Record<string, string | boolean | ReadonlyArray<string> | undefined>>
  readonly positionals: ReadonlyArray<string>
  /** Flag, else environment variable (an empty one counts as unset), else `undefined`. */
  readonly get: (key: string) => string | undefined
  readonly list: (key: string) => ReadonlyArray<string>
  readonly has: (flag: string) => boolean
}

/**
 * Parses `argv` (default: this process's arguments) against the spec. Throws `TypeError` with
 * `parseArgs`' message (`Unknown option '--bogus'`) on a flag the spec does not have. `key` in
 * `get`/`list` is a flag name, or the environment variable of an environment-only setting.
 */
export const parse = (spec: Spec, argv: ReadonlyArray<string> = process.argv.slice(2), env: NodeJS.ProcessEnv = process.env): Parsed => {
  const { values, positionals } = (() => {
    try {
      return parseArgs({ args: [...argv], options: options(spec), allowPositionals: true, strict: true })
    } catch (e) {
      // Some of parseArgs' messages span lines (`--port -1`); a bin's refusal is one line.
      // Node's hint after an unknown option (how to pass a positional that starts with '-') is dropped.
      throw new TypeError(
        String((e as Error).message)
          .replace(/\s*\n\s*/g, " ")
          .replace(/^(Unknown option '[^']*')\. To specify a positional argument.*$/, "$1")
      )
    }
  })()
  const find = (key: string) => spec.settings.find((s) => s.flag === key || (s.flag === undefined && s.env === key))
  const fromEnv = (s: Setting | undefined) => {
    if (s?.env === undefined) return undefined
    const v = env[s.env]
    return v === undefined || v === "" ? undefined : v
  }
  const raw = values as Record<string, string | boolean | Array<string> | undefined>
  return {
    values: raw,
    positionals,
    get: (key) => {
      const s = find(key)
      if (s === undefined) throw new Error(`${spec.bin}: no setting ${key}`)
      const v = s.flag === undefined ? undefined : raw[s.flag]
      if (typeof v === "string") return v
      if (Array.isArray(v)) return v[v.length - 1]
      return fromEnv(s)
    },
    list: (key) => {
      const s = find(key)
      if (s === undefined) throw new Error(`${spec.bin}: no setting ${key}`)
      const v = s.flag === undefined ? undefined : raw[s.flag]
      if (Array.isArray(v)) return v
      if (typeof v === "string") return [v]
      const e = fromEnv(s)
      return e === undefined ? [] : e.split(/[\s,]+/).filter((x) => x.length > 0)
    },
    has: (flag) => raw[flag] === true
  }
}

/** A command-line mistake of `spec`'s bin: one line `<bin>: <message>` on stderr, exit code 2. */
export const refuse = (spec: Spec, message: string): never => {
  process.stderr.write(`${spec.bin}: ${message}\n`)
  process.exit(2)
}

/**
 * A server bin's start: this process's arguments parsed against `spec`; `--help` (`-h`, or the
 * command `help`) and `--version` print and exit 0; a flag the spec does not have is refused (`refuse`).
 */
export const start = (spec: Spec, version: string): Parsed => {
  let parsed: Parsed
  try {
    parsed = parse(spec)
  } catch (e) {
    return refuse(spec, (e as Error).message)
  }
  if (parsed.has("help") || parsed.positionals[0] === "help") {
    process.stdout.write(help(spec, version))
    process.exit(0)
  }
  if (parsed.has("version")) {
    process.stdout.write(`${version}\n`)
    process.exit(0)
  }
  return parsed
}

/** The connection limits a server reads from `<prefix>_…` (core's `ServerLimits.config`), with their defaults. */
export interface LimitDefaults {
  readonly headersTimeout: number
  readonly requestTimeout: number
  readonly keepAliveTimeout: number
  readonly maxPendingConnections: number
  readonly listenBacklog?: number | undefined
}

/** The settings of `ServerLimits.config(prefix, limits)`, documented from the same numbers. */
export const connectionLimits = (prefix: string, limits: LimitDefaults): ReadonlyArray<Setting> => [
  {
    env: `${prefix}_HEADERS_TIMEOUT_MS`,
    default: `\`${limits.headersTimeout}\``,
    what: "a request's head must arrive within this, else `408` ([operations.md](operations.md#connection-limits))"
  },
  { env: `${prefix}_REQUEST_TIMEOUT_MS`, default: `\`${limits.requestTimeout}\``, what: "a whole request, body included, must arrive within this, else `408` (`0`: no limit)" },
  { env: `${prefix}_KEEP_ALIVE_TIMEOUT_MS`, default: `\`${limits.keepAliveTimeout}\``, what: "an idle keep-alive connection is closed after this" },
  {
    env: `${prefix}_MAX_PENDING_CONNECTIONS`,
    default: `\`${limits.maxPendingConnections}\``,
    what: "connections without a complete request head; past it the oldest is answered `503` and closed"
  },
  { env: `${prefix}_LISTEN_BACKLOG`, default: `\`${limits.listenBacklog ?? 4096}\``, what: "the listen backlog (the kernel's accept queue)" }
]

/** Markdown to plain text: code spans and links keep their text. */
const plain = (text: string) => text.replace(/\[([^\]]+)\]\([^)]+\)/g, "$1").replace(/`([^`]*)`/g, "$1").replace(/\\\|/g, "|")

const flagText = (s: Setting) =>
  s.flag === undefined ? "" : `${s.short !== undefined ? `-${s.short}, ` : ""}--${s.flag}${s.arg !== undefined ? ` ${s.arg}` : ""}${s.multiple ? " …" : ""}`

const wrap = (text: string, width: number, indent: string): Array<string> => {
  const lines: Array<string> = []
  let line = ""
  for (const word of text.split(/\s+/).filter((w) => w.length > 0)) {
    if (line.length > 0 && indent.length + line.length + 1 + word.length > width) {
      lines.push(indent + line)
      line = word
    } else line = line.length === 0 ? word : `${line} ${word}`
  }
  if (line.length > 0) lines.push(indent + line)
  return lines
}

const commandLine = (spec: Spec, c: Command) => (c.usage === "" ? spec.bin : `${spec.bin} ${c.usage}`)

/** A usage line, broken before an option group (`[`) past 100 columns, continued under its command. */
const wrapUsage = (usage: string): Array<string> => {
  const lines: Array<string> = []
  let line = "  "
  const indent = " ".repeat(4)
  for (const part of usage.split(/ (?=\[)/)) {
    if (line.trim().length > 0 && line.length + 1 + part.length > 100) {
      lines.push(line)
      line = indent + part
    } else line = line.trim().length === 0 ? line + part : `${line} ${part}`
  }
  lines.push(line)
  return lines
}

const groups = <A extends { readonly group?: string }>(items: ReadonlyArray<A>) => {
  const out: Array<{ title: string | undefined; items: Array<A> }> = []
  for (const item of items) {
    const last = out.find((g) => g.title === item.group)
    if (last !== undefined) last.items.push(item)
    else out.push({ title: item.group, items: [item] })
  }
  return out
}

/** The `--help` text: usage lines, then every setting with its flag, variable and default. */
export const help = (spec: Spec, version: string): string => {
  const out: Array<string> = [...wrap(`${spec.bin} ${version}: ${plain(spec.summary)}`, 100, ""), ""]
  for (const group of groups(spec.commands)) {
    out.push(...(group.title === undefined ? ["usage:"] : wrap(`${plain(group.title)}:`, 100, "")))
    for (const c of group.items) {
      out.push(...wrapUsage(commandLine(spec, c)))
      out.push(...wrap(plain(c.what), 100, "      "))
    }
    out.push("")
  }
  const flags = all(spec).filter((s) => s.flag !== undefined)
  const envOnly = spec.settings.filter((s) => s.flag === undefined)
  out.push("options (a flag wins over its environment variable, which wins over the default):")
  for (const s of flags) {
    const extra = [s.env !== undefined ? `env ${s.env}` : undefined, s.default !== undefined ? `default ${plain(s.default)}` : undefined].filter((x) => x !== undefined)
    const line = `  ${flagText(s)}${extra.length > 0 ? `    (${extra.join("; ")})` : ""}`
    if (line.length <= 100) out.push(line)
    else out.push(`  ${flagText(s)}`, ...wrap(`(${extra.join("; ")})`, 100, "      "))
    out.push(...wrap(plain(s.what), 100, "      "))
  }
  if (envOnly.length > 0) {
    out.push("", "environment only:")
    for (const s of envOnly) {
      const line = `  ${s.env}${s.default !== undefined ? `    (default ${plain(s.default)})` : ""}`
      if (line.length <= 100) out.push(line)
      else out.push(`  ${s.env}`, ...wrap(`(default ${plain(s.default!)})`, 100, "      "))
      out.push(...wrap(plain(s.what), 100, "      "))
    }
  }
  if (spec.footer !== undefined && spec.footer.length > 0) out.push("", ...spec.footer)
  return out.join("\n") + "\n"
}

const cell = (text: string) => text.replace(/\|/g, "\\|")

/** The docs' tables of a spec: commands (when there is more than one) and settings. */
export const markdown = (spec: Spec): string => {
  const out: Array<string> = []
  if (spec.commands.length > 1) {
    out.push("| command | what |", "|---|---|")
    for (const c of spec.commands) out.push(`| \`${cell(commandLine(spec, c))}\` | ${c.what} |`)
    out.push("")
  }
  out.push("| flag | environment | default | what |", "|---|---|---|---|")
  for (const s of all(spec)) {
    if (s.listed === false) continue
    out.push(`| ${s.flag === undefined ? "" : `\`${cell(flagText(s))}\``} | ${s.env === undefined ? "" : `\`${s.env}\``} | ${s.default === undefined ? "" : s.default} | ${s.what} |`)
  }
  return out.join("\n")
}

/** The markers around a spec's generated tables in a docs page. */
export const markers = (bin: string) => [`<!-- generated from the ${bin} CLI spec: npm run docs:cli -->`, `<!-- end of generated ${bin} CLI tables -->`] as const

/** `doc` with the section between `bin`'s markers replaced by `markdown(spec)`; `undefined` when the markers are missing. */
export const updateDoc = (doc: string, spec: Spec): string | undefined => {
  const [begin, end] = markers(spec.bin)
  const from = doc.indexOf(begin)
  const to = doc.indexOf(end)
  if (from < 0 || to < from) return undefined
  return `${doc.slice(0, from + begin.length)}\n${markdown(spec)}\n${doc.slice(to)}`
}
