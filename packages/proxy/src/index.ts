/**
 * @mks/a2a-proxy — an Anthropic-compatible gateway for many providers, with virtual keys,
 * usage windows and quotas. Each module is a namespace: `import { ProxyServer, ProxyConfig } from "@mks/a2a-proxy"`.
 */
export * as AnthropicError from "./AnthropicError.js"
export * as KeyFile from "./KeyFile.js"
export * as KeyTables from "./KeyTables.js"
export * as ModelRouter from "./ModelRouter.js"
export * as PgStore from "./PgStore.js"
export * as ProxyConfig from "./ProxyConfig.js"
export * as ProxyServer from "./ProxyServer.js"
export * as UsageFile from "./UsageFile.js"
export { VERSION } from "./ProxyServer.js"
