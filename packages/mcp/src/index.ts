/**
 * `@mks/a2a-mcp`: the MCP stdio server that puts an agent session on the a2a bus. Embed it
 * with `McpServer.serve(config, transport)` or run the `a2a-mcp` binary.
 */
export * as Front from "./Front.js"
export * as McpConfig from "./McpConfig.js"
export * as McpServer from "./McpServer.js"
export * as Session from "./Session.js"
export * as Tools from "./Tools.js"
export * as ToolSpecs from "./ToolSpecs.js"
export { VERSION } from "./version.js"
