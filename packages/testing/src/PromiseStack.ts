/**
 * The Promise face of `Stack`, for tests that do not use Effect:
 *
 * ```ts
 * const stack = await startStack()
 * const alice = await stack.peer("alice"), bob = await stack.peer("bob")
 * await alice.send("bob", "hi")
 * expect((await bob.nextMessage()).body).toBe("hi")
 * await stack.close()
 * ```
 */
import { createBrokerClient, type PromiseClient, type VirtualKey } from "@mks/a2a"
import { Effect, Exit, Logger, LogLevel, Scope } from "effect"
import * as FakeMessages from "./FakeMessages.js"
import * as Stack from "./Stack.js"

type MessageJson = PromiseClient.MessageJson
type EventJson = PromiseClient.PeerEventJson

/** A peer on the stack's broker with its live channel (auto-acked) and what it received. */
export interface TestPeer {
  readonly id: string
  readonly name: string
  readonly peer: PromiseClient.PeerJson
  readonly client: PromiseClient.PromiseBrokerClient
  readonly channel: PromiseClient.PromiseChannel
  /** Every message received so far, in order. */
  readonly messages: ReadonlyArray<MessageJson>
  readonly events: ReadonlyArray<EventJson>
  /** Send to a peer (name or id). */
  readonly send: (to: string, body: string, extra?: Omit<PromiseClient.ChannelSendJson, "to" | "body" | "team">) => Promise<PromiseClient.SendResultJson>
  /** Send to a team. */
  readonly sendTeam: (team: string, body: string) => Promise<PromiseClient.SendResultJson>
  /** The next received message (matching `predicate`) not returned by an earlier call. */
  readonly nextMessage: (predicate?: (m: MessageJson) => boolean, timeoutMs?: number) => Promise<MessageJson>
  /** The first event (received or still to come) that matches. */
  readonly event: (predicate: (e: EventJson) => boolean, timeoutMs?: number) => Promise<EventJson>
  /** The task board as this peer (docs/tasks.md): it creates, claims and holds tasks under its own id. */
  readonly tasks: TestPeerTasks
}

type TaskJson = PromiseClient.TaskJson
type TaskEventJson = Extract<EventJson, { type: "task" }>

/** Task board helpers of a {@link TestPeer}. */
export interface TestPeerTasks {
  /** Put a task on a team's board, created by this peer. */
  readonly create: (team: string, title: string, extra?: { body?: string; priority?: number; labels?: ReadonlyArray<string>; dependsOn?: ReadonlyArray<string>; maxAttempts?: number }) => Promise<TaskJson>
  /** Claim the team's next task as this peer; `null` when there is none. */
  readonly claimNext: (team: string, options?: { labels?: ReadonlyArray<string>; leaseMs?: number }) => Promise<TaskJson | null>
  readonly heartbeat: (id: string, note?: string) => Promise<TaskJson>
  readonly complete: (id: string, result?: string) => Promise<TaskJson>
  readonly fail: (id: string, reason?: string) => Promise<TaskJson>
  readonly release: (id: string) => Promise<TaskJson>
  /** The first `task` event (received or still to come) with this change (and task id). */
  readonly event: (change: TaskEventJson["change"], taskId?: string, timeoutMs?: number) => Promise<TaskEventJson>
}

export interface TestStack {
  readonly broker: { readonly url: string; readonly home: string; readonly adminToken: string }
  readonly runner: Stack.StackRunner | undefined
  readonly proxy:
    | {
        readonly url: string
        readonly adminToken: string
        readonly runnerKey: string
        readonly createKey: (input: VirtualKey.CreateKey) => Promise<VirtualKey.CreatedKey>
      }
    | undefined
  readonly fakes: Readonly<Record<string, FakeMessages.FakeMessagesHandle>>
  /** A fresh static broker token (default: tenant `default`, role `peer`). */
  readonly token: (tenant?: string, ...roles: Array<Stack.Role>) => Promise<string>
  /** A Promise broker client (admin token unless given); closed with the stack. */
  readonly client: (token?: string) => PromiseClient.PromiseBrokerClient
  /** Register a peer and open its channel (resolves once the channel is open). */
  readonly peer: (name: string, options?: { readonly teams?: ReadonlyArray<string>; readonly token?: string; readonly summary?: string }) => Promise<TestPeer>
  /** Stop everything: clients, runner (and its agents), proxy, broker, fakes; temp dirs removed. */
  readonly close: () => Promise<void>
}

export interface StartOptions extends Stack.StackOptions {
  /** Server logs at or above this level go to the console (default `Warning`). */
  readonly logLevel?: LogLevel.LogLevel
}

const waiting = <A>(find: () => A | undefined, subscribe: (wake: () => void) => () => void, what: string, timeoutMs: number): Promise<A> =>
  new Promise((resolve, reject) => {
    let unsubscribe = () => {}
    const timer = setTimeout(() => {
      unsubscribe()
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`))
    }, timeoutMs)
    const check = () => {
      const found = find()
      if (found === undefined) return false
      clearTimeout(timer)
      unsubscribe()
      resolve(found)
      return true
    }
    if (!check()) unsubscribe = subscribe(() => void check())
  })

/** Boot a stack; see `Stack.StackOptions`. */
export const startStack = async (options: StartOptions = {}): Promise<TestStack> => {
  const scope = Effect.runSync(Scope.make())
  const stack = await FakeMessages.runPromise(
    Stack.make(options).pipe(Scope.extend(scope), Logger.withMinimumLogLevel(options.logLevel ?? LogLevel.Warning))
  ).catch(async (e) => {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    throw e
  })
  const clients = new Set<PromiseClient.PromiseBrokerClient>()
  const client = (token?: string) => {
    const c = createBrokerClient({ url: stack.broker.url, token: token ?? stack.broker.adminToken })
    clients.add(c)
    return c
  }
  const fakes = Object.fromEntries(Object.entries(stack.fakes).map(([name, fake]) => [name, FakeMessages.toHandle(fake)]))

  const peer: TestStack["peer"] = async (name, options = {}) => {
    const c = client(options.token)
    const { peer } = await c.peers.register({ name, ...(options.teams === undefined ? {} : { teams: [...options.teams] }), ...(options.summary === undefined ? {} : { summary: options.summary }) })
    const channel = c.connect(peer.id, { autoAck: true })
    const messages: Array<MessageJson> = []
    const events: Array<EventJson> = []
    const wakers = new Set<() => void>()
    const subscribe = (wake: () => void) => {
      wakers.add(wake)
      return () => void wakers.delete(wake)
    }
    const taken = new Set<string>()
    channel.on("message", (m) => {
      if (messages.some((x) => x.id === m.id)) return
      messages.push(m)
      for (const w of [...wakers]) w()
    })
    channel.on("event", (e) => {
      events.push(e)
      for (const w of [...wakers]) w()
    })
    await new Promise<void>((resolve, reject) => {
      channel.on("open", () => resolve())
      channel.on("close", (error) => reject(error ?? new Error(`the channel of ${name} closed before it opened`)))
    })
    return {
      id: peer.id,
      name: peer.name,
      peer,
      client: c,
      channel,
      messages,
      events,
      send: (to, body, extra = {}) => channel.send({ ...extra, to, body }),
      sendTeam: (team, body) => channel.send({ team, body }),
      nextMessage: (predicate = () => true, timeoutMs = 10_000) =>
        waiting(
          () => {
            const m = messages.find((x) => !taken.has(x.id) && predicate(x))
            if (m !== undefined) taken.add(m.id)
            return m
          },
          subscribe,
          `a message to ${name}`,
          timeoutMs
        ),
      event: (predicate, timeoutMs = 10_000) => waiting(() => events.find(predicate), subscribe, `an event at ${name}`, timeoutMs),
      tasks: {
        create: (team, title, extra = {}) =>
          c.tasks.create({ team, title, ...extra, labels: extra.labels === undefined ? undefined : [...extra.labels], dependsOn: extra.dependsOn === undefined ? undefined : [...extra.dependsOn], peer: peer.id }).then((r) => r.task),
        claimNext: (team, options = {}) =>
          c.tasks.claimNext({ team, peer: peer.id, labels: options.labels === undefined ? undefined : [...options.labels], leaseMs: options.leaseMs }).then((r) => r.task),
        heartbeat: (id, note) => c.tasks.heartbeat(id, { peer: peer.id, note }).then((r) => r.task),
        complete: (id, result) => c.tasks.complete(id, { peer: peer.id, result }).then((r) => r.task),
        fail: (id, reason) => c.tasks.fail(id, { peer: peer.id, reason }).then((r) => r.task),
        release: (id) => c.tasks.release(id, { peer: peer.id }).then((r) => r.task),
        event: (change, taskId, timeoutMs = 10_000) =>
          waiting(
            () => events.find((e): e is TaskEventJson => e.type === "task" && e.change === change && (taskId === undefined || e.task.id === taskId)),
            subscribe,
            `a task ${change} event at ${name}`,
            timeoutMs
          )
      }
    }
  }

  let closed: Promise<void> | undefined
  return {
    broker: { url: stack.broker.url, home: stack.broker.home, adminToken: stack.broker.adminToken },
    runner: stack.runner,
    proxy:
      stack.proxy === undefined
        ? undefined
        : {
            url: stack.proxy.url,
            adminToken: stack.proxy.adminToken,
            runnerKey: stack.proxy.runnerKey,
            createKey: (input) => FakeMessages.runPromise(stack.proxy!.createKey(input))
          },
    fakes,
    token: (tenant, ...roles) => FakeMessages.runPromise(stack.broker.createToken(tenant, roles.length > 0 ? roles : undefined)),
    client,
    peer,
    close: () =>
      (closed ??= (async () => {
        await Promise.all([...clients].map((c) => c.close().catch(() => {})))
        await Effect.runPromise(Scope.close(scope, Exit.void))
      })())
  }
}
