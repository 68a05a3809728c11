/**
 * The dashboard's session: the pasted token (sessionStorage only), the operator peer it
 * registers, its live channel, and the fleet state built from the API and channel events.
 */
import { ApiError, makeApi, type Api } from "./api.js"
import { CloseCode, isFinal, isFinalTask, parseServerFrame, type ClientFrame, type Message, type NewTask, type Peer, type PeerEvent, type Runner, type Spawn, type SpawnSpec, type Task, type Team } from "./wire.js"

const TOKEN_KEY = "a2a.dashboard.token"
const NAME_KEY = "a2a.dashboard.operator"
const messagesKey = (peerId: string) => `a2a.dashboard.messages.${peerId}`
/** Messages kept per operator in sessionStorage (the broker prunes acked ones). */
const KEEP_MESSAGES = 2_000
/** Runners and spawns have no events for the whole tenant: they are polled this often. */
const POLL_MS = 3_000
/** The broker marks a peer offline after 60 s without a heartbeat, socket or not. */
const heartbeatMs = (): number => {
  const override = (globalThis as { a2aHeartbeatMs?: unknown }).a2aHeartbeatMs
  return typeof override === "number" && override > 0 ? override : 15_000
}

export type Phase = "login" | "connecting" | "ready"
export type ChannelState = "connecting" | "open" | "closed"

export interface State {
  readonly phase: Phase
  readonly loginError: string | undefined
  readonly operator: Peer | undefined
  readonly channel: ChannelState
  readonly peers: ReadonlyMap<string, Peer>
  readonly teams: ReadonlyArray<Team>
  readonly runners: ReadonlyArray<Runner>
  readonly spawns: ReadonlyMap<string, Spawn>
  /** Tasks of the boards looked at, by id: listed when a board is opened, then kept current by `task` events. */
  readonly tasks: ReadonlyMap<string, Task>
  /** Messages the operator received or sent, oldest first, one per id. */
  readonly messages: ReadonlyArray<Message>
  /** The last failure of an action, shown in a status line. */
  readonly notice: { readonly kind: "error" | "info"; readonly text: string } | undefined
}

/** A conversation: direct with a peer (`peer:<id>`) or a team's (`team:<name>`). */
export type ThreadKey = `peer:${string}` | `team:${string}`

export const threadOf = (message: Message, operatorId: string): ThreadKey =>
  message.team !== undefined ? `team:${message.team}` : `peer:${message.from === operatorId ? (message.to ?? message.from) : message.from}`

/** A stable default operator name for a token: `operator-` and 8 hex digits of an FNV-1a hash. */
export const defaultOperatorName = (token: string): string => {
  let h = 0x811c9dc5
  for (let i = 0; i < token.length; i++) {
    h ^= token.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return `operator-${h.toString(16).padStart(8, "0")}`
}

/** A message for people from a broker error. */
export const describe = (e: unknown): string => {
  if (e instanceof ApiError) {
    switch (e.tag) {
      case "Unauthorized":
        return `The broker refused this token (${e.message}). Paste the whole token, and check that it was not revoked.`
      case "NetworkError":
        return "The broker cannot be reached. Is it running?"
      default:
        return `${e.tag}: ${e.message}`
    }
  }
  return e instanceof Error ? e.message : String(e)
}

const initial: State = {
  phase: "login",
  loginError: undefined,
  operator: undefined,
  channel: "closed",
  peers: new Map(),
  teams: [],
  runners: [],
  spawns: new Map(),
  tasks: new Map(),
  messages: [],
  notice: undefined
}

/** A board shows at most this many tasks of a team (the broker's largest page). */
export const BOARD_LIMIT = 10_000

/** Whether `incoming` is at least as fresh as `known` (a final state wins a tie: it never changes). */
const fresher = (incoming: Task, known: Task | undefined): boolean =>
  known === undefined || incoming.updatedAt > known.updatedAt || (incoming.updatedAt === known.updatedAt && !(isFinalTask(known.state) && !isFinalTask(incoming.state)))

export class Session {
  private state: State = initial
  private readonly listeners = new Set<() => void>()
  private api: Api | undefined
  private token: string | undefined
  private socket: WebSocket | undefined
  private reconnectDelay = 250
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined
  private pollTimer: ReturnType<typeof setInterval> | undefined
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined
  private ackPending = 0
  private refs = 0
  private readonly pending = new Map<string, { resolve: (m: Message) => void; reject: (e: Error) => void }>()
  private generation = 0
  /** The team whose board is on screen (listed again after the channel reconnects). */
  private board: string | undefined

  constructor(private readonly storage: Storage = sessionStorage) {}

  get(): State {
    return this.state
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  private noticeTimer: ReturnType<typeof setTimeout> | undefined

  private set(patch: Partial<State>) {
    if (patch.notice !== undefined && patch.notice !== this.state.notice) {
      // Information fades after a while; errors stay until dismissed.
      if (this.noticeTimer !== undefined) clearTimeout(this.noticeTimer)
      const notice = patch.notice
      this.noticeTimer = notice.kind === "info" ? setTimeout(() => this.state.notice === notice && this.set({ notice: undefined }), 6_000) : undefined
    }
    this.state = { ...this.state, ...patch }
    for (const listener of this.listeners) listener()
  }

  /** The API with the session's token; only while logged in. */
  get client(): Api {
    if (this.api === undefined) throw new Error("not logged in")
    return this.api
  }

  /** The token in use while logged in (for the relay sockets, which need it as `?token=`). */
  get currentToken(): string | undefined {
    return this.token
  }

  /** The token kept for this tab, if any (never put in the page URL). */
  storedLogin(): { token: string; name: string | undefined } | undefined {
    const token = this.storage.getItem(TOKEN_KEY)
    return token === null ? undefined : { token, name: this.storage.getItem(NAME_KEY) ?? undefined }
  }

  /** Check the token, register the operator peer and open its channel. */
  async login(token: string, name?: string): Promise<boolean> {
    const trimmed = token.trim()
    if (trimmed.length === 0) {
      this.set({ loginError: "Paste a broker token first." })
      return false
    }
    const generation = ++this.generation
    this.teardown()
    this.set({ phase: "connecting", loginError: undefined })
    const api = makeApi(trimmed)
    try {
      // Any authenticated read proves the token; registering then needs the peer role.
      const peers = await api.peers.list()
      const operatorName = name !== undefined && name.trim().length > 0 ? name.trim() : defaultOperatorName(trimmed)
      const operator = await api.peers
        .register({ name: operatorName, agent: "dashboard", summary: "Operator at the browser dashboard", host: "browser", meta: { dashboard: true } })
        .catch((e: unknown) => {
          if (e instanceof ApiError && e.tag === "PeerNameTaken") throw new Error(`The operator name "${operatorName}" belongs to another token of this tenant: choose another one.`)
          if (e instanceof ApiError && e.tag === "Forbidden") throw new Error(`This token may read but not act as a peer (${e.message}); the dashboard needs a token with the peer or admin role.`)
          throw e
        })
      if (generation !== this.generation) return false
      this.storage.setItem(TOKEN_KEY, trimmed)
      if (name !== undefined && name.trim().length > 0) this.storage.setItem(NAME_KEY, name.trim())
      else this.storage.removeItem(NAME_KEY)
      this.api = api
      this.token = trimmed
      const map = new Map(peers.map((p) => [p.id, p]))
      map.set(operator.id, operator)
      this.set({ phase: "ready", operator, peers: map, messages: this.loadMessages(operator.id), notice: undefined })
      this.connect()
      void this.refreshAll()
      this.heartbeatTimer = setInterval(() => this.write({ type: "heartbeat" }), heartbeatMs())
      this.pollTimer = setInterval(() => {
        if (document.visibilityState === "visible") void this.refreshPolled()
      }, POLL_MS)
      return true
    } catch (e) {
      if (generation !== this.generation) return false
      this.storage.removeItem(TOKEN_KEY)
      this.set({ ...initial, loginError: describe(e) })
      return false
    }
  }

  /** Forget the token, close the channel; the operator peer goes offline. */
  logout() {
    this.generation++
    this.storage.removeItem(TOKEN_KEY)
    this.storage.removeItem(NAME_KEY)
    this.teardown()
    this.set({ ...initial })
  }

  private teardown() {
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer)
    if (this.pollTimer !== undefined) clearInterval(this.pollTimer)
    if (this.heartbeatTimer !== undefined) clearInterval(this.heartbeatTimer)
    this.reconnectTimer = undefined
    this.pollTimer = undefined
    this.heartbeatTimer = undefined
    const socket = this.socket
    this.socket = undefined
    socket?.close(CloseCode.normal, "logout")
    for (const p of this.pending.values()) p.reject(new Error("logged out"))
    this.pending.clear()
    this.api = undefined
    this.token = undefined
  }

  // ---- the channel ---------------------------------------------------------------------------

  private connect() {
    const operator = this.state.operator
    if (operator === undefined || this.token === undefined) return
    const generation = this.generation
    const scheme = location.protocol === "https:" ? "wss:" : "ws:"
    // Browsers cannot set headers on a WebSocket: the broker takes `?token=` on upgrades.
    const url = `${scheme}//${location.host}/ws/broker/peer/${encodeURIComponent(operator.id)}?presence=batched&token=${encodeURIComponent(this.token)}`
    const socket = new WebSocket(url)
    this.socket = socket
    this.set({ channel: "connecting" })
    socket.onmessage = (event) => {
      if (this.socket !== socket) return
      const frame = parseServerFrame(String(event.data))
      if (frame !== undefined) this.onFrame(frame)
    }
    socket.onclose = (event) => {
      if (this.socket !== socket || generation !== this.generation) return
      this.socket = undefined
      this.set({ channel: "closed" })
      for (const p of this.pending.values()) p.reject(new Error("the channel closed before the broker answered"))
      this.pending.clear()
      if (event.code === CloseCode.unregistered) {
        // Someone unregistered the operator: register again (same name) and reconnect.
        void this.reRegister()
        return
      }
      this.reconnectTimer = setTimeout(() => this.connect(), this.reconnectDelay)
      this.reconnectDelay = Math.min(this.reconnectDelay * 2, 5_000)
    }
  }

  private async reRegister() {
    const operator = this.state.operator
    if (operator === undefined || this.api === undefined) return
    try {
      const peer = await this.api.peers.register({ name: operator.name, agent: "dashboard", summary: operator.summary, host: "browser", meta: { dashboard: true } })
      this.set({ operator: peer })
      this.connect()
    } catch (e) {
      this.set({ notice: { kind: "error", text: `The operator peer was removed and could not register again: ${describe(e)}` } })
    }
  }

  private write(frame: ClientFrame): boolean {
    const socket = this.socket
    if (socket === undefined || socket.readyState !== WebSocket.OPEN) return false
    socket.send(JSON.stringify(frame))
    return true
  }

  private onFrame(frame: NonNullable<ReturnType<typeof parseServerFrame>>) {
    switch (frame.type) {
      case "hello": {
        this.reconnectDelay = 250
        const peers = new Map(this.state.peers)
        peers.set(frame.peer.id, frame.peer)
        this.set({ channel: "open", operator: frame.peer, peers })
        // Events may have been missed while the socket was away.
        void this.refreshAll()
        return
      }
      case "message":
        this.addMessages([frame.message])
        if (frame.message.seq > this.ackPending) {
          this.ackPending = frame.message.seq
          queueMicrotask(() => this.write({ type: "ack", upTo: this.ackPending }))
        }
        return
      case "sent": {
        this.addMessages([frame.message])
        const waiting = frame.ref === undefined ? undefined : this.pending.get(frame.ref)
        if (waiting !== undefined) {
          this.pending.delete(frame.ref!)
          waiting.resolve(frame.message)
        }
        return
      }
      case "error": {
        const waiting = frame.ref === undefined ? undefined : this.pending.get(frame.ref)
        if (waiting !== undefined) {
          this.pending.delete(frame.ref!)
          waiting.reject(new ApiError(400, frame.error))
        } else this.set({ notice: { kind: "error", text: `${frame.error._tag}: ${frame.error.message}` } })
        return
      }
      case "acked":
        return
      case "event":
        this.onEvent(frame.event)
        return
    }
  }

  private onEvent(event: PeerEvent) {
    switch (event.type) {
      case "peer_joined":
      case "peer_left":
      case "peer_updated": {
        const peers = new Map(this.state.peers)
        // A peer that left (unregistered or timed out) is shown offline, whatever its record says.
        peers.set(event.peer.id, event.type === "peer_left" ? { ...event.peer, status: "offline" } : event.peer)
        const operator = event.peer.id === this.state.operator?.id ? event.peer : this.state.operator
        this.set({ peers, operator })
        return
      }
      case "peers_changed": {
        const peers = new Map(this.state.peers)
        let operator = this.state.operator
        for (const peer of [...event.joined, ...event.updated]) peers.set(peer.id, peer)
        // A peer that left (unregistered or gone) is shown offline, whatever its record says.
        for (const peer of event.left) peers.set(peer.id, { ...peer, status: "offline" })
        for (const peer of [...event.joined, ...event.updated, ...event.left]) if (peer.id === operator?.id) operator = peer
        this.set({ peers, operator })
        return
      }
      case "team_changed":
        void this.refreshTeams()
        return
      case "spawn_status": {
        const spawns = new Map(this.state.spawns)
        spawns.set(event.spawn.id, event.spawn)
        this.set({ spawns })
        return
      }
      case "task":
        this.addTasks([event.task])
        return
    }
  }

  private addTasks(incoming: ReadonlyArray<Task>) {
    const tasks = new Map(this.state.tasks)
    let changed = false
    for (const task of incoming) {
      if (fresher(task, tasks.get(task.id))) {
        tasks.set(task.id, task)
        changed = true
      }
    }
    if (changed) this.set({ tasks })
  }

  // ---- messages ------------------------------------------------------------------------------

  private loadMessages(operatorId: string): ReadonlyArray<Message> {
    try {
      const raw = this.storage.getItem(messagesKey(operatorId))
      const parsed: unknown = raw === null ? [] : JSON.parse(raw)
      return Array.isArray(parsed) ? (parsed as Array<Message>).filter((m) => typeof m?.id === "string" && typeof m?.body === "string") : []
    } catch {
      return []
    }
  }

  private addMessages(incoming: ReadonlyArray<Message>) {
    const known = new Set(this.state.messages.map((m) => m.id))
    const fresh = incoming.filter((m) => !known.has(m.id))
    if (fresh.length === 0) return
    const messages = [...this.state.messages, ...fresh].sort((a, b) => (a.sentAt < b.sentAt ? -1 : a.sentAt > b.sentAt ? 1 : 0)).slice(-KEEP_MESSAGES)
    this.set({ messages })
    const operator = this.state.operator
    if (operator !== undefined) {
      try {
        this.storage.setItem(messagesKey(operator.id), JSON.stringify(messages))
      } catch {
        // Storage full: the thread still shows this tab's messages.
      }
    }
  }

  /** Send as the operator: over the channel when it is open, else over HTTP. */
  async send(thread: ThreadKey, body: string): Promise<Message> {
    const target = thread.startsWith("team:") ? { team: thread.slice(5) } : { to: thread.slice(5) }
    const operator = this.state.operator
    if (operator === undefined) throw new Error("not logged in")
    const ref = `r${++this.refs}`
    if (this.write({ type: "send", ...target, body, ref })) {
      return new Promise<Message>((resolve, reject) => this.pending.set(ref, { resolve, reject }))
    }
    const { message } = await this.client.messages.send({ from: operator.id, ...target, body })
    this.addMessages([message])
    return message
  }

  // ---- reads and actions ---------------------------------------------------------------------

  private async guarded<A>(what: string, run: () => Promise<A>): Promise<A | undefined> {
    try {
      return await run()
    } catch (e) {
      if (e instanceof ApiError && e.tag === "Unauthorized") {
        // The token was revoked (or expired): back to the login view.
        this.logout()
        this.set({ loginError: describe(e) })
        return undefined
      }
      this.set({ notice: { kind: "error", text: `${what}: ${describe(e)}` } })
      return undefined
    }
  }

  async refreshAll() {
    await Promise.all([this.refreshPeers(), this.refreshTeams(), this.refreshPolled(), this.refreshBoard()])
  }

  async refreshPolled() {
    await Promise.all([this.refreshRunners(), this.refreshSpawns()])
  }

  async refreshPeers() {
    const peers = await this.guarded("Listing peers", () => this.client.peers.list())
    if (peers !== undefined) this.set({ peers: new Map(peers.map((p) => [p.id, p])) })
  }

  async refreshTeams() {
    const teams = await this.guarded("Listing teams", () => this.client.teams.list())
    if (teams !== undefined) this.set({ teams })
  }

  async refreshRunners() {
    const runners = await this.guarded("Listing runners", () => this.client.runners.list())
    if (runners !== undefined) this.set({ runners })
  }

  async refreshSpawns() {
    const spawns = await this.guarded("Listing spawns", () => this.client.spawns.list())
    if (spawns === undefined) return
    const map = new Map(this.state.spawns)
    for (const s of spawns) {
      const known = map.get(s.id)
      // An event may be fresher than a list read that started before it.
      if (known === undefined || known.updatedAt <= s.updatedAt) map.set(s.id, s)
    }
    this.set({ spawns: map })
  }

  async createSpawn(spec: SpawnSpec): Promise<Spawn | undefined> {
    const operator = this.state.operator
    const spawn = await this.guarded("Spawning", () => this.client.spawns.create({ ...spec, requestedBy: operator?.id }))
    if (spawn !== undefined) {
      const spawns = new Map(this.state.spawns)
      const known = spawns.get(spawn.id)
      if (known === undefined || known.updatedAt <= spawn.updatedAt) spawns.set(spawn.id, spawn)
      this.set({ spawns, notice: { kind: "info", text: `Spawn ${spawn.id} sent to runner ${spawn.runnerId}.` } })
    }
    return spawn
  }

  async stopSpawn(id: string) {
    const spawn = await this.guarded("Stopping", () => this.client.spawns.stop(id))
    if (spawn !== undefined) {
      const spawns = new Map(this.state.spawns)
      const known = spawns.get(id)
      if (known === undefined || !isFinal(known.status)) spawns.set(id, spawn)
      this.set({ spawns })
    }
  }

  async createTeam(name: string, description: string) {
    const team = await this.guarded("Creating the team", () => this.client.teams.create(name, description))
    if (team !== undefined) await this.refreshTeams()
    return team
  }

  async joinTeam(name: string) {
    const operator = this.state.operator
    if (operator === undefined) return
    if ((await this.guarded("Joining", () => this.client.teams.join(name, operator.id))) !== undefined) await Promise.all([this.refreshTeams(), this.refreshPeers()])
  }

  async leaveTeam(name: string) {
    const operator = this.state.operator
    if (operator === undefined) return
    if ((await this.guarded("Leaving", () => this.client.teams.leave(name, operator.id))) !== undefined) await Promise.all([this.refreshTeams(), this.refreshPeers()])
  }

  // ---- the task board ------------------------------------------------------------------------

  /** Show `team`'s board: list its tasks now (and again whenever the channel reconnects). */
  async watchBoard(team: string | undefined) {
    this.board = team
    await this.refreshBoard()
  }

  /** List the board on screen again; `task` events keep it current in between (for the operator's teams). */
  async refreshBoard() {
    const team = this.board
    if (team === undefined || this.api === undefined) return
    const tasks = await this.guarded("Listing tasks", () => this.client.tasks.list({ team, limit: BOARD_LIMIT }))
    if (tasks !== undefined) this.addTasks(tasks)
  }

  async createTask(input: Omit<NewTask, "peer">): Promise<Task | undefined> {
    const operator = this.state.operator
    const task = await this.guarded("Creating the task", () => this.client.tasks.create({ ...input, peer: operator?.id }))
    if (task !== undefined) this.addTasks([task])
    return task
  }

  async cancelTask(id: string, reason?: string) {
    const task = await this.guarded("Cancelling the task", () => this.client.tasks.cancel(id, reason))
    if (task !== undefined) this.addTasks([task])
  }

  /** Hand the task to `peer` (a member of its team), or put it back to `open` without one. */
  async reassignTask(id: string, peer?: string) {
    const task = await this.guarded("Reassigning the task", () => this.client.tasks.reassign(id, peer))
    if (task !== undefined) this.addTasks([task])
  }

  clearNotice() {
    this.set({ notice: undefined })
  }
}
