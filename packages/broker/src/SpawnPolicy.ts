/**
 * The runners' policies, as the broker knows them from their `hello` (`RunnerPolicy.ts`): an
 * order that its pinned runner, or every online runner that could take it, would refuse is
 * refused at once with the runner's typed reason (`SpawnRefused`), so the requester sees it
 * in the answer to its request rather than later as a failed spawn. The runner checks again
 * when the order arrives; that check is the one that counts.
 */
import { Errors, RunnerPolicy, Spawn, SpawnPlane } from "@mks/a2a"
import { Effect, Either } from "effect"

export const precheck = (
  spawns: SpawnPlane.SpawnPlaneService,
  tenant: string,
  spec: Spawn.SpawnSpec
): Effect.Effect<void, Errors.SpawnRefused | Errors.ServiceUnavailable> =>
  Effect.gen(function* () {
    const preset = Spawn.presetOf(spec)
    const runners = (yield* spawns.runners(tenant)).filter((r) =>
      spec.runner !== undefined ? r.id === spec.runner : r.status === "online" && Spawn.labelsMatch(spec.labels, r.labels) && r.presets.includes(preset)
    )
    if (runners.length === 0 || runners.every((r) => r.policy === undefined)) return
    // Agents the owner runs on each runner, only when some policy limits them.
    const counted = runners.some((r) => r.policy?.maxPerPrincipal !== undefined) && spec.owner !== undefined
    const active = new Map<string, number>()
    if (counted) {
      for (const s of yield* spawns.list(tenant)) {
        if (s.spec.owner === spec.owner && Spawn.isActive(s.status)) active.set(s.runnerId, (active.get(s.runnerId) ?? 0) + 1)
      }
    }
    let first: Errors.SpawnRefused | undefined
    for (const r of runners) {
      const verdict = RunnerPolicy.check(r.id, r.policy, spec, active.get(r.id) ?? 0)
      if (Either.isRight(verdict)) return
      first ??= verdict.left
    }
    if (first !== undefined) return yield* Effect.fail(first)
  })
