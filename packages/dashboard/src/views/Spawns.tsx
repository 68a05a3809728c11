import { useState } from "preact/hooks"
import { ago, parseLabels, splitArgs } from "../format.js"
import { useSession, useSessionState, useTick } from "../hooks.js"
import { href, onLinkClick } from "../router.js"
import { isFinal, type SpawnSpec } from "../wire.js"

interface Form {
  runner: string
  labels: string
  preset: "command" | "claude"
  provider: string
  model: string
  name: string
  team: string
  prompt: string
  command: string
  args: string
  cwd: string
}

const EMPTY: Form = { runner: "", labels: "", preset: "claude", provider: "", model: "", name: "", team: "", prompt: "", command: "", args: "", cwd: "" }

/** The form as a spawn spec; throws with a message for people when it is not one. */
export const specOf = (form: Form): SpawnSpec => {
  const opt = (s: string) => (s.trim().length > 0 ? s.trim() : undefined)
  const teams = form.team
    .split(/[,\s]+/)
    .map((t) => t.trim())
    .filter((t) => t.length > 0)
  if (form.preset === "command" && opt(form.command) === undefined) throw new Error("The command preset needs a command.")
  const spec: Record<string, unknown> = {
    runner: opt(form.runner),
    labels: parseLabels(form.labels),
    preset: form.preset,
    provider: opt(form.provider),
    model: opt(form.model),
    name: opt(form.name),
    teams: teams.length > 0 ? teams : undefined,
    prompt: opt(form.prompt),
    cwd: opt(form.cwd)
  }
  if (form.preset === "command") {
    spec["command"] = form.command.trim()
    const args = splitArgs(form.args)
    if (args.length > 0) spec["args"] = args
  }
  return Object.fromEntries(Object.entries(spec).filter(([, v]) => v !== undefined)) as SpawnSpec
}

export function SpawnsView() {
  const session = useSession()
  const state = useSessionState()
  useTick(5_000)
  const [form, setForm] = useState<Form>(EMPTY)
  const [error, setError] = useState<string | undefined>(undefined)
  const [busy, setBusy] = useState(false)
  const field = (key: keyof Form) => ({
    name: key,
    value: form[key],
    onInput: (e: Event) => setForm({ ...form, [key]: (e.target as HTMLInputElement).value })
  })
  const submit = async (e: Event) => {
    e.preventDefault()
    setError(undefined)
    let spec: SpawnSpec
    try {
      spec = specOf(form)
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err))
      return
    }
    setBusy(true)
    const spawn = await session.createSpawn(spec)
    setBusy(false)
    if (spawn !== undefined) setForm({ ...EMPTY, preset: form.preset, runner: form.runner })
  }
  const spawns = [...state.spawns.values()].sort((a, b) => (a.createdAt < b.createdAt ? 1 : -1))
  return (
    <section aria-labelledby="spawns-title">
      <div class="view-head">
        <h2 id="spawns-title" tabIndex={-1}>
          Spawns
        </h2>
        <span class="muted">{spawns.filter((s) => !isFinal(s.status)).length} active</span>
      </div>
      <form class="spawn-form card" onSubmit={submit} aria-label="Spawn an agent">
        <label>
          Runner
          <select {...field("runner")} onChange={(e) => setForm({ ...form, runner: (e.target as HTMLSelectElement).value })}>
            <option value="">Any runner (by labels and free capacity)</option>
            {state.runners.map((r) => (
              <option key={r.id} value={r.id} disabled={r.status !== "online"}>
                {r.id} — {r.host} ({r.capacity - r.active} free{r.status !== "online" ? `, ${r.status}` : ""})
              </option>
            ))}
          </select>
        </label>
        <label>
          Labels <span class="muted">key=value, …</span>
          <input {...field("labels")} placeholder="zone=eu, gpu=yes" />
        </label>
        <fieldset class="preset">
          <legend>Preset</legend>
          <label class="inline">
            <input type="radio" name="preset" value="claude" checked={form.preset === "claude"} onChange={() => setForm({ ...form, preset: "claude" })} /> claude
          </label>
          <label class="inline">
            <input type="radio" name="preset" value="command" checked={form.preset === "command"} onChange={() => setForm({ ...form, preset: "command" })} /> command
          </label>
        </fieldset>
        <label>
          Name
          <input {...field("name")} pattern="[A-Za-z0-9][A-Za-z0-9_.@\-]{0,63}" placeholder="reviewer-1" />
        </label>
        <label>
          Team
          <input {...field("team")} placeholder="crew (several: comma separated)" list="team-names" />
          <datalist id="team-names">
            {state.teams.map((t) => (
              <option key={t.name} value={t.name} />
            ))}
          </datalist>
        </label>
        <label>
          Provider
          <input {...field("provider")} placeholder="glm" />
        </label>
        <label>
          Model
          <input {...field("model")} placeholder="glm-4.5-air" />
        </label>
        {form.preset === "command" && (
          <>
            <label>
              Command
              <input {...field("command")} required placeholder="node" />
            </label>
            <label>
              Arguments <span class="muted">quote with "…"</span>
              <input {...field("args")} placeholder='agent.js --flag "two words"' />
            </label>
          </>
        )}
        <label>
          Working directory
          <input {...field("cwd")} placeholder="(the runner's default)" />
        </label>
        <label class="wide">
          Prompt
          <textarea {...field("prompt")} rows={3} />
        </label>
        {error !== undefined && (
          <p class="error wide" role="alert">
            {error}
          </p>
        )}
        <div class="wide actions">
          <button type="submit" class="primary" disabled={busy}>
            Spawn
          </button>
        </div>
      </form>
      {spawns.length === 0 ? (
        <p class="empty">No spawns yet.</p>
      ) : (
        <div class="table-wrap">
          <table class="list" data-testid="spawns">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Status</th>
                <th scope="col">Runner</th>
                <th scope="col">Preset</th>
                <th scope="col">Peer</th>
                <th scope="col">Detail</th>
                <th scope="col">Updated</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {spawns.map((s) => {
                const peer = s.peerId === undefined ? undefined : state.peers.get(s.peerId)
                return (
                  <tr key={s.id} data-spawn={s.id} data-name={s.spec.name ?? ""} data-status={s.status}>
                    <td data-label="Name">
                      {s.spec.name ?? <span class="muted">{s.id}</span>}
                    </td>
                    <td data-label="Status">
                      <span class={`badge ${s.status}`} data-testid="spawn-status">
                        {s.status}
                      </span>
                    </td>
                    <td data-label="Runner">{s.runnerId}</td>
                    <td data-label="Preset">{s.spec.preset ?? (s.spec.command !== undefined ? "command" : "claude")}</td>
                    <td data-label="Peer">
                      {s.peerId !== undefined ? (
                        <a href={href(`agents/${encodeURIComponent(s.peerId)}`)} onClick={onLinkClick(`agents/${encodeURIComponent(s.peerId)}`)}>
                          {peer?.name ?? s.peerId}
                        </a>
                      ) : (
                        "—"
                      )}
                    </td>
                    <td data-label="Detail" class="summary">
                      {[s.pid !== undefined ? `pid ${s.pid}` : "", s.exitCode !== undefined ? `exit ${s.exitCode}` : "", s.error ?? ""].filter((x) => x).join(" · ") || "—"}
                    </td>
                    <td data-label="Updated">{ago(s.updatedAt)}</td>
                    <td>
                      {!isFinal(s.status) && (
                        <button type="button" class="danger" onClick={() => void session.stopSpawn(s.id)} aria-label={`Stop ${s.spec.name ?? s.id}`}>
                          Stop
                        </button>
                      )}
                    </td>
                  </tr>
                )
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  )
}
