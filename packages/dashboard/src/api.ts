/**
 * The broker's HTTP API, same origin, with the session's bearer token. Every failure is an
 * `ApiError` carrying the broker's `{_tag, message}` (or a `NetworkError` when it is unreachable).
 */
import type { ErrorBody, Message, NewTask, Peer, Runner, Spawn, SpawnSpec, Task, TaskState, Team, WireError } from "./wire.js"

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly error: ErrorBody
  ) {
    super(error.message)
  }
  get tag(): string {
    return this.error._tag
  }
}

const asWireError = (status: number, body: unknown): ErrorBody =>
  typeof body === "object" && body !== null && typeof (body as WireError)._tag === "string" && typeof (body as WireError).message === "string"
    ? (body as WireError)
    : { _tag: status === 0 ? "NetworkError" : `Http${status}`, message: status === 0 ? "the broker cannot be reached" : `the broker answered ${status}` }

export interface Api {
  readonly peers: {
    readonly list: () => Promise<ReadonlyArray<Peer>>
    readonly get: (id: string) => Promise<Peer>
    readonly register: (input: { name?: string; summary?: string; agent?: string; host?: string; teams?: ReadonlyArray<string>; meta?: Record<string, unknown> }) => Promise<Peer>
    readonly stop: (id: string) => Promise<Spawn>
  }
  readonly messages: {
    readonly send: (input: { from: string; to?: string; team?: string; body: string; threadId?: string }) => Promise<{ message: Message; recipients: ReadonlyArray<string> }>
  }
  readonly teams: {
    readonly list: () => Promise<ReadonlyArray<Team>>
    readonly create: (name: string, description?: string) => Promise<Team>
    readonly join: (name: string, peerId: string) => Promise<Team>
    readonly leave: (name: string, peerId: string) => Promise<Team>
  }
  readonly runners: { readonly list: () => Promise<ReadonlyArray<Runner>> }
  readonly spawns: {
    readonly list: () => Promise<ReadonlyArray<Spawn>>
    readonly create: (spec: SpawnSpec) => Promise<Spawn>
    readonly stop: (id: string) => Promise<Spawn>
  }
  readonly tasks: {
    readonly list: (filter: { team?: string; state?: TaskState; limit?: number }) => Promise<ReadonlyArray<Task>>
    readonly create: (input: NewTask) => Promise<Task>
    readonly cancel: (id: string, reason?: string) => Promise<Task>
    /** To `peer` (a fresh lease), or back to `open` without one. */
    readonly reassign: (id: string, peer?: string) => Promise<Task>
  }
}

export const makeApi = (token: string, base = ""): Api => {
  const call = async <A>(method: string, path: string, body?: unknown): Promise<A> => {
    let response: Response
    try {
      response = await fetch(base + path, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store"
      })
    } catch {
      throw new ApiError(0, asWireError(0, undefined))
    }
    const text = await response.text()
    let json: unknown
    try {
      json = text.length > 0 ? JSON.parse(text) : undefined
    } catch {
      json = undefined
    }
    if (!response.ok) throw new ApiError(response.status, asWireError(response.status, json))
    return json as A
  }
  const seg = encodeURIComponent
  return {
    peers: {
      list: () => call<{ peers: ReadonlyArray<Peer> }>("GET", "/api/peers").then((r) => r.peers),
      get: (id) => call<{ peer: Peer }>("GET", `/api/peers/${seg(id)}`).then((r) => r.peer),
      register: (input) => call<{ peer: Peer }>("POST", "/api/peers", input).then((r) => r.peer),
      stop: (id) => call<{ spawn: Spawn }>("POST", `/api/peers/${seg(id)}/stop`).then((r) => r.spawn)
    },
    messages: { send: (input) => call("POST", "/api/messages", input) },
    teams: {
      list: () => call<{ teams: ReadonlyArray<Team> }>("GET", "/api/teams").then((r) => r.teams),
      create: (name, description) => call<{ team: Team }>("POST", "/api/teams", description ? { name, description } : { name }).then((r) => r.team),
      join: (name, peerId) => call<{ team: Team }>("POST", `/api/teams/${seg(name)}/members`, { peerId }).then((r) => r.team),
      leave: (name, peerId) => call<{ team: Team }>("DELETE", `/api/teams/${seg(name)}/members/${seg(peerId)}`).then((r) => r.team)
    },
    runners: { list: () => call<{ runners: ReadonlyArray<Runner> }>("GET", "/api/runners").then((r) => r.runners) },
    spawns: {
      list: () => call<{ spawns: ReadonlyArray<Spawn> }>("GET", "/api/spawn").then((r) => r.spawns),
      create: (spec) => call<{ spawn: Spawn }>("POST", "/api/spawn", spec).then((r) => r.spawn),
      stop: (id) => call<{ spawn: Spawn }>("DELETE", `/api/spawn/${seg(id)}`).then((r) => r.spawn)
    },
    tasks: {
      list: (filter) => {
        const query = new URLSearchParams()
        for (const [k, v] of Object.entries(filter)) if (v !== undefined) query.set(k, String(v))
        return call<{ tasks: ReadonlyArray<Task> }>("GET", `/api/tasks?${query}`).then((r) => r.tasks)
      },
      create: (input) => call<{ task: Task }>("POST", "/api/tasks", input).then((r) => r.task),
      cancel: (id, reason) => call<{ task: Task }>("POST", `/api/tasks/${seg(id)}/cancel`, reason === undefined ? {} : { reason }).then((r) => r.task),
      reassign: (id, peer) => call<{ task: Task }>("POST", `/api/tasks/${seg(id)}/reassign`, peer === undefined ? {} : { peer }).then((r) => r.task)
    }
  }
}
