/**
 * Which provider serves a requested model, and under what name. Order: an explicit
 * `provider/model`, then the configured routes (globs), then the providers' own model patterns,
 * then aliases, then the default provider.
 */
import type { Provider, ProxyConfig } from "./ProxyConfig.js"

export interface Resolved {
  readonly provider: Provider
  /** The model name sent upstream. */
  readonly model: string
  readonly via: "explicit" | "route" | "provider" | "alias" | "default"
}

export interface ModelRouter {
  /** `undefined`: nothing serves this model (404 `not_found_error`). */
  readonly resolve: (model: string) => Resolved | undefined
  /** Model ids `/v1/models` lists: aliases and each provider's concrete (glob-free) models. */
  readonly listed: ReadonlyArray<string>
}

/** A glob (`*` = any run of characters) compiled once, not per request. */
export const compileGlob = (pattern: string): RegExp =>
  new RegExp("^" + pattern.split("*").map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*") + "$")

export const make = (config: ProxyConfig): ModelRouter => {
  const providers = new Map(config.providers.map((p) => [p.name, p] as const))
  const routes = [
    ...config.routes.map((r) => ({ re: compileGlob(r.match), provider: providers.get(r.provider)!, model: r.model, via: "route" as const })),
    ...config.providers.flatMap((p) => p.models.map((m) => ({ re: compileGlob(m), provider: p, model: undefined, via: "provider" as const })))
  ]

  const withoutAliases = (model: string): Resolved | undefined => {
    const slash = model.indexOf("/")
    if (slash > 0) {
      const provider = providers.get(model.slice(0, slash))
      if (provider !== undefined) return { provider, model: model.slice(slash + 1), via: "explicit" }
    }
    for (const route of routes) {
      if (route.re.test(model)) return { provider: route.provider, model: route.model ?? model, via: route.via }
    }
    return undefined
  }

  const resolve = (model: string): Resolved | undefined => {
    const direct = withoutAliases(model)
    if (direct !== undefined) return direct
    const alias = Object.hasOwn(config.aliases, model) ? config.aliases[model] : undefined
    if (alias !== undefined) {
      const target = withoutAliases(alias)
      if (target !== undefined) return { ...target, via: "alias" }
      if (config.default !== undefined) {
        return { provider: providers.get(config.default.provider)!, model: alias, via: "alias" }
      }
      return undefined
    }
    // `x/y` naming a provider that does not exist is a mistake, not a job for the default.
    const slash = model.indexOf("/")
    if (slash > 0 && !providers.has(model.slice(0, slash))) return undefined
    if (config.default !== undefined) {
      return { provider: providers.get(config.default.provider)!, model: config.default.model ?? model, via: "default" }
    }
    return undefined
  }

  const listed = [
    ...Object.keys(config.aliases),
    ...config.providers.flatMap((p) => p.models.filter((m) => !m.includes("*")).map((m) => `${p.name}/${m}`))
  ]
  return { resolve, listed }
}
