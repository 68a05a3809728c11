/**
 * A file-backed `UsageMeter` (core's tag): counting happens in memory, a background fiber
 * writes the state atomically (0600) every `flushIntervalMs` when it changed, the last write
 * happens when the layer closes (clean shutdown), and the file is read back at start.
 *
 * Fail closed: a usage file that exists but does not decode, or writes that keep failing,
 * make every `reserve` a `ServiceUnavailable` (503) — the proxy never serves unmetered — and
 * a corrupt file is never overwritten.
 */
import { Errors, UsageMeter } from "@mks/a2a"
import type { Ids, Usage, VirtualKey } from "@mks/a2a"
import { Clock, Context, Effect, Layer, ParseResult, Schedule, Schema } from "effect"
import { FileError, readIfExists, writeAtomic } from "./internal/atomicFile.js"
import { MeterState } from "./internal/meter.js"

export interface UsageFileService {
  /** Why the meter refuses to admit requests, if it does. */
  readonly problem: () => string | undefined
  /** Write the current state now (also done periodically and on close). */
  readonly flush: Effect.Effect<void, FileError>
  /**
   * The meter's steps as plain calls (each one synchronous, hence atomic): the data plane uses
   * them on every request to spare a fiber per call (only when `meter` is the `UsageMeter` it was given).
   */
  readonly direct?: DirectMeter
}

export interface DirectMeter {
  readonly meter: UsageMeter.UsageMeterService
  readonly reserve: (
    key: Ids.KeyId,
    limits: VirtualKey.KeyLimits,
    tokens: number,
    now: number
  ) => UsageMeter.Reservation | Errors.RateLimited | Errors.ServiceUnavailable
  readonly settle: (reservation: UsageMeter.Reservation, model: string, usage: Usage.Usage) => void
  readonly release: (reservation: UsageMeter.Reservation) => void
  readonly snapshot: (key: Ids.KeyId, now: number) => UsageMeter.UsageSnapshot
}

export class UsageFile extends Context.Tag("@mks/a2a-proxy/UsageFile")<UsageFile, UsageFileService>() {}

const Counts = Schema.Struct({
  requests: Schema.NonNegativeInt,
  inputTokens: Schema.NonNegativeInt,
  outputTokens: Schema.NonNegativeInt,
  cacheCreationInputTokens: Schema.NonNegativeInt,
  cacheReadInputTokens: Schema.NonNegativeInt
})

export const FileFormat = Schema.Struct({
  version: Schema.Literal(1),
  savedAt: Schema.String,
  keys: Schema.Record({
    key: Schema.String,
    value: Schema.Struct({
      window: Schema.optional(Schema.Struct({ ...Counts.fields, start: Schema.Number, byModel: Schema.Record({ key: Schema.String, value: Counts }) })),
      minute: Schema.Array(Schema.Tuple(Schema.Number, Schema.NonNegativeInt))
    })
  })
})

const decodeFile = Schema.decodeUnknownEither(Schema.parseJson(FileFormat))

export interface Options {
  readonly path: string
  readonly flushIntervalMs?: number
}

const unavailable = (message: string) => new Errors.ServiceUnavailable({ message })

const reserveNow = (
  state: MeterState,
  refuse: () => string | undefined,
  key: Ids.KeyId,
  limits: VirtualKey.KeyLimits,
  tokens: number,
  now: number
): UsageMeter.Reservation | Errors.RateLimited | Errors.ServiceUnavailable => {
  const problem = refuse()
  return problem !== undefined ? unavailable(problem) : state.reserve(key, limits, tokens, now)
}

/**
 * The service over a state. `refuse` stops admissions (fail closed); `unreadable` also stops
 * snapshots, since a store that was never read has nothing true to report.
 */
const serviceOf = (
  state: MeterState,
  refuse: () => string | undefined,
  unreadable: () => string | undefined
): UsageMeter.UsageMeterService => ({
  reserve: (key, limits, tokens) =>
    Effect.flatMap(Clock.currentTimeMillis, (now): Effect.Effect<UsageMeter.Reservation, Errors.RateLimited | Errors.ServiceUnavailable> => {
      const result = reserveNow(state, refuse, key, limits, tokens, now)
      return result instanceof Errors.RateLimited || result instanceof Errors.ServiceUnavailable ? Effect.fail(result) : Effect.succeed(result)
    }),
  settle: (reservation, model, usage) => Effect.sync(() => state.settle(reservation, model, usage)),
  release: (reservation) => Effect.sync(() => state.release(reservation)),
  snapshot: (key) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const problem = unreadable()
      return problem !== undefined ? Effect.fail(unavailable(problem)) : Effect.succeed(state.snapshot(key, now))
    })
})

/** The meter and its state, built from a file; the flush loop is forked into the layer's scope. */
export const make = (options: Options) =>
  Effect.gen(function* () {
    const text = yield* readIfExists(options.path)
    let state = new MeterState()
    let corrupt: string | undefined
    if (text !== undefined) {
      const decoded = decodeFile(text)
      if (decoded._tag === "Left") {
        corrupt = `usage store ${options.path} is corrupt (${ParseResult.TreeFormatter.formatErrorSync(decoded.left).split("\n")[0]}); refusing every request until it is repaired or moved away`
        yield* Effect.logError(corrupt)
      } else {
        state = MeterState.import(decoded.right.keys)
      }
    }
    let writeProblem: string | undefined
    let saved = state.version
    const problem = () => corrupt ?? writeProblem

    const flush: Effect.Effect<void, FileError> = Effect.suspend(() => {
      if (corrupt !== undefined || state.version === saved) return Effect.void
      const version = state.version
      return Effect.flatMap(Clock.currentTimeMillis, (now) =>
        writeAtomic(options.path, JSON.stringify({ version: 1, savedAt: new Date(now).toISOString(), keys: state.export(now) }))
      ).pipe(
        Effect.tap(() =>
          Effect.suspend(() => {
            saved = version
            if (writeProblem === undefined) return Effect.void
            writeProblem = undefined
            return Effect.logInfo(`usage store ${options.path} is writable again`)
          })
        ),
        Effect.tapError((error) =>
          Effect.suspend(() => {
            const first = writeProblem === undefined
            writeProblem = `usage store unavailable: ${error.message}`
            return first ? Effect.logError(writeProblem) : Effect.void
          })
        )
      )
    })

    yield* flush.pipe(
      Effect.ignore,
      Effect.repeat(Schedule.spaced(options.flushIntervalMs ?? 1_000)),
      Effect.interruptible,
      Effect.forkScoped
    )
    // Clean shutdown: what was counted since the last tick reaches the file.
    yield* Effect.addFinalizer(() => Effect.ignore(flush))

    const meter = serviceOf(state, problem, () => corrupt)
    const direct: DirectMeter = {
      meter,
      reserve: (key, limits, tokens, now) => reserveNow(state, problem, key, limits, tokens, now),
      settle: (reservation, model, usage) => state.settle(reservation, model, usage),
      release: (reservation) => state.release(reservation),
      snapshot: (key, now) => state.snapshot(key, now)
    }
    return { meter, file: { problem, flush, direct } satisfies UsageFileService }
  })

/** `UsageMeter` backed by `options.path`; an unreadable file (not a missing one) fails the layer. */
export const layer = (options: Options): Layer.Layer<UsageMeter.UsageMeter | UsageFile, FileError> =>
  Layer.scopedContext(
    Effect.map(make(options), ({ file, meter }) => Context.make(UsageMeter.UsageMeter, meter).pipe(Context.add(UsageFile, file)))
  )

/** The same meter without a file (counts are lost on restart). */
export const layerMemory: Layer.Layer<UsageMeter.UsageMeter> = Layer.sync(UsageMeter.UsageMeter, () =>
  serviceOf(new MeterState(), () => undefined, () => undefined)
)
