import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, TestClock } from "effect"
import { EventEmitter } from "node:events"
import type { FSWatcher } from "node:fs"
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as TokenStore from "../src/TokenStore.js"

// The file store knows its file changed from an inotify watch (else one fstat per request) and
// remembers each token's lookup for the records in force: whatever way the file changes, a
// remembered token must not outlive its removal. A change is seen once the event loop has polled
// (as it has before a request sent after the change is read): `polled` lets it.
const polled = Effect.promise(() => new Promise<void>((resolve) => setImmediate(() => setImmediate(resolve))))
const withFile = <A, E>(body: (path: string) => Effect.Effect<A, E, import("effect").Scope.Scope>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "a2a-tokens-"))),
    (dir) => Effect.scoped(body(join(dir, "tokens.json"))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

const accepted = (store: TokenStore.TokenStoreService, token: string) =>
  Effect.map(Effect.exit(store.authenticate(token)), Exit.isSuccess)

describe("TokenStore (file)", () => {
  it.effect("a remembered token stops working when the file is replaced by rename, edited in place or removed, and works again when restored", () =>
    withFile((path) =>
      Effect.gen(function* () {
        const store = yield* TokenStore.make(path)
        const { token } = yield* store.create({ tenant: "t", roles: ["peer"], name: "a" })
        const { token: other } = yield* store.create({ tenant: "t", roles: ["peer"], name: "b" })
        // Twice each: the second answer comes from the memo.
        for (let i = 0; i < 2; i++) expect(yield* accepted(store, token)).toBe(true)
        const withBoth = readFileSync(path, "utf8")
        const file = JSON.parse(withBoth) as { version: 1; tokens: Array<{ name?: string }> }
        const withoutA = JSON.stringify({ ...file, tokens: file.tokens.filter((t) => t.name !== "a") })

        // Replaced by rename (as the CLI writes it): the inode the store holds loses its link.
        writeFileSync(`${path}.tmp`, withoutA)
        renameSync(`${path}.tmp`, path)
        yield* polled
        expect(yield* accepted(store, token)).toBe(false)
        expect(yield* accepted(store, other)).toBe(true)

        // Edited in place (same inode, other size), back to both, then to one again.
        writeFileSync(path, withBoth)
        yield* polled
        expect(yield* accepted(store, token)).toBe(true)
        writeFileSync(path, withoutA)
        yield* polled
        expect(yield* accepted(store, token)).toBe(false)

        // Removed: no tokens at all; written again: in force again.
        rmSync(path)
        yield* polled
        expect(yield* accepted(store, other)).toBe(false)
        writeFileSync(path, withBoth)
        yield* polled
        expect(yield* accepted(store, token)).toBe(true)
        expect(yield* accepted(store, other)).toBe(true)
      })
    )
  )

  it.effect("where the watch never reports (another host's change over NFS), the file is still looked at every RECHECK_MS", () =>
    withFile((path) =>
      Effect.gen(function* () {
        const deaf = () => Object.assign(new EventEmitter(), { close: () => {}, ref() { return this }, unref() { return this } }) as unknown as FSWatcher
        const store = yield* TokenStore.make(path, { watch: deaf })
        const { token } = yield* store.create({ tenant: "t", roles: ["peer"], name: "a" })
        expect(yield* accepted(store, token)).toBe(true)
        const file = JSON.parse(readFileSync(path, "utf8")) as { version: 1; tokens: Array<{ name?: string }> }
        writeFileSync(`${path}.tmp`, JSON.stringify({ ...file, tokens: [] }))
        renameSync(`${path}.tmp`, path)
        yield* polled
        // Nothing told the store; within the recheck interval it still answers from what it read.
        expect(yield* accepted(store, token)).toBe(true)
        yield* TestClock.adjust(TokenStore.RECHECK_MS)
        expect(yield* accepted(store, token)).toBe(false)
      })
    )
  )

  it.effect("a flood of unknown tokens is refused and leaves known tokens working", () =>
    withFile((path) =>
      Effect.gen(function* () {
        const store = yield* TokenStore.make(path)
        const { token } = yield* store.create({ tenant: "t", roles: ["peer"] })
        for (let i = 0; i < 5_000; i++) expect(yield* accepted(store, `${TokenStore.TOKEN_PREFIX}unknown${i}`)).toBe(false)
        expect(yield* accepted(store, token)).toBe(true)
        expect(yield* store.idOf(token)).toMatch(/^t_/)
        expect(yield* store.idOf(`${TokenStore.TOKEN_PREFIX}unknown`)).toBeUndefined()
      })
    )
  )
})
