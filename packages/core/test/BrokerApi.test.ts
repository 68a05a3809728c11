import { describe, expect, it } from "@effect/vitest"
import { BrokerApi, ProxyApi } from "../src/index.js"
import { OpenApi } from "@effect/platform"

// Every HTTP path and verb of the broker table in ARCHITECTURE.md, in OpenAPI form.
const contract: ReadonlyArray<readonly [string, string]> = [
  ["get", "/healthz"],
  ["get", "/openapi.json"],
  ["post", "/api/peers"],
  ["get", "/api/peers"],
  ["get", "/api/peers/{id}"],
  ["patch", "/api/peers/{id}"],
  ["delete", "/api/peers/{id}"],
  ["post", "/api/peers/{id}/heartbeat"],
  ["post", "/api/messages"],
  ["get", "/api/peers/{id}/inbox"],
  ["post", "/api/peers/{id}/inbox/ack"],
  ["post", "/api/teams"],
  ["get", "/api/teams"],
  ["post", "/api/teams/{name}/members"],
  ["delete", "/api/teams/{name}/members/{peerId}"],
  ["get", "/api/runners"],
  ["post", "/api/spawn"],
  ["get", "/api/spawn"],
  ["get", "/api/spawn/{id}"],
  ["delete", "/api/spawn/{id}"],
  ["post", "/api/peers/{id}/stop"],
  ["get", "/metrics"],
  ["get", "/ws/broker/peer/{id}"],
  ["get", "/ws/runner/{id}"],
  ["get", "/ws/broker/spawns/{id}/logs"],
  ["get", "/ws/broker/spawns/{id}/terminal"]
]

describe("BrokerApi OpenAPI document", () => {
  const doc = BrokerApi.openApi()

  it("lists every broker path and verb of the contract", () => {
    const missing = contract.filter(([verb, path]) => doc.paths[path]?.[verb as "get"] === undefined)
    expect(missing).toEqual([])
    expect(doc.openapi).toMatch(/^3\./)
  })

  it("documents bearer auth, statuses and error bodies", () => {
    const register = doc.paths["/api/peers"]!.post!
    expect(Object.keys(register.responses)).toEqual(expect.arrayContaining(["200", "201", "400", "401", "409"]))
    const send = doc.paths["/api/messages"]!.post!
    expect(Object.keys(send.responses)).toEqual(expect.arrayContaining(["201", "404", "413", "429"]))
    expect(register.security).toEqual([{ bearer: [] }])
    expect(doc.paths["/healthz"]!.get!.security).toEqual([])
    expect(JSON.stringify(doc.components.schemas)).toContain("PeerNotFound")
    expect(doc.paths["/api/spawn"]!.post!.responses["202"]).toBeDefined()
  })

  it("is plain JSON", () => {
    expect(JSON.parse(JSON.stringify(doc)).paths["/api/peers/{id}/inbox"].get.parameters.map((p: { name: string }) => p.name)).toEqual(
      expect.arrayContaining(["id", "after", "limit", "wait"])
    )
  })
})

describe("ProxyControlApi OpenAPI document", () => {
  it("lists the control-plane paths of the contract", () => {
    const doc = OpenApi.fromApi(ProxyApi.ProxyControlApi)
    expect(doc.paths["/v1/keys"]?.post).toBeDefined()
    expect(doc.paths["/v1/keys"]?.get).toBeDefined()
    expect(doc.paths["/v1/keys/{id}"]?.patch).toBeDefined()
    expect(doc.paths["/v1/keys/{id}"]?.delete).toBeDefined()
    expect(doc.paths["/v1/usage"]?.get).toBeDefined()
    expect(doc.paths["/v1/usage/me"]?.get?.security).toEqual([{ apiKey: [] }, { bearer: [] }])
  })
})
