/**
 * @mks/a2a-testing — a whole a2a stack for your own tests: broker, runner and proxy in this
 * process on 127.0.0.1 ephemeral ports, a fake Anthropic Messages API per provider, typed
 * clients, and a clean teardown. `Stack.layer(options)` for Effect programs, `startStack(options)`
 * for everything else.
 */
export * as FakeMessages from "./FakeMessages.js"
export * as PromiseStack from "./PromiseStack.js"
export * as Stack from "./Stack.js"
export { startStack, type StartOptions, type TestPeer, type TestStack } from "./PromiseStack.js"

import * as FakeMessages from "./FakeMessages.js"
/** A fake Messages API outside any stack (Promise face; `close()` stops it). */
export const startFakeMessages = FakeMessages.start
