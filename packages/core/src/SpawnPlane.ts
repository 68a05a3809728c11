/**
 * SpawnPlane: the runner registry and spawn orders. Runners attach their control link for a
 * scope; orders are queued for the chosen runner and streamed to its link; status reports
 * move spawns through the status machine of `Spawn.ts`, rejecting illegal moves.
 */
import { Context, Effect, Layer, Scope, Stream } from "effect"
import { IllegalTransition, NoRunnerAvailable, RunnerNotFound, SpawnNotFound, ServiceUnavailable } from "./Errors.js"
import * as internal from "./internal/spawnPlaneMemory.js"
import type { PeerId, RunnerId, SpawnId } from "./Ids.js"
import type { Runner, RunnerInfo } from "./Runner.js"
import type { RunnerAgent, RunnerDownFrame, SpawnOrder } from "./RunnerFrame.js"
import type { Spawn, SpawnSpec, SpawnStatus } from "./Spawn.js"

export interface SpawnChange {
  readonly tenant: string
  readonly spawn: Spawn
  readonly previous: SpawnStatus | undefined
}

export interface RunnerLink {
  /** Orders for this runner: queued ones first, then live ones, until the scope closes. */
  readonly orders: Stream.Stream<RunnerDownFrame>
  /** Spawns whose status was corrected from the runner's `agents` list. */
  readonly reconciled: ReadonlyArray<Spawn>
}

export interface CreateOptions {
  readonly requestedBy?: PeerId | undefined
  /** Mints the order's broker URL and spawn-scoped peer token once the id is known (a failure fails the spawn and the create). */
  readonly issue: (spawnId: SpawnId) => Effect.Effect<{ readonly brokerUrl: string; readonly token: string }, ServiceUnavailable>
}

export interface StatusPatch {
  readonly pid?: number | undefined
  readonly exitCode?: number | undefined
  readonly error?: string | undefined
  readonly peerId?: PeerId | undefined
}

export interface SpawnPlaneService {
  /**
   * Attach a runner's control link for the scope (status `online`). Its `agents` reconcile
   * spawns it runs: `lost` ones come back, ones it no longer runs become `exited`/`lost`
   * accordingly. Closing the scope marks it `offline` (its spawns are left alone until it is stale).
   */
  readonly attach: (tenant: string, info: RunnerInfo, agents: ReadonlyArray<RunnerAgent>) => Effect.Effect<RunnerLink, ServiceUnavailable, Scope.Scope>
  readonly heartbeat: (tenant: string, runner: RunnerId) => Effect.Effect<void, RunnerNotFound | ServiceUnavailable>
  readonly runners: (tenant: string) => Effect.Effect<ReadonlyArray<Runner>, ServiceUnavailable>
  /**
   * Create an order. A pinned `spec.runner` must be known (`RunnerNotFound`); if it is away the
   * order waits `pending` for it. Otherwise the online runner whose labels match and that has
   * most free capacity takes it (`NoRunnerAvailable` if none). The order is `dispatched` once
   * it is on the runner's link.
   */
  readonly create: (tenant: string, spec: SpawnSpec, options: CreateOptions) => Effect.Effect<Spawn, RunnerNotFound | NoRunnerAvailable | ServiceUnavailable>
  readonly get: (tenant: string, id: SpawnId) => Effect.Effect<Spawn, SpawnNotFound | ServiceUnavailable>
  /** Spawns of the tenant, newest first. */
  readonly list: (tenant: string) => Effect.Effect<ReadonlyArray<Spawn>, ServiceUnavailable>
  /** Move a spawn to `status` (same status: no change, no error). */
  readonly transition: (tenant: string, id: SpawnId, status: SpawnStatus, patch?: StatusPatch) => Effect.Effect<Spawn, SpawnNotFound | IllegalTransition | ServiceUnavailable>
  /** Ask the runner to stop it (`stopping`); a still-pending order is withdrawn (`exited`). */
  readonly stop: (tenant: string, id: SpawnId, graceMs?: number) => Effect.Effect<Spawn, SpawnNotFound | IllegalTransition | ServiceUnavailable>
  /**
   * GC at `now` (epoch millis): runners silent since before `now - staleAfter` become `stale`
   * (or stay `offline`) and their active spawns `lost`; orders pending since before
   * `now - pendingTimeout` fail. Returns the changed spawns.
   */
  readonly expire: (now: number) => Effect.Effect<ReadonlyArray<Spawn>, ServiceUnavailable>
  /** Every status change of every tenant, for the scope's lifetime. */
  readonly changes: Effect.Effect<Stream.Stream<SpawnChange>, never, Scope.Scope>
}

export class SpawnPlane extends Context.Tag("@mks/a2a/SpawnPlane")<SpawnPlane, SpawnPlaneService>() {}

/** A spawn as a journal keeps it: enough to rebuild the plane after a restart. */
export interface JournaledSpawn {
  readonly tenant: string
  readonly spawn: Spawn
  readonly createdAt: number
  /** The order as sent to the runner (it carries the spawn token); dropped once the spawn is final. */
  readonly order: SpawnOrder | undefined
  readonly stopRequested: boolean
  readonly graceMs: number | undefined
}

export interface JournaledRunner {
  readonly tenant: string
  readonly info: RunnerInfo
  readonly lastSeenAt: number
}

/**
 * Where a plane writes its state as it changes, and reads it back when it starts (the SQLite
 * broker's `SqliteSpawnPlane.ts`). Writes happen inside the plane's lock, in change order;
 * loaded runners start `offline` until they attach again.
 */
export interface SpawnJournal {
  readonly load: Effect.Effect<{ readonly runners: ReadonlyArray<JournaledRunner>; readonly spawns: ReadonlyArray<JournaledSpawn> }>
  readonly saveSpawn: (record: JournaledSpawn) => Effect.Effect<void>
  readonly saveRunner: (record: JournaledRunner) => Effect.Effect<void>
}

export interface SpawnPlaneOptions {
  /** Keep the plane's state there (default: memory only, lost on restart). */
  readonly journal?: SpawnJournal | undefined
  /** A runner silent this long is stale (default 120 s). */
  readonly staleAfter?: number | undefined
  /** An order waiting this long for its runner fails (default 60 s). */
  readonly pendingTimeout?: number | undefined
}

/**
 * In-memory SpawnPlane for one process (the broker embeds it; state is lost on restart unless
 * `options.journal` keeps it).
 * Tenants are isolated; `changes` streams end when the layer's scope closes.
 */
export const layerMemory = (options?: SpawnPlaneOptions): Layer.Layer<SpawnPlane> =>
  Layer.scoped(SpawnPlane, internal.make(options))
