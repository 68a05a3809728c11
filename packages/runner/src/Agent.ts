/**
 * Agents: what the runner keeps running. The spec (`POST /agents`, a definition file in
 * `<data-dir>/agents/*.json`, or a broker spawn order), the public view, status events and
 * the runner's own wire errors. They are part of the runner's API definition in core
 * (`RunnerApi` of `@mks/a2a`), so its typed client and OpenAPI document share them; this
 * module re-exports them under their old names.
 */
import { RunnerApi } from "@mks/a2a"

export const RestartPolicy = RunnerApi.RestartPolicy
export type RestartPolicy = RunnerApi.RestartPolicy
export const AgentStatus = RunnerApi.AgentStatus
export type AgentStatus = RunnerApi.AgentStatus
export const AgentSpec = RunnerApi.AgentSpec
export type AgentSpec = RunnerApi.AgentSpec
export const AgentConfig = RunnerApi.AgentConfig
export type AgentConfig = RunnerApi.AgentConfig
export const Agent = RunnerApi.Agent
export type Agent = RunnerApi.Agent
export const AgentDetail = RunnerApi.AgentDetail
export type AgentDetail = RunnerApi.AgentDetail
export const StatusChange = RunnerApi.StatusChange
export type StatusChange = RunnerApi.StatusChange
export const LogLine = RunnerApi.LogLine
export type LogLine = RunnerApi.LogLine
export const AgentNotFound = RunnerApi.AgentNotFound
export type AgentNotFound = RunnerApi.AgentNotFound
export const AgentExists = RunnerApi.AgentExists
export type AgentExists = RunnerApi.AgentExists
export const RouteNotFound = RunnerApi.RouteNotFound
export type RouteNotFound = RunnerApi.RouteNotFound
