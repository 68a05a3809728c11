import { useEffect, useState } from "preact/hooks"
import { ago } from "../format.js"
import { useSession, useSessionState, useTick } from "../hooks.js"
import { href, navigate, onLinkClick } from "../router.js"
import { isFinalTask, TASK_STATES, type Peer, type Task, type TaskState } from "../wire.js"

/** A board of a team the operator is not a member of gets no `task` events: it is listed this often. */
const POLL_MS = 3_000

const COLUMN_TITLES: Record<TaskState, string> = { open: "Open", claimed: "Claimed", done: "Done", failed: "Failed", cancelled: "Cancelled" }

/** Open tasks in claim order (highest priority, then oldest); the rest newest change first. */
const order = (state: TaskState) => (a: Task, b: Task) =>
  state === "open"
    ? b.priority - a.priority || (a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : a.id < b.id ? -1 : 1)
    : a.updatedAt < b.updatedAt ? 1 : a.updatedAt > b.updatedAt ? -1 : 0

interface Form {
  title: string
  body: string
  priority: string
  labels: string
}

const EMPTY: Form = { title: "", body: "", priority: "0", labels: "" }

export function TasksView({ initial }: { initial: string | undefined }) {
  const session = useSession()
  const state = useSessionState()
  useTick(5_000)
  const me = state.operator?.id
  const fallback = state.teams.find((t) => me !== undefined && t.members.includes(me))?.name ?? state.teams[0]?.name
  const team = initial ?? fallback
  const current = state.teams.find((t) => t.name === team)
  const member = current !== undefined && me !== undefined && current.members.includes(me)

  useEffect(() => {
    void session.watchBoard(team)
    return () => void session.watchBoard(undefined)
  }, [session, team])

  // Live through the channel for the operator's teams; listed every few seconds otherwise.
  useEffect(() => {
    if (team === undefined || member) return
    const id = setInterval(() => {
      if (document.visibilityState === "visible") void session.refreshBoard()
    }, POLL_MS)
    return () => clearInterval(id)
  }, [session, team, member])

  const [form, setForm] = useState<Form>(EMPTY)
  const [error, setError] = useState<string | undefined>(undefined)
  const [busy, setBusy] = useState(false)
  const field = (key: keyof Form) => ({
    name: `task-${key}`,
    value: form[key],
    onInput: (e: Event) => setForm({ ...form, [key]: (e.target as HTMLInputElement).value })
  })
  const create = async (e: Event) => {
    e.preventDefault()
    setError(undefined)
    if (team === undefined) return
    const priority = form.priority.trim() === "" ? 0 : Number(form.priority)
    if (!Number.isInteger(priority)) {
      setError("The priority is a whole number (higher first).")
      return
    }
    const labels = form.labels
      .split(/[,\s]+/)
      .map((l) => l.trim())
      .filter((l) => l.length > 0)
    setBusy(true)
    const task = await session.createTask({
      team,
      title: form.title.trim(),
      ...(form.body.trim() !== "" ? { body: form.body } : {}),
      priority,
      ...(labels.length > 0 ? { labels } : {})
    })
    setBusy(false)
    if (task !== undefined) setForm(EMPTY)
  }

  const tasks = [...state.tasks.values()].filter((t) => t.team === team)
  const name = (id: string | undefined) => (id === undefined ? undefined : (state.peers.get(id)?.name ?? id))
  const members = (current?.members ?? []).map((id) => state.peers.get(id) ?? ({ id, name: id } as Peer))

  return (
    <section aria-labelledby="tasks-title">
      <div class="view-head">
        <h2 id="tasks-title" tabIndex={-1}>
          Tasks
        </h2>
        {team !== undefined && (
          <span class="muted" data-testid="board-count">
            {tasks.filter((t) => !isFinalTask(t.state)).length} open or claimed
          </span>
        )}
        <label class="inline">
          Team
          <select name="board-team" value={team ?? ""} onChange={(e) => navigate(`tasks?team=${encodeURIComponent((e.target as HTMLSelectElement).value)}`)}>
            {state.teams.map((t) => (
              <option key={t.name} value={t.name}>
                {t.name}
              </option>
            ))}
          </select>
        </label>
      </div>
      {team === undefined ? (
        <p class="empty">
          No teams yet: a board belongs to a team.{" "}
          <a href={href("teams")} onClick={onLinkClick("teams")}>
            Create one
          </a>
          .
        </p>
      ) : current === undefined && state.teams.length > 0 ? (
        <p class="empty">There is no team “{team}”.</p>
      ) : (
        <>
          <p class="muted board-live" data-testid="board-live" data-live={member ? "events" : "polling"}>
            {member ? (
              <>Live: changes arrive on the channel as they happen.</>
            ) : (
              <>
                You are not a member of {team}, so its changes are not pushed to you: the board is listed every {POLL_MS / 1000} s.{" "}
                <button type="button" class="link" onClick={() => void session.joinTeam(team)}>
                  Join {team} for live updates
                </button>
              </>
            )}
          </p>
          <form class="filters card" onSubmit={create} aria-label={`Create a task on ${team}`}>
            <label class="grow">
              Title
              <input {...field("title")} required maxLength={500} placeholder="What needs doing" />
            </label>
            <label>
              Priority <span class="muted">higher first</span>
              <input {...field("priority")} inputMode="numeric" pattern="-?[0-9]+" />
            </label>
            <label>
              Labels <span class="muted">comma separated</span>
              <input {...field("labels")} placeholder="docs, review" />
            </label>
            <label class="wide">
              Details
              <textarea {...field("body")} rows={2} />
            </label>
            {error !== undefined && (
              <p class="error wide" role="alert">
                {error}
              </p>
            )}
            <button type="submit" class="primary" disabled={busy}>
              Create task
            </button>
          </form>
          <div class="board" data-testid="board" data-team={team}>
            {TASK_STATES.map((column) => {
              const cards = tasks.filter((t) => t.state === column).sort(order(column))
              return (
                <section class="column" key={column} data-column={column} aria-labelledby={`column-${column}`}>
                  <h3 id={`column-${column}`}>
                    {COLUMN_TITLES[column]} <span class="muted">{cards.length}</span>
                  </h3>
                  {cards.length === 0 ? (
                    <p class="empty">—</p>
                  ) : (
                    <ul>
                      {cards.map((t) => (
                        <TaskCard key={t.id} task={t} name={name} members={members} onCancel={() => void session.cancelTask(t.id)} onReassign={(peer) => void session.reassignTask(t.id, peer)} />
                      ))}
                    </ul>
                  )}
                </section>
              )
            })}
          </div>
        </>
      )}
    </section>
  )
}

function TaskCard({
  task: t,
  name,
  members,
  onCancel,
  onReassign
}: {
  task: Task
  name: (id: string | undefined) => string | undefined
  members: ReadonlyArray<Peer>
  onCancel: () => void
  onReassign: (peer: string | undefined) => void
}) {
  const [to, setTo] = useState("")
  const active = !isFinalTask(t.state)
  return (
    <li class="task card" data-task={t.id} data-state={t.state} data-title={t.title}>
      <div class="card-head">
        <h4>{t.title}</h4>
        <span class="muted" title="priority">
          p{t.priority}
        </span>
      </div>
      {t.body !== "" && <p class="task-body">{t.body}</p>}
      <p class="task-meta">
        {t.labels.map((l) => (
          <span class="tag" key={l}>
            {l}
          </span>
        ))}
        {t.assignee !== undefined && (
          <span data-testid="assignee">
            {t.state === "claimed" ? "held by" : "by"} {name(t.assignee)}
          </span>
        )}
        {t.state === "claimed" && t.leaseExpiresAt !== undefined && <span class="muted"> · lease until {new Date(t.leaseExpiresAt).toLocaleTimeString()}</span>}
      </p>
      {t.note !== undefined && <p class="muted">note: {t.note}</p>}
      {t.result !== undefined && (
        <p data-testid="result">
          <strong>Result:</strong> {t.result}
        </p>
      )}
      {t.error !== undefined && <p class="error">{t.error}</p>}
      <p class="muted task-foot">
        attempts {t.attempts}/{t.maxAttempts}
        {t.dependsOn.length > 0 && ` · after ${t.dependsOn.length}`} · by {name(t.createdBy)} · {ago(t.updatedAt)}
      </p>
      {active && (
        <div class="actions">
          <label class="inline">
            <span class="sr-only">Reassign {t.title} to</span>
            <select name="reassign-to" value={to} onChange={(e) => setTo((e.target as HTMLSelectElement).value)}>
              <option value="">back to open</option>
              {members.map((p) => (
                <option key={p.id} value={p.id}>
                  {p.name}
                </option>
              ))}
            </select>
          </label>
          <button type="button" onClick={() => onReassign(to === "" ? undefined : to)} aria-label={`Reassign ${t.title}`}>
            Reassign
          </button>
          <button type="button" class="danger" onClick={onCancel} aria-label={`Cancel ${t.title}`}>
            Cancel
          </button>
        </div>
      )}
    </li>
  )
}
