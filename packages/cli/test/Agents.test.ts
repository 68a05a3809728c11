/**
 * `a2a agents add|list|remove` (the built CLI) against a real broker and a remote A2A agent on
 * the official `@a2a-js/sdk` server: the credential is read from the environment or stdin and
 * never printed; bad input is a usage error (exit 2); broker refusals exit 1 with their name.
 */
import { execFile } from "node:child_process"
import { join } from "node:path"
import { afterAll, beforeAll, expect, it } from "vitest"
import { type RemoteAgent, startRemoteAgent } from "../../broker/test/a2aRemote.js"
import { startBroker, type TestBroker } from "../../broker/test/harness.js"

const CLI = join(import.meta.dirname, "..", "dist", "cli.js")
const SECRET = "cli-remote-secret-42"

let broker: TestBroker
let remote: RemoteAgent
let token: string

const a2a = (args: ReadonlyArray<string>, options: { input?: string; env?: Record<string, string> } = {}) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    const child = execFile(
      process.execPath,
      [CLI, ...args],
      { env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", A2A_BROKER_URL: broker.url, A2A_TOKEN: token, ...options.env } },
      (error, stdout, stderr) => resolve({ code: error === null ? 0 : Number((error as { code?: number }).code ?? 1), stdout, stderr })
    )
    child.stdin!.end(options.input ?? "")
  })

beforeAll(async () => {
  broker = await startBroker()
  remote = await startRemoteAgent(SECRET, "cli-remote")
  token = await broker.token("acme", "peer")
})
afterAll(async () => {
  await remote?.close()
  await broker?.close()
})

it("add (credential from the environment), list, remove", async () => {
  const added = await a2a(["agents", "add", "cli-remote", remote.cardUrl, "--credential-env", "REMOTE_TOKEN"], { env: { REMOTE_TOKEN: SECRET } })
  expect(added.stderr).toBe("")
  expect(added.code).toBe(0)
  expect(added.stdout).toContain("Bridged cli-remote")
  expect(added.stdout).toContain("with a stored credential")
  const listed = await a2a(["agents", "list"])
  expect(listed.stdout).toMatch(/cli-remote .* 1\.0 .*stored/)
  expect(listed.stdout).not.toContain(SECRET)
  const asJson = JSON.parse((await a2a(["agents", "list", "--json"])).stdout)
  expect(asJson.agents[0]).toMatchObject({ name: "cli-remote", hasCredential: true, version: "1.0" })
  expect(JSON.stringify(asJson)).not.toContain(SECRET)
  const removed = await a2a(["agents", "remove", "cli-remote"])
  expect(removed.code).toBe(0)
  expect((await a2a(["agents", "list"])).stdout).toContain("No remote A2A agents")
})

it("the credential from stdin; refusals: usage errors exit 2, broker errors exit 1 with the error's name", async () => {
  const fromStdin = await a2a(["agents", "add", "cli-remote-2", remote.cardUrl, "--credential", "-"], { input: `${SECRET}\n` })
  expect(fromStdin.code).toBe(0)
  const inline = await a2a(["agents", "add", "x", remote.cardUrl, "--credential", SECRET])
  expect(inline.code).toBe(2)
  expect(inline.stderr).not.toContain(SECRET)
  expect((await a2a(["agents", "add", "only-a-name"])).code).toBe(2)
  expect((await a2a(["agents", "teleport"])).code).toBe(2)
  const unset = await a2a(["agents", "add", "y", remote.cardUrl, "--credential-env", "NOT_SET_ANYWHERE"])
  expect(unset.code).toBe(2)
  const missing = await a2a(["agents", "remove", "nobody"])
  expect(missing.code).toBe(1)
  expect(missing.stderr).toContain("PeerNotFound")
  const noCredential = await a2a(["agents", "add", "z", remote.cardUrl])
  expect(noCredential.code).toBe(1)
  expect(noCredential.stderr).toContain("InvalidRequest")
})
