import { useMemo, useState } from "preact/hooks"
import { ago } from "../format.js"
import { useSessionState, useTick } from "../hooks.js"
import { href, onLinkClick } from "../router.js"

export function PeersView() {
  const state = useSessionState()
  useTick(5_000)
  const [team, setTeam] = useState("")
  const [host, setHost] = useState("")
  const [status, setStatus] = useState("")
  const [text, setText] = useState("")
  const all = [...state.peers.values()]
  const teams = useMemo(() => [...new Set(all.flatMap((p) => p.teams))].sort(), [state.peers])
  const hosts = useMemo(() => [...new Set(all.map((p) => p.host).filter((h) => h.length > 0))].sort(), [state.peers])
  const needle = text.trim().toLowerCase()
  const peers = all
    .filter((p) => (team === "" || p.teams.includes(team)) && (host === "" || p.host === host) && (status === "" || p.status === status))
    .filter((p) => needle === "" || `${p.name} ${p.summary} ${p.agent}`.toLowerCase().includes(needle))
    .sort((a, b) => (a.status === b.status ? a.name.localeCompare(b.name) : a.status === "online" ? -1 : 1))
  const online = all.filter((p) => p.status === "online").length
  return (
    <section aria-labelledby="peers-title">
      <div class="view-head">
        <h2 id="peers-title" tabIndex={-1}>
          Peers
        </h2>
        <span class="muted" data-testid="peer-count">
          {online} online · {all.length} known
        </span>
      </div>
      <form class="filters" onSubmit={(e) => e.preventDefault()} aria-label="Filter peers">
        <label>
          Team
          <select value={team} onChange={(e) => setTeam((e.target as HTMLSelectElement).value)} name="team">
            <option value="">All teams</option>
            {teams.map((t) => (
              <option key={t} value={t}>
                {t}
              </option>
            ))}
          </select>
        </label>
        <label>
          Host
          <select value={host} onChange={(e) => setHost((e.target as HTMLSelectElement).value)} name="host">
            <option value="">All hosts</option>
            {hosts.map((h) => (
              <option key={h} value={h}>
                {h}
              </option>
            ))}
          </select>
        </label>
        <label>
          Status
          <select value={status} onChange={(e) => setStatus((e.target as HTMLSelectElement).value)} name="status">
            <option value="">Any</option>
            <option value="online">Online</option>
            <option value="offline">Offline</option>
          </select>
        </label>
        <label class="grow">
          Search
          <input type="search" value={text} onInput={(e) => setText((e.target as HTMLInputElement).value)} placeholder="name, summary, agent" />
        </label>
      </form>
      {peers.length === 0 ? (
        <p class="empty">No peers match.</p>
      ) : (
        <div class="table-wrap">
          <table class="list" data-testid="peers">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Status</th>
                <th scope="col">Agent</th>
                <th scope="col">Host</th>
                <th scope="col">Teams</th>
                <th scope="col">Summary</th>
                <th scope="col">Last seen</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {peers.map((p) => (
                <tr key={p.id} data-peer={p.name} data-status={p.status} class={p.status}>
                  <td data-label="Name">
                    <a href={href(`agents/${encodeURIComponent(p.id)}`)} onClick={onLinkClick(`agents/${encodeURIComponent(p.id)}`)}>
                      {p.name}
                    </a>
                    {p.id === state.operator?.id && <span class="tag">you</span>}
                  </td>
                  <td data-label="Status">
                    <span class={`badge ${p.status}`}>{p.status}</span>
                  </td>
                  <td data-label="Agent">{p.agent}</td>
                  <td data-label="Host">{p.host || "—"}</td>
                  <td data-label="Teams">{p.teams.length > 0 ? p.teams.map((t) => <span class="tag" key={t}>{t}</span>) : "—"}</td>
                  <td data-label="Summary" class="summary">
                    {p.summary || <span class="muted">—</span>}
                  </td>
                  <td data-label="Last seen">
                    <time dateTime={p.lastSeenAt} title={p.lastSeenAt}>
                      {ago(p.lastSeenAt)}
                    </time>
                  </td>
                  <td>
                    {p.id !== state.operator?.id && (
                      <a class="button" href={href(`conversations?with=peer:${encodeURIComponent(p.id)}`)} onClick={onLinkClick(`conversations?with=peer:${encodeURIComponent(p.id)}`)} aria-label={`Message ${p.name}`}>
                        Message
                      </a>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  )
}
