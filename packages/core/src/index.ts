/**
 * @mks/a2a — the typed core of the a2a agent bus.
 *
 * Each module is a namespace: `import { Peer, Inbox, BrokerApi } from "@mks/a2a"`.
 */
export * as Authenticator from "./Authenticator.js"
export * as BrokerApi from "./BrokerApi.js"
export * as ChannelFrame from "./ChannelFrame.js"
export * as ChannelHub from "./ChannelHub.js"
export * as Errors from "./Errors.js"
export * as Ids from "./Ids.js"
export * as Inbox from "./Inbox.js"
export * as KeyStore from "./KeyStore.js"
export * as Message from "./Message.js"
export * as Peer from "./Peer.js"
export * as PeerRegistry from "./PeerRegistry.js"
export * as Principal from "./Principal.js"
export * as ProxyApi from "./ProxyApi.js"
export * as Runner from "./Runner.js"
export * as RunnerFrame from "./RunnerFrame.js"
export * as Spawn from "./Spawn.js"
export * as SpawnPlane from "./SpawnPlane.js"
export * as Team from "./Team.js"
export * as TeamDirectory from "./TeamDirectory.js"
export * as Usage from "./Usage.js"
export * as UsageMeter from "./UsageMeter.js"
export * as VirtualKey from "./VirtualKey.js"
