/**
 * @mks/a2a-broker — the a2a bus as embeddable layers and the `a2a-broker` CLI.
 */
export * as BrokerConfig from "./BrokerConfig.js"
export * as BrokerServer from "./BrokerServer.js"
export * as Bus from "./Bus.js"
export * as Metrics from "./Metrics.js"
export * as Oidc from "./Oidc.js"
export * as PgStore from "./PgStore.js"
export * as Store from "./Store.js"
export * as TokenStore from "./TokenStore.js"
export { VERSION } from "./version.js"
export * as Ui from "./Ui.js"
