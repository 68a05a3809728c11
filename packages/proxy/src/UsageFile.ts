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

/** The file: core's `UsageMeter.MeterData` (open windows, trailing minute per second) with a version and a time. */
export const FileFormat = Schema.Struct({
  version: Schema.Literal(1),
  savedAt: Schema.String,
  keys: UsageMeter.MeterData
})

const decodeFile = Schema.decodeUnknownEither(Schema.parseJson(FileFormat))

export interface Options {
  readonly path: string
  readonly flushIntervalMs?: number
}

const unavailable = (message: string) => new Errors.ServiceUnavailable({ message })

const reserveNow = (
  state: UsageMeter.MemoryMeter,
  refuse: () => string | undefined,
  key: Ids.KeyId,
  limits: VirtualKey.KeyLimits,
  tokens: number,
  now: number
): UsageMeter.Reservation | Errors.RateLimited | Errors.ServiceUnavailable => {
  const problem = refuse()
  return problem !== undefined ? unavailable(problem) : state.unsafe.reserve(key, limits, tokens, now)
}

/**
 * The service over a state. `refuse` stops admissions (fail closed); `unreadable` also stops
 * snapshots, since a store that was never read has nothing true to report.
 */
const serviceOf = (
  state: UsageMeter.MemoryMeter,
  refuse: () => string | undefined,
  unreadable: () => string | undefined
): UsageMeter.UsageMeterService => ({
  reserve: (key, limits, tokens) =>
    Effect.flatMap(Clock.currentTimeMillis, (now): Effect.Effect<UsageMeter.Reservation, Errors.RateLimited | Errors.ServiceUnavailable> => {
      const result = reserveNow(state, refuse, key, limits, tokens, now)
      return result instanceof Errors.RateLimited || result instanceof Errors.ServiceUnavailable ? Effect.fail(result) : Effect.succeed(result)
    }),
  settle: state.settle,
  release: state.release,
  snapshot: (key) =>
    Effect.suspend(() => {
      const problem = unreadable()
      return problem !== undefined ? Effect.fail(unavailable(problem)) : state.snapshot(key)
    })
})

/** The meter and its state, built from a file; the flush loop is forked into the layer's scope. */
export const make = (options: Options) =>
  Effect.gen(function* () {
    const text = yield* readIfExists(options.path)
    let initial: UsageMeter.MeterData | undefined
    let corrupt: string | undefined
    if (text !== undefined) {
      const decoded = decodeFile(text)
      if (decoded._tag === "Left") {
        corrupt = `usage store ${options.path} is corrupt (${ParseResult.TreeFormatter.formatErrorSync(decoded.left).split("\n")[0]}); refusing every request until it is repaired or moved away`
        yield* Effect.logError(corrupt)
      } else {
        initial = decoded.right.keys
      }
    }
    // Bumped on every change of the counts; the flush writes when it moved since the last write.
    let version = 0
    const state = yield* UsageMeter.makeMemory({ ...(initial === undefined ? {} : { initial }), onChange: () => void version++ })
    let writeProblem: string | undefined
    let saved = version
    const problem = () => corrupt ?? writeProblem

    const flush: Effect.Effect<void, FileError> = Effect.suspend(() => {
      if (corrupt !== undefined || version === saved) return Effect.void
      const writing = version
      return Effect.flatMap(Clock.currentTimeMillis, (now) =>
        writeAtomic(options.path, JSON.stringify({ version: 1, savedAt: new Date(now).toISOString(), keys: state.export(now) }))
      ).pipe(
        Effect.tap(() =>
          Effect.suspend(() => {
            saved = writing
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
      settle: state.unsafe.settle,
      release: state.unsafe.release,
      snapshot: state.unsafe.snapshot
    }
    return { meter, file: { problem, flush, direct } satisfies UsageFileService }
  })

/** `UsageMeter` backed by `options.path`; an unreadable file (not a missing one) fails the layer. */
export const layer = (options: Options): Layer.Layer<UsageMeter.UsageMeter | UsageFile, FileError> =>
  Layer.scopedContext(
    Effect.map(make(options), ({ file, meter }) => Context.make(UsageMeter.UsageMeter, meter).pipe(Context.add(UsageFile, file)))
  )

/** The same meter without a file (counts are lost on restart): core's `UsageMeter.layerMemory`. */
export const layerMemory: Layer.Layer<UsageMeter.UsageMeter> = UsageMeter.layerMemory
