/**
 * `@mks/a2a-cli`: the `a2a` command line. Its broker commands are exported as Effects for
 * programs that want the same tables and JSON.
 */
export * as Broker from "./Broker.js"
export * as Output from "./Output.js"
export * as Up from "./Up.js"
export { VERSION } from "./version.js"
