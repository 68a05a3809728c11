/**
 * The bin answers `initialize` and `tools/list` from its front (Front.ts, ToolSpecs.ts: no
 * effect) and loads the Effect part (Backend.ts) after connecting; tool calls wait for it.
 * These tests fail if the split is undone (the front importing the Effect part statically) or
 * if the metadata the front lists drifts from the Effect tool definitions.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js"
import { ConfigProvider, Effect, Exit, Layer, Scope } from "effect"
import { readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startBroker, type TestBroker } from "../../broker/test/harness.js"
import * as Front from "../src/Front.js"
import * as McpConfig from "../src/McpConfig.js"
import * as McpServer from "../src/McpServer.js"
import { allTools } from "../src/Tools.js"
import { toolSpecs } from "../src/ToolSpecs.js"
import { CLI, type McpSession, startSession } from "./harness.js"

let broker: TestBroker
let token: string
const sessions: Array<McpSession> = []

beforeAll(async () => {
  broker = await startBroker()
  token = await broker.token("fast", "peer")
})

afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()))
  await broker.close()
})

/** Every file `file` imports statically (`import … from "./x.js"`), transitively, itself included. */
const staticGraph = (file: string, seen = new Set<string>()): Set<string> => {
  if (seen.has(file)) return seen
  seen.add(file)
  const text = readFileSync(file, "utf8")
  for (const [, spec] of text.matchAll(/(?:^|[;\s}])(?:import|export)\s*(?:[^"'();]*?\bfrom\s*)?["'](\.\/[^"']+)["']/g)) {
    staticGraph(join(dirname(file), spec!), seen)
  }
  return seen
}

describe("the bin's front", () => {
  it("answers initialize and tools/list while the Effect part is not loaded, and a tool call waits for it", async () => {
    // A2A_MCP_HOLD_EFFECT=1: the bin loads the Effect part only on SIGUSR2.
    const session = await startSession({
      url: broker.url,
      token,
      name: "held",
      env: { A2A_MCP_HOLD_EFFECT: "1", A2A_LOG_LEVEL: "debug" }
    })
    sessions.push(session)
    const { tools } = await session.client.listTools()
    expect(tools.map((t) => t.name)).toEqual(toolSpecs.map((s) => s.name))
    expect(session.client.getInstructions()).toBe(Front.instructions)
    // The Effect part logs this (at debug) once it serves; it has not run yet.
    expect(session.stderr()).not.toContain("serving on stdio")
    const whoami = session.ok("whoami")
    process.kill(session.pid!, "SIGUSR2")
    expect((await whoami).data.peer.name).toBe("held")
    expect(session.stderr()).toContain("serving on stdio")
  })

  it("loads no effect before it serves: the built cli.js imports no chunk holding effect", () => {
    const graph = [...staticGraph(CLI)]
    expect(graph.length).toBeGreaterThan(1)
    for (const file of graph) expect(readFileSync(file, "utf8"), file).not.toContain('Symbol.for("effect/Effect")')
    // while the Effect part it imports dynamically does hold effect
    const backend = /import\("\.\/(Backend-[^"]+\.js)"\)/.exec(readFileSync(CLI, "utf8"))?.[1]
    expect(backend).toBeDefined()
    const effect = [...staticGraph(join(dirname(CLI), backend!))].some((f) => readFileSync(f, "utf8").includes('Symbol.for("effect/Effect")'))
    expect(effect).toBe(true)
  })
})

describe("the front's metadata", () => {
  it("is the Effect tools' metadata, tool for tool and in order", () => {
    const meta = (t: { name: string; title: string; description: string; input: unknown; annotations?: unknown }) => ({
      name: t.name,
      title: t.title,
      description: t.description,
      input: t.input,
      annotations: t.annotations
    })
    expect(allTools().map(meta)).toEqual(toolSpecs.map(meta))
    expect(toolSpecs).toHaveLength(21)
  })

  it("the bin lists exactly what the Effect server (McpServer.make) lists: tools, schemas, instructions, capabilities", async () => {
    const session = await startSession({ url: broker.url, token, name: "lister" })
    sessions.push(session)
    const fromBin = {
      tools: (await session.client.listTools()).tools,
      instructions: session.client.getInstructions(),
      capabilities: session.client.getServerCapabilities(),
      name: session.client.getServerVersion()?.name
    }
    // The library's Effect server, in process over an in-memory transport.
    const config = await Effect.runPromise(
      McpConfig.read.pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["A2A_BROKER_URL", broker.url], ["A2A_TOKEN", token], ["A2A_PEER_NAME", "in-process"]])))
      )
    )
    const scope = await Effect.runPromise(Scope.make())
    try {
      const [clientSide, serverSide] = InMemoryTransport.createLinkedPair()
      await Effect.runPromise(Layer.buildWithScope(McpServer.layer(config, serverSide), scope))
      const client = new Client({ name: "in-process", version: "1.0.0" })
      await client.connect(clientSide)
      const fromEffect = {
        tools: (await client.listTools()).tools,
        instructions: client.getInstructions(),
        capabilities: client.getServerCapabilities(),
        name: client.getServerVersion()?.name
      }
      // As on the wire (the in-memory transport passes objects with undefined fields as they are).
      expect(fromBin).toEqual(JSON.parse(JSON.stringify(fromEffect)))
      expect(fromBin.tools).toHaveLength(21)
      await client.close()
    } finally {
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  })
})
