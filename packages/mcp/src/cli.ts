#!/usr/bin/env node
/**
 * `a2a-mcp` (also `npx @mks/a2a-mcp`): the stdio MCP server of one agent session.
 * stdout carries only MCP JSON-RPC; every log line goes to stderr.
 *
 * This file is the bin's front, plain TypeScript without effect: it connects the SDK server of
 * Front.ts (instructions and the 21 tools' metadata) to stdio at once, so `initialize` and
 * `tools/list` are answered after loading the MCP SDK and zod alone, and only then imports the
 * Effect part (Backend.ts, a chunk of its own: effect, @effect/platform, core, the session).
 * Tool calls wait for it. Measured with bench/footprint.mjs --only mcp: loading the Effect part
 * first (~1.5 MB of bundled code) and building the broker client and session before answering
 * made the first `tools/list` take 1.8–2.0× as long as a bare SDK server's.
 */
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js"
import { fileURLToPath } from "node:url"
import * as Front from "./Front.js"

/** The agent that started us; read first thing, so a parent that dies during start-up is still noticed. */
const initialParent = process.ppid

// Nothing but JSON-RPC may reach stdout: route stray console output to stderr.
console.log = console.error
console.info = console.error
console.debug = console.error

/** Resolves when the agent is gone: stdin closed, or the parent process died (checked every second). */
const watchAgent = (): Promise<string> =>
  new Promise((resolve) => {
    process.stdin.once("end", () => resolve("stdin closed"))
    process.stdin.once("close", () => resolve("stdin closed"))
    const check = () => {
      if (process.ppid !== initialParent) resolve(`parent process ${initialParent} exited`)
    }
    check()
    setInterval(check, 1_000).unref()
  })

/**
 * Test hook: with `A2A_MCP_HOLD_EFFECT=1` the Effect part is loaded only once the process gets
 * SIGUSR2, so a test can show that `initialize` and `tools/list` never wait for it.
 */
const held = (): Promise<unknown> =>
  process.env.A2A_MCP_HOLD_EFFECT === "1" ? new Promise((resolve) => process.once("SIGUSR2", resolve)) : Promise.resolve()

const serve = async () => {
  const gone = watchAgent()
  let ready: (call: Front.CallTool) => void = () => {}
  const callable = new Promise<Front.CallTool>((resolve) => (ready = resolve))
  const front = Front.make((name, args) => callable.then((call) => call(name, args)))
  await front.server.connect(new StdioServerTransport())
  const Backend = await held().then(() => import("./Backend.js"))
  Backend.run({ front, gone, agentPid: initialParent, ready })
}

const argv = process.argv.slice(2)
if (argv.length > 0) {
  // --help, --version, --print-config: not worth keeping out of the Effect part.
  import("./Commands.js").then(
    (Commands) => process.exit(Commands.run(argv, fileURLToPath(import.meta.url))),
    (error: unknown) => {
      process.stderr.write(`a2a-mcp: ${String(error)}\n`)
      process.exit(1)
    }
  )
} else {
  serve().catch((error: unknown) => {
    process.stderr.write(`a2a-mcp: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`)
    process.exit(1)
  })
}
