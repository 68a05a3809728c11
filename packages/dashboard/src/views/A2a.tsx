/**
 * The A2A view (docs/a2a.md): remote A2A agents bridged onto the bus, each with its Agent Card
 * (description, skills, interfaces, capabilities), and the peers published to A2A clients with
 * their card URLs. Read from `/api/a2a/agents` and the peer list; polled, as there is no event.
 */
import { useEffect, useState } from "preact/hooks"
import { ago } from "../format.js"
import { useSession, useSessionState } from "../hooks.js"
import { href, onLinkClick } from "../router.js"

interface Skill {
  readonly id?: string
  readonly name?: string
  readonly description?: string
}
interface Card {
  readonly name?: string
  readonly description?: string
  readonly version?: string
  readonly skills?: ReadonlyArray<Skill>
  readonly capabilities?: { readonly streaming?: boolean; readonly pushNotifications?: boolean }
  readonly supportedInterfaces?: ReadonlyArray<{ readonly url?: string; readonly protocolBinding?: string; readonly protocolVersion?: string }>
  readonly url?: string
}
export interface RemoteAgent {
  readonly peerId: string
  readonly name: string
  readonly cardUrl: string
  readonly card: Card
  readonly version: string
  readonly hasCredential: boolean
  readonly createdAt: string
}

const POLL_MS = 5_000

export function A2aView() {
  const session = useSession()
  const state = useSessionState()
  const [agents, setAgents] = useState<ReadonlyArray<RemoteAgent> | undefined>(undefined)
  const [error, setError] = useState<string | undefined>(undefined)

  useEffect(() => {
    const token = session.currentToken
    if (token === undefined) return
    let live = true
    const load = () =>
      fetch("/api/a2a/agents", { headers: { authorization: `Bearer ${token}` }, cache: "no-store" })
      .then(async (r) => {
        const body = (await r.json()) as { agents?: ReadonlyArray<RemoteAgent>; message?: string }
        if (!live) return
        if (!r.ok) setError(body.message ?? `the broker answered ${r.status}`)
        else {
          setError(undefined)
          setAgents(body.agents ?? [])
        }
      })
      .catch(() => live && setError("the broker cannot be reached"))
    void load()
    const timer = setInterval(load, POLL_MS)
    return () => {
      live = false
      clearInterval(timer)
    }
  }, [session])

  const peers = [...state.peers.values()]
  const published = peers.filter((p) => p.meta !== undefined && p.meta["a2a"] !== undefined && p.meta["a2a"] !== false)
  const byPeer = new Map(peers.map((p) => [p.id, p]))
  return (
    <section aria-labelledby="a2a-title">
      <div class="view-head">
        <h2 id="a2a-title" tabIndex={-1}>
          A2A agents
        </h2>
        <span class="muted">{agents === undefined ? "loading…" : `${agents.length} bridged · ${published.length} published`}</span>
      </div>
      {error !== undefined && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <h3>Remote agents on the bus</h3>
      {agents !== undefined && agents.length === 0 ? (
        <p class="empty">
          No remote A2A agent is bridged. Add one with <code>a2a agents add &lt;name&gt; &lt;card-url&gt;</code>.
        </p>
      ) : (
        <ul class="cards" data-testid="a2a-agents">
          {(agents ?? []).map((a) => {
            const peer = byPeer.get(a.peerId)
            return (
              <li class="card" key={a.name} data-agent={a.name}>
                <div class="card-head">
                  <h3>
                    <a href={href(`agents/${encodeURIComponent(a.peerId)}`)} onClick={onLinkClick(`agents/${encodeURIComponent(a.peerId)}`)}>
                      {a.name}
                    </a>
                  </h3>
                  <span class={`badge ${peer?.status ?? "offline"}`}>{peer?.status ?? "offline"}</span>
                </div>
                <p data-testid="card-description">{a.card.description ?? ""}</p>
                <dl class="facts">
                  <dt>Card</dt>
                  <dd>
                    <code>{a.cardUrl}</code>
                  </dd>
                  <dt>Protocol</dt>
                  <dd>A2A {a.version}</dd>
                  <dt>Capabilities</dt>
                  <dd>
                    {[a.card.capabilities?.streaming ? "streaming" : "", a.card.capabilities?.pushNotifications ? "push notifications" : ""].filter((s) => s !== "").join(", ") || "—"}
                  </dd>
                  <dt>Credential</dt>
                  <dd>{a.hasCredential ? "stored (encrypted)" : "none"}</dd>
                  <dt>Added</dt>
                  <dd>{ago(a.createdAt)}</dd>
                </dl>
                <h4>Skills</h4>
                <ul class="members" data-testid="skills">
                  {(a.card.skills ?? []).map((s) => (
                    <li key={s.id ?? s.name}>
                      <strong>{s.name ?? s.id}</strong>
                      {s.description ? ` — ${s.description}` : ""}
                    </li>
                  ))}
                </ul>
              </li>
            )
          })}
        </ul>
      )}
      <h3>Peers published to A2A clients</h3>
      {published.length === 0 ? (
        <p class="empty">
          No peer is published. A peer opts in with <code>meta.a2a</code>.
        </p>
      ) : (
        <ul class="members" data-testid="a2a-published">
          {published.map((p) => (
            <li key={p.id}>
              <strong>{p.name}</strong> <code>{`/a2a/peers/${encodeURIComponent(p.name)}/.well-known/agent-card.json`}</code>
            </li>
          ))}
        </ul>
      )}
    </section>
  )
}
