/**
 * @mks/a2a-runner — keeps agents running on one machine: spawn orders from the broker, a
 * local HTTP/SSE API, logs, restart policy, terminal attach, and the claude launcher.
 *
 * ```ts
 * Layer.launch(RunnerServer.layer(RunnerConfig.make({ port: 0, apiKey: "secret" })))
 * ```
 */
export * as Agent from "./Agent.js"
export * as BrokerLink from "./BrokerLink.js"
export * as ClaudeSession from "./ClaudeSession.js"
export * as Preset from "./Preset.js"
export * as RunnerConfig from "./RunnerConfig.js"
export * as RunnerServer from "./RunnerServer.js"
export * as Supervisor from "./Supervisor.js"
export { VERSION } from "./version.js"
