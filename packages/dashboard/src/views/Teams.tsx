import { useState } from "preact/hooks"
import { useSession, useSessionState } from "../hooks.js"
import { href, onLinkClick } from "../router.js"

export function TeamsView() {
  const session = useSession()
  const state = useSessionState()
  const [name, setName] = useState("")
  const [description, setDescription] = useState("")
  const me = state.operator?.id
  const create = async (e: Event) => {
    e.preventDefault()
    if ((await session.createTeam(name.trim(), description.trim())) !== undefined) {
      setName("")
      setDescription("")
    }
  }
  return (
    <section aria-labelledby="teams-title">
      <div class="view-head">
        <h2 id="teams-title" tabIndex={-1}>
          Teams
        </h2>
        <span class="muted">{state.teams.length} teams</span>
      </div>
      <form class="filters" onSubmit={create} aria-label="Create a team">
        <label>
          Name
          <input name="team-name" required pattern="[A-Za-z0-9][A-Za-z0-9_.@\-]{0,63}" value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        </label>
        <label class="grow">
          Description
          <input name="team-description" value={description} onInput={(e) => setDescription((e.target as HTMLInputElement).value)} />
        </label>
        <button type="submit">Create team</button>
      </form>
      {state.teams.length === 0 ? (
        <p class="empty">No teams yet.</p>
      ) : (
        <ul class="cards" data-testid="teams">
          {state.teams.map((t) => {
            const member = me !== undefined && t.members.includes(me)
            return (
              <li class="card" key={t.name} data-team={t.name}>
                <div class="card-head">
                  <h3># {t.name}</h3>
                  <span class="muted">
                    {t.members.length} {t.members.length === 1 ? "member" : "members"}
                  </span>
                </div>
                {t.description && <p>{t.description}</p>}
                <ul class="members">
                  {t.members.map((id) => {
                    const p = state.peers.get(id)
                    return (
                      <li key={id}>
                        <span class={`dot ${p?.status === "online" ? "open" : "offline"}`} aria-hidden="true" />
                        <span class="sr-only">{p?.status ?? "unknown"}</span>
                        <a href={href(`agents/${encodeURIComponent(id)}`)} onClick={onLinkClick(`agents/${encodeURIComponent(id)}`)}>
                          {p?.name ?? id}
                        </a>
                      </li>
                    )
                  })}
                </ul>
                <div class="actions">
                  <a class="button" href={href(`conversations?with=team:${encodeURIComponent(t.name)}`)} onClick={onLinkClick(`conversations?with=team:${encodeURIComponent(t.name)}`)}>
                    Open thread
                  </a>
                  {member ? (
                    <button type="button" onClick={() => void session.leaveTeam(t.name)}>
                      Leave
                    </button>
                  ) : (
                    <button type="button" onClick={() => void session.joinTeam(t.name)}>
                      Join
                    </button>
                  )}
                </div>
              </li>
            )
          })}
        </ul>
      )}
    </section>
  )
}
