import { readFileSync, rmSync, statSync } from "node:fs"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { client, startBrokerProcess, tempHome, type BrokerProcess } from "./harness.js"

// The WAL checkpointer thread starts only once the WAL has grown (1 MiB), so an idle broker does
// not carry a second isolate; once started it copies the WAL into the database file. Until then
// the database file stays as created: SQLite's own autocheckpoint waits for 20,000 pages (~80 MiB).
const homes: Array<string> = []
const children: Array<BrokerProcess> = []
afterAll(() => {
  for (const c of children) c.child.kill("SIGKILL")
  for (const h of homes) rmSync(h, { recursive: true, force: true })
})

const size = (file: string) => statSync(file, { throwIfNoEntry: false })?.size ?? 0
const threads = (pid: number) => Number(/^Threads:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1])

/** Poll `probe` until it is true; the deadline is for a loaded machine (it takes ~2 s idle). */
const until = async (probe: () => boolean, what: string, deadlineMs = 60_000) => {
  const end = Date.now() + deadlineMs
  while (!probe()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

describe("the WAL checkpointer thread", () => {
  it("starts once the WAL holds 1 MiB, not before, and then checkpoints the WAL into the database file", async () => {
    const home = tempHome()
    homes.push(home)
    const broker = await startBrokerProcess(home)
    children.push(broker)
    const db = join(home, "broker.db")
    const api = client(broker, readFileSync(join(home, "broker.token"), "utf8").trim())
    const a = (await api.peers.register({ name: "wal-a" })).peer
    const b = (await api.peers.register({ name: "wal-b" })).peer
    const body = "x".repeat(100_000)
    await api.messages.send({ from: a.id, to: b.id, body })
    const idleThreads = threads(broker.child.pid!)
    const dbBefore = size(db)
    // A few intervals with a small WAL: no thread, nothing copied.
    await until(() => size(`${db}-wal`) > 0, "the WAL")
    expect(size(`${db}-wal`)).toBeLessThan(1024 * 1024)
    const wait = Date.now() + 3_000
    await until(() => Date.now() > wait, "a dozen checkpoint intervals")
    expect(threads(broker.child.pid!)).toBe(idleThreads)
    expect(size(db)).toBe(dbBefore)

    // ~6 MiB of messages: the WAL passes 1 MiB, the thread starts and copies it into the file
    // (without the thread nothing would be copied before 20,000 pages). Once the thread runs, a
    // checkpoint between two sends may let the WAL start over, so its size is not asserted.
    for (let i = 0; i < 60; i++) await api.messages.send({ from: a.id, to: b.id, body })
    await until(() => size(db) > 4 * 1024 * 1024, "the checkpoint into the database file")
    expect(threads(broker.child.pid!)).toBeGreaterThan(idleThreads)
    await api.close()
    broker.child.kill("SIGTERM")
    expect(await broker.exited).toBe(0)
  }, 120_000)
})
