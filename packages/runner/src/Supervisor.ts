/**
 * Supervisor: the agents of this runner. Creates them from specs (local API, definition files
 * in `<data-dir>/agents/*.json`, broker spawn orders), starts/stops/restarts them under a
 * pseudo-terminal with their restart policy, and tells listeners about status changes and
 * output lines. Everything is stopped (whole trees) when the layer's scope closes.
 */
import { Codec, Errors, RunnerFrame, type RunnerPolicy, Spawn } from "@mks/a2a"
import { AtomicFile } from "@mks/a2a/internal"
import { Context, Effect, Layer, Schema } from "effect"
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Agent, AgentDetail, AgentExists, AgentNotFound, AgentSpec, type AgentStatus, type StatusChange } from "./Agent.js"
import { AgentLog } from "./internal/agentLog.js"
import { AgentProcess } from "./internal/agentProcess.js"
import * as Preset from "./Preset.js"
import { RunnerConfig, type RunnerConfigShape } from "./RunnerConfig.js"

export interface CreateOptions {
  /** A broker spawn order: the agent gets the bus env and reports to the broker. */
  readonly spawn?: RunnerFrame.SpawnOrder | undefined
  /** Keep the definition in the data dir so it starts with the runner (default true for local agents). */
  readonly persist?: boolean | undefined
  /** Start it now (default true). */
  readonly start?: boolean | undefined
  /** The definition file it was loaded from (removed with the agent). */
  readonly definitionFile?: string | undefined
}

/** A terminal attached to an agent's pseudo-terminal. */
export interface Terminal {
  readonly backlog: string
  readonly write: (data: string) => void
  readonly resize: (cols: number, rows: number) => void
  readonly onData: (listener: (data: string) => void) => () => void
  readonly onExit: (listener: (status: AgentStatus) => void) => () => void
}

export interface SupervisorService {
  readonly list: Effect.Effect<ReadonlyArray<Agent>>
  readonly get: (id: string) => Effect.Effect<Agent, AgentNotFound>
  readonly detail: (id: string) => Effect.Effect<AgentDetail, AgentNotFound>
  readonly create: (spec: AgentSpec, options?: CreateOptions) => Effect.Effect<Agent, Errors.InvalidRequest | AgentExists>
  readonly start: (id: string) => Effect.Effect<Agent, AgentNotFound | Errors.InvalidRequest>
  /** Resolves once the whole tree is gone. */
  readonly stop: (id: string, graceMs?: number) => Effect.Effect<Agent, AgentNotFound>
  /** Resolves once the new process runs. */
  readonly restart: (id: string) => Effect.Effect<Agent, AgentNotFound | Errors.InvalidRequest>
  /** Stop it and forget it (definition, logs, spawn record). */
  readonly remove: (id: string) => Effect.Effect<Agent, AgentNotFound>
  readonly logs: (id: string, n: number) => Effect.Effect<ReadonlyArray<string>, AgentNotFound>
  readonly terminal: (id: string) => Effect.Effect<Terminal, AgentNotFound>
  /** Every status change of every agent, synchronously as it happens. */
  readonly onStatus: (listener: (change: StatusChange, agent: Agent) => void) => () => void
  readonly onLine: (id: string, listener: (line: string) => void) => Effect.Effect<() => void, AgentNotFound>
  /** Agents started for spawn orders, by spawn id. */
  readonly bySpawn: (spawnId: string) => Agent | undefined
  readonly spawnAgents: () => ReadonlyArray<Agent>
  /** Whether the agent ended and its restart policy brings it back. */
  readonly restartPending: (id: string) => boolean
  /** Persisted spawn orders, restarted when the runner starts. */
  readonly spawnOrders: () => ReadonlyArray<RunnerFrame.SpawnOrder>
  /** Forget a spawn's record (its spawn is final on the broker). */
  readonly forgetSpawn: (spawnId: string) => Effect.Effect<void>
  /**
   * Spawn agents loaded from their records at start and not started yet: the runner restarted
   * under them. They wait for the broker: the order again (`resume`) or a stop (`remove`).
   */
  readonly interrupted: () => ReadonlyArray<Agent>
  /** Start an interrupted spawn agent again under `order` (its broker URL and token); the prompt is not sent again unless the spec says so. */
  readonly resume: (order: RunnerFrame.SpawnOrder) => Effect.Effect<Agent, AgentNotFound | Errors.InvalidRequest>
}

export class Supervisor extends Context.Tag("@mks/a2a-runner/Supervisor")<Supervisor, SupervisorService>() {}

interface Entry {
  readonly process: AgentProcess
  readonly log: AgentLog
  readonly spec: AgentSpec
  /** Replaced when an interrupted spawn is resumed with a new order. */
  spawn?: RunnerFrame.SpawnOrder | undefined
  /** Its file in `<data-dir>/agents`, if it has one. */
  readonly definitionFile?: string | undefined
}

const encodeSpec = Schema.encodeSync(AgentSpec)
const decodeSpec = Codec.decodeUnknown(AgentSpec)
const encodeOrder = Schema.encodeSync(RunnerFrame.SpawnOrder)
const decodeOrder = Codec.decodeUnknown(RunnerFrame.SpawnOrder)

/** 0600: specs and spawn orders carry prompts and environment. */
const writeAtomic = (path: string, text: string) => AtomicFile.writeSync(path, text, { mode: 0o600, syncDir: false })

/** An agent spec from a spawn order's spec. */
export const specOfOrder = (order: RunnerFrame.SpawnOrder, policy?: RunnerPolicy.RunnerPolicy): AgentSpec => {
  const s = order.spec
  return {
    name: s.name ?? order.id,
    preset: Spawn.presetOf(s),
    command: s.command,
    args: s.args,
    // A policy with working directories starts a spawn without one in the first of them.
    cwd: s.cwd ?? policy?.cwds?.[0],
    env: s.env,
    prompt: s.prompt,
    provider: s.provider,
    model: s.model,
    teams: s.teams
  }
}

export const make = (config: RunnerConfigShape) =>
  Effect.gen(function* () {
    const agents = new Map<string, Entry>()
    const statusListeners = new Set<(change: StatusChange, agent: Agent) => void>()
    const agentsDir = join(config.dataDir, "agents")
    const spawnsDir = join(config.dataDir, "spawns")
    const logsDir = join(config.dataDir, "logs")
    for (const dir of [agentsDir, spawnsDir, logsDir]) mkdirSync(dir, { recursive: true, mode: 0o700 })

    const view = (entry: Entry): Agent => {
      const p = entry.process
      return {
        id: p.id,
        name: p.init.name,
        status: p.status,
        pid: p.pid,
        startedAt: p.startedAt,
        restarts: p.restarts,
        exitCode: p.exitCode,
        spawnId: entry.spawn?.id,
        preset: p.init.preset,
        command: p.command,
        args: [...p.args],
        cwd: p.cwd,
        restart: p.init.restart
      }
    }

    const find = (id: string) =>
      Effect.suspend(() => {
        const entry = agents.get(id)
        return entry === undefined ? Effect.fail(new AgentNotFound({ message: `no agent ${id}`, agent: id })) : Effect.succeed(entry)
      })

    const startEntry = (entry: Entry) =>
      Effect.try({
        try: () => entry.process.start(),
        catch: (e) => new Errors.InvalidRequest({ message: `could not start ${entry.process.id}: ${(e as Error).message}` })
      })

    const register = (id: string, spec: AgentSpec, spawn: RunnerFrame.SpawnOrder | undefined, definitionFile: string | undefined): Entry => {
      const log = new AgentLog({ dir: logsDir, id, ...config.log })
      const preset = Preset.presetOf(spec)
      let entry: Entry
      const ctx = () => (entry.spawn === undefined ? undefined : { spawnId: entry.spawn.id, brokerUrl: entry.spawn.brokerUrl, token: entry.spawn.token, task: entry.spawn.spec.task })
      // A spawn's prompt goes to its first start only (a marker file records it), unless the spec says otherwise.
      const launch = () => {
        const order = entry.spawn
        const marker = order === undefined ? undefined : join(spawnsDir, `${order.id}.prompted`)
        const again = marker !== undefined && existsSync(marker) && order?.spec.resendPrompt !== true
        const launched = Preset.launchOf(id, spec.name, again ? { ...spec, prompt: undefined } : spec, config, ctx())
        if (marker !== undefined && !again && spec.prompt !== undefined) writeFileSync(marker, "", { mode: 0o600 })
        return launched
      }
      const process = new AgentProcess({
        id,
        name: spec.name,
        spec,
        preset,
        restart: spec.restart ?? "on-failure",
        spawnId: spawn?.id,
        log,
        backoff: config.backoff,
        launch,
        onStatus: (_p, from, to) => {
          const change: StatusChange = { agent_id: id, old_status: from, new_status: to, at: new Date().toISOString() }
          const agent = view(entry)
          for (const listener of statusListeners) listener(change, agent)
        }
      })
      entry = { process, log, spec, spawn, definitionFile }
      agents.set(id, entry)
      return entry
    }

    const create: SupervisorService["create"] = (spec, options = {}) =>
      Effect.gen(function* () {
        const spawn = options.spawn
        const id = spawn?.id ?? spec.name
        if (agents.has(id)) return yield* new AgentExists({ message: `an agent named ${id} exists on this runner`, name: id })
        yield* Preset.validate(spec, config)
        const persist = spawn === undefined && (options.persist ?? true)
        const entry = register(id, spec, spawn, persist ? `${id}.json` : options.definitionFile)
        if (spawn !== undefined) writeAtomic(join(spawnsDir, `${spawn.id}.json`), JSON.stringify(encodeOrder(spawn)))
        else if (persist) writeAtomic(join(agentsDir, `${id}.json`), JSON.stringify(encodeSpec(spec), null, 2))
        if (options.start ?? true) yield* startEntry(entry)
        return view(entry)
      })

    const stopEntry = (entry: Entry, graceMs = config.graceMs) => Effect.promise(() => entry.process.stop(graceMs))

    const service: SupervisorService = {
      list: Effect.sync(() => [...agents.values()].map(view)),
      get: (id) => Effect.map(find(id), view),
      detail: (id) => Effect.map(find(id), (entry) => ({ agent: view(entry), config: entry.spec, logs: entry.log.tail(200) })),
      create,
      start: (id) =>
        Effect.gen(function* () {
          const entry = yield* find(id)
          yield* startEntry(entry)
          return view(entry)
        }),
      stop: (id, graceMs) =>
        Effect.gen(function* () {
          const entry = yield* find(id)
          yield* stopEntry(entry, graceMs)
          return view(entry)
        }),
      restart: (id) =>
        Effect.gen(function* () {
          const entry = yield* find(id)
          yield* Effect.tryPromise({
            try: () => entry.process.restart(config.graceMs),
            catch: (e) => new Errors.InvalidRequest({ message: `could not restart ${id}: ${(e as Error).message}` })
          })
          return view(entry)
        }),
      remove: (id) =>
        Effect.gen(function* () {
          const entry = yield* find(id)
          entry.process.removed = true
          yield* stopEntry(entry)
          agents.delete(id)
          entry.log.remove()
          if (entry.definitionFile !== undefined) rmSync(join(agentsDir, entry.definitionFile), { force: true })
          if (entry.spawn !== undefined) rmSync(join(spawnsDir, `${entry.spawn.id}.json`), { force: true })
          rmSync(join(config.dataDir, "claude", id), { recursive: true, force: true })
          return view(entry)
        }),
      logs: (id, n) => Effect.map(find(id), (entry) => entry.log.tail(n)),
      terminal: (id) =>
        Effect.map(find(id), (entry): Terminal => ({
          backlog: entry.log.rawBacklog(),
          write: (data) => entry.process.write(data),
          resize: (cols, rows) => entry.process.resize(cols, rows),
          onData: (listener) => entry.process.onData(listener),
          onExit: (listener) => {
            const wrapped = (change: StatusChange) => {
              if (change.agent_id === id && ["stopped", "exited", "crashed"].includes(change.new_status)) listener(change.new_status)
            }
            statusListeners.add(wrapped)
            return () => statusListeners.delete(wrapped)
          }
        })),
      onStatus: (listener) => {
        statusListeners.add(listener)
        return () => statusListeners.delete(listener)
      },
      onLine: (id, listener) => Effect.map(find(id), (entry) => entry.log.onLine(listener)),
      bySpawn: (spawnId) => {
        const entry = agents.get(spawnId)
        return entry?.spawn !== undefined ? view(entry) : undefined
      },
      spawnAgents: () => [...agents.values()].filter((e) => e.spawn !== undefined).map(view),
      restartPending: (id) => agents.get(id)?.process.restartPending ?? false,
      spawnOrders: () => [...agents.values()].flatMap((e) => (e.spawn !== undefined ? [e.spawn] : [])),
      forgetSpawn: (spawnId) =>
        Effect.sync(() => {
          interrupted.delete(spawnId)
          rmSync(join(spawnsDir, `${spawnId}.json`), { force: true })
          rmSync(join(spawnsDir, `${spawnId}.prompted`), { force: true })
        }),
      interrupted: () => [...interrupted].flatMap((id) => (agents.has(id) ? [view(agents.get(id)!)] : [])),
      resume: (order) =>
        Effect.gen(function* () {
          const entry = yield* find(order.id)
          entry.spawn = order
          writeAtomic(join(spawnsDir, `${order.id}.json`), JSON.stringify(encodeOrder(order)))
          interrupted.delete(order.id)
          yield* startEntry(entry)
          return view(entry)
        })
    }

    // Definitions and unfinished spawn orders start with the runner.
    const load = <A>(dir: string, decode: (u: unknown) => Effect.Effect<A, Errors.InvalidRequest>) =>
      Effect.forEach(
        readdirSync(dir).filter((f) => f.endsWith(".json")),
        (file) =>
          Effect.try(() => JSON.parse(readFileSync(join(dir, file), "utf8")) as unknown).pipe(
            Effect.mapError((e) => new Errors.InvalidRequest({ message: String(e) })),
            Effect.flatMap(decode),
            Effect.map((value) => [file, value] as const),
            Effect.tapError((e) => Effect.logWarning(`skipping ${join(dir, file)}: ${e.message}`)),
            Effect.option
          )
      ).pipe(Effect.map((all) => all.flatMap((o) => (o._tag === "Some" ? [o.value] : []))))

    for (const [file, spec] of yield* load(agentsDir, decodeSpec)) {
      yield* create(spec, { persist: false, definitionFile: file }).pipe(
        Effect.tapError((e) => Effect.logWarning(`agent ${file}: ${e.message}`)),
        Effect.ignore
      )
    }
    // Spawn records are not started here: the broker says whether each is still wanted (it
    // re-sends the order) or not (a stop), when the link opens.
    const interrupted = new Set<string>()
    for (const [, order] of yield* load(spawnsDir, decodeOrder)) {
      yield* create(specOfOrder(order, config.policy), { spawn: order, start: false }).pipe(
        Effect.tap(() => Effect.sync(() => interrupted.add(order.id))),
        Effect.tapError((e) => Effect.logWarning(`spawn ${order.id}: ${e.message}`)),
        Effect.ignore
      )
    }

    yield* Effect.addFinalizer(() =>
      Effect.promise(() => Promise.all([...agents.values()].map((e) => e.process.stop(config.graceMs)))).pipe(
        Effect.zipRight(Effect.sync(() => agents.forEach((e) => e.log.close())))
      )
    )
    return service
  })

export const layer: Layer.Layer<Supervisor, never, RunnerConfig> = Layer.scoped(Supervisor, Effect.flatMap(RunnerConfig, make))

