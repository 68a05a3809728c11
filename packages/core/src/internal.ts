/**
 * `@mks/a2a/internal`: plumbing the a2a packages share (the broker, the proxy, the runner), kept
 * in one place so each server does not carry its own copy. It is not a stable API: it may
 * change in any release without notice. Programs built on a2a should not import it.
 */
export * as AtomicFile from "./AtomicFile.js"
export * as Prometheus from "./Prometheus.js"
export * as ScopedSync from "./ScopedSync.js"
export * as CliSpec from "./CliSpec.js"
export * as CompileCache from "./CompileCache.js"
export * as McpNodeFlags from "./McpNodeFlags.js"
export * as StartupMemory from "./StartupMemory.js"
