/**
 * A runner's policy: what its owner lets spawn orders run on the machine, whatever permissions
 * the requester holds on the broker. The runner announces it in `hello` (shown in the runner
 * list), the broker refuses an order no eligible runner would take, and the runner refuses it
 * again (it is the runner's word that counts) with the same typed reason, `SpawnRefused`.
 *
 * Every field is optional; an absent field allows everything of its kind.
 */
import { Either, Schema } from "effect"
import { SpawnRefused } from "./Errors.js"
import { Preset, presetOf, type SpawnSpec } from "./Spawn.js"

/** An executable (`"node"` matches any path ending in `/node`; `"/usr/bin/node"` only that path), or an argv prefix. */
export const CommandRule = Schema.Union(Schema.String.pipe(Schema.minLength(1)), Schema.NonEmptyArray(Schema.String))
export type CommandRule = typeof CommandRule.Type

export const RunnerPolicy = Schema.Struct({
  /** Presets it runs (default: every preset it has). */
  presets: Schema.optional(Schema.Array(Preset)),
  /** `command` preset: the argv must match one rule (default: any argv). */
  commands: Schema.optional(Schema.Array(CommandRule)),
  /** Working directories (absolute): a spawn's `cwd` must be one of them or below one; without `cwd` it starts in the first. */
  cwds: Schema.optional(Schema.Array(Schema.String.pipe(Schema.startsWith("/")))),
  /** Environment keys it will not pass (exact names, or a prefix ending in `*`), e.g. `LD_PRELOAD`, `NODE_OPTIONS`, `AWS_*`. */
  denyEnv: Schema.optional(Schema.Array(Schema.String.pipe(Schema.minLength(1)))),
  /** Most agents one principal (the spawn's `owner`) runs here at once. */
  maxPerPrincipal: Schema.optional(Schema.Int.pipe(Schema.positive()))
}).pipe(Schema.annotations({ identifier: "RunnerPolicy" }))
export type RunnerPolicy = typeof RunnerPolicy.Type

/** Why an order was refused: the rule it broke. */
export const RefusalReason = Schema.Literal("preset", "command", "cwd", "env", "concurrency", "preflight")
export type RefusalReason = typeof RefusalReason.Type

const refuse = (runner: string, reason: RefusalReason, message: string) =>
  Either.left(new SpawnRefused({ message: `runner ${runner} refuses: ${message}`, runner, reason }))

/** An absolute POSIX path with `.`, `..` and repeated slashes resolved (no file system access). */
const normalize = (path: string): string => {
  const parts: Array<string> = []
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue
    if (part === "..") parts.pop()
    else parts.push(part)
  }
  return "/" + parts.join("/")
}

const matchesCommand = (rule: CommandRule, argv: ReadonlyArray<string>): boolean => {
  if (typeof rule === "string") {
    const command = argv[0] ?? ""
    return rule.includes("/") ? command.startsWith("/") && normalize(command) === normalize(rule) : command === rule || command.endsWith(`/${rule}`)
  }
  return rule.length <= argv.length && rule.every((part, i) => (i === 0 ? matchesCommand(part, argv) : argv[i] === part))
}

/** Whether `dir` is `root` or below it (after resolving `.` and `..`). */
export const within = (root: string, dir: string): boolean => {
  const r = normalize(root)
  const d = normalize(dir.startsWith("/") ? dir : `${r}/${dir}`)
  return d === r || d.startsWith(r === "/" ? r : `${r}/`)
}

const denied = (patterns: ReadonlyArray<string>, key: string): boolean =>
  patterns.some((p) => (p.endsWith("*") ? key.startsWith(p.slice(0, -1)) : key === p))

/**
 * Check a spec against a policy. `activeForOwner` is how many agents the spec's owner already
 * runs on this runner (for `maxPerPrincipal`; the broker passes what it knows).
 */
export const check = (
  runner: string,
  policy: RunnerPolicy | undefined,
  spec: SpawnSpec,
  activeForOwner = 0
): Either.Either<void, SpawnRefused> => {
  if (policy === undefined) return Either.right(undefined)
  const preset = presetOf(spec)
  if (policy.presets !== undefined && !policy.presets.includes(preset)) {
    return refuse(runner, "preset", `preset ${preset} is not allowed here (allowed: ${policy.presets.join(", ") || "none"})`)
  }
  if (preset === "command" && policy.commands !== undefined) {
    const argv = [spec.command ?? "", ...(spec.args ?? [])]
    if (!policy.commands.some((rule) => matchesCommand(rule, argv))) {
      return refuse(runner, "command", `command ${JSON.stringify(spec.command)} is not allowed here`)
    }
  }
  if (policy.cwds !== undefined && spec.cwd !== undefined) {
    if (!spec.cwd.startsWith("/") || !policy.cwds.some((root) => within(root, spec.cwd!))) {
      return refuse(runner, "cwd", `working directory ${JSON.stringify(spec.cwd)} is not allowed here (allowed: ${policy.cwds.join(", ") || "none"})`)
    }
  }
  if (policy.denyEnv !== undefined) {
    const keys = Object.keys(spec.env ?? {}).filter((k) => denied(policy.denyEnv!, k))
    if (keys.length > 0) return refuse(runner, "env", `environment ${keys.join(", ")} is not passed here`)
  }
  if (policy.maxPerPrincipal !== undefined && activeForOwner >= policy.maxPerPrincipal) {
    return refuse(runner, "concurrency", `${spec.owner ?? "this principal"} already runs ${activeForOwner} agents here (at most ${policy.maxPerPrincipal})`)
  }
  return Either.right(undefined)
}
