import { ago } from "../format.js"
import { useSessionState, useTick } from "../hooks.js"
import { href, onLinkClick } from "../router.js"
import { isFinal } from "../wire.js"

export function RunnersView() {
  const state = useSessionState()
  useTick(5_000)
  const spawns = [...state.spawns.values()]
  return (
    <section aria-labelledby="runners-title">
      <div class="view-head">
        <h2 id="runners-title" tabIndex={-1}>
          Runners
        </h2>
        <span class="muted">{state.runners.filter((r) => r.status === "online").length} online</span>
      </div>
      {state.runners.length === 0 ? (
        <p class="empty">No runner has connected. Start one with <code>a2a-runner --broker …</code>.</p>
      ) : (
        <ul class="cards" data-testid="runners">
          {state.runners.map((r) => {
            const agents = spawns.filter((s) => s.runnerId === r.id && !isFinal(s.status))
            const free = Math.max(0, r.capacity - r.active)
            return (
              <li class="card" key={r.id} data-runner={r.id} data-status={r.status}>
                <div class="card-head">
                  <h3>{r.id}</h3>
                  <span class={`badge ${r.status}`}>{r.status}</span>
                </div>
                <dl class="facts">
                  <dt>Host</dt>
                  <dd>{r.host}</dd>
                  <dt>Capacity</dt>
                  <dd data-testid="capacity">
                    {r.active} / {r.capacity} used · {free} free
                    <meter min={0} max={Math.max(1, r.capacity)} value={r.active} aria-label="slots used" />
                  </dd>
                  <dt>Labels</dt>
                  <dd>{Object.entries(r.labels).length === 0 ? "—" : Object.entries(r.labels).map(([k, v]) => <span class="tag" key={k}>{`${k}=${v}`}</span>)}</dd>
                  <dt>Presets</dt>
                  <dd>{r.presets.join(", ") || "—"}</dd>
                  <dt>Version</dt>
                  <dd>{r.version}</dd>
                  <dt>Last seen</dt>
                  <dd>{ago(r.lastSeenAt)}</dd>
                </dl>
                <h4>Agents</h4>
                {agents.length === 0 ? (
                  <p class="muted">none</p>
                ) : (
                  <ul class="members">
                    {agents.map((s) => (
                      <li key={s.id}>
                        {s.peerId !== undefined ? (
                          <a href={href(`agents/${encodeURIComponent(s.peerId)}`)} onClick={onLinkClick(`agents/${encodeURIComponent(s.peerId)}`)}>
                            {s.spec.name ?? s.id}
                          </a>
                        ) : (
                          <span>{s.spec.name ?? s.id}</span>
                        )}{" "}
                        <span class={`badge ${s.status}`}>{s.status}</span>
                      </li>
                    ))}
                  </ul>
                )}
              </li>
            )
          })}
        </ul>
      )}
    </section>
  )
}
