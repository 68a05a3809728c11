/**
 * The text tables of the proxy's virtual keys and usage windows, as `a2a-proxy keys list`,
 * `a2a-proxy usage` and the `a2a` CLI's `keys list` / `usage` print them: one header and one
 * row per key or window, each cell a string.
 */
import type { Usage, VirtualKey } from "@mks/a2a"
import type { CliSpec } from "@mks/a2a/internal"

/** The set ones of a key's three limits (or what is left of them), with their units; `-` for none. */
const summary = (
  values: { readonly requestsPerMinute?: number | undefined; readonly requestsPer5h?: number | undefined; readonly tokensPer5h?: number | undefined },
  units: readonly [perMinute: string, requests: string, tokens: string]
): string =>
  [values.requestsPerMinute, values.requestsPer5h, values.tokensPer5h]
    .flatMap((value, i) => (value === undefined ? [] : [`${value} ${units[i]}`]))
    .join(", ") || "-"

/** A key's limits in short (`60 rpm, 1000 req/5h`), `-` when it has none. */
export const limitsText = (l: VirtualKey.KeyLimits): string => summary(l, ["rpm", "req/5h", "tok/5h"])

/** What a key has left in its windows (`59 rpm, 999 req`), `-` when it has no limits. */
export const remainingText = (r: Usage.Remaining): string => summary(r, ["rpm", "req", "tok"])

/** `active`, `disabled` or `expired` (at `now`). */
export const stateOf = (k: VirtualKey.VirtualKey, now = Date.now()): string =>
  k.disabled ? "disabled" : k.expiresAt !== undefined && Date.parse(k.expiresAt) <= now ? "expired" : "active"

export const KEY_HEADER = ["ID", "NAME", "KEY", "TENANT", "TIER", "MODELS", "LIMITS", "STATE", "LAST USED"]

/** A key's row; `lastUsed` shows its last use (default: the timestamp as it is). */
export const keyRow = (k: VirtualKey.VirtualKey, lastUsed: (at: string) => string = (at) => at): Array<string> => [
  k.id,
  k.name,
  `${k.prefix}…`,
  k.tenant,
  k.tier,
  k.models.join(",") || "*",
  limitsText(k.limits),
  stateOf(k),
  k.lastUsedAt === undefined ? "-" : lastUsed(k.lastUsedAt)
]

export const USAGE_HEADER = ["KEY", "NAME", "WINDOW START", "REQUESTS", "INPUT", "OUTPUT", "CACHE WRITE", "CACHE READ", "REMAINING"]

/** A usage window's row. */
export const usageRow = (u: Usage.UsageReport): Array<string> => [
  u.record.id,
  u.record.name,
  u.window.start,
  String(u.window.requests),
  String(u.window.inputTokens),
  String(u.window.outputTokens),
  String(u.window.cacheCreationInputTokens),
  String(u.window.cacheReadInputTokens),
  remainingText(u.remaining)
]

/** The flags of a new key's fields, as `a2a-proxy keys create` and the `a2a` CLI's `keys create` take them (their CLI specs). */
export const CREATE_SETTINGS: ReadonlyArray<CliSpec.Setting> = [
  { flag: "tenant", arg: "T", what: "`keys create`: the key's tenant (default: an OIDC admin's own tenant, else `default`)" },
  { flag: "tier", arg: "tier1|tier2", what: "`keys create`: `tier1` (a user's key) or `tier2` (a public or shared one), a label for policy" },
  {
    flag: "models",
    arg: "GLOBS",
    multiple: true,
    what: "`keys create`: model globs the key may use, comma-separated or repeated (default: any model)"
  },
  { flag: "rpm", arg: "N", what: "`keys create`: requests per minute" },
  { flag: "requests-per-5h", arg: "N", what: "`keys create`: requests per 5-hour window" },
  { flag: "tokens-per-5h", arg: "N", what: "`keys create`: tokens per 5-hour window" },
  { flag: "expires", arg: "ISO", what: "`keys create`: when the key expires (an ISO-8601 date)" }
]
