import { execFile } from "node:child_process"
import { join } from "node:path"
import { promisify } from "node:util"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startBroker, type TestBroker } from "./harness.js"

const run = promisify(execFile)
const examples = join(import.meta.dirname, "..", "..", "..", "examples")

describe("examples run against a real broker", () => {
  let broker: TestBroker
  beforeAll(async () => {
    broker = await startBroker()
  })
  afterAll(() => broker.close())

  it("ping-pong: every ping gets its pong in the same thread", async () => {
    const { stdout } = await run(process.execPath, [join(examples, "ping-pong", "index.mjs")], {
      env: { ...process.env, A2A_BROKER_URL: broker.url, A2A_TOKEN: broker.adminToken, ROUNDS: "3" },
      timeout: 20_000
    })
    expect(stdout.trim().split("\n")).toEqual(["ping 1 -> pong 1", "ping 2 -> pong 2", "ping 3 -> pong 3"])
  })
})
