/**
 * Synchronous bookkeeping tied to a scope, without `Effect.acquireRelease`'s per-release cost.
 *
 * `acquireRelease` (and `Effect.addFinalizer`) run the release with the acquiring fiber's
 * FiberRefs restored: two diffs and two patches of every FiberRef, the whole service context
 * included, each time a scope closes. A release that only updates a map needs none of that, and
 * at fleet scale it added up: closing 10,000 peer channels spent ~12 % of its CPU diffing
 * contexts (measured with `bench/resilience.mjs`). These finalizers go straight onto the scope.
 */
import { Effect, Scope } from "effect"

/** Run `acquire` now and `release` when the current scope closes (uninterruptible: acquired means released). */
export const resource = (acquire: () => void, release: () => void): Effect.Effect<void, never, Scope.Scope> =>
  Effect.uninterruptible(
    Effect.scopeWith((scope) => {
      acquire()
      return Scope.addFinalizer(scope, Effect.sync(release))
    })
  )
