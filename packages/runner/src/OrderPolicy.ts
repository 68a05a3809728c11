/**
 * The runner's own check of a spawn order against its policy (core's `RunnerPolicy`): the
 * broker pre-checks with the policy the runner announced, but what runs on this machine is
 * decided here. A refusal becomes the spawn's `failed` report, its error naming the rule:
 * `runner box refuses: command "bash" is not allowed here (SpawnRefused: command)`.
 */
import { RunnerFrame, RunnerPolicy } from "@mks/a2a"
import { Either } from "effect"
import type { RunnerConfigShape } from "./RunnerConfig.js"
import type { SupervisorService } from "./Supervisor.js"

const ACTIVE = new Set(["starting", "running", "stopping"])

/** The error text of a refused order, or undefined when the policy lets it run. */
export const refusal = (config: RunnerConfigShape, sup: SupervisorService, order: RunnerFrame.SpawnOrder): string | undefined => {
  const policy = config.policy
  if (policy === undefined) return undefined
  const owner = order.spec.owner
  let active = 0
  if (policy.maxPerPrincipal !== undefined && owner !== undefined) {
    const owners = new Map(sup.spawnOrders().map((o) => [o.id as string, o.spec.owner]))
    for (const agent of sup.spawnAgents()) {
      if (agent.spawnId !== undefined && owners.get(agent.spawnId) === owner && (ACTIVE.has(agent.status) || sup.restartPending(agent.id))) active++
    }
  }
  const verdict = RunnerPolicy.check(config.id, policy, order.spec, active)
  return Either.isLeft(verdict) ? `${verdict.left.message} (SpawnRefused: ${verdict.left.reason})` : undefined
}
