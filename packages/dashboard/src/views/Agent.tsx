import { useEffect, useRef, useState } from "preact/hooks"
import { ago } from "../format.js"
import { useSession, useSessionState, useTick } from "../hooks.js"
import { href, onLinkClick } from "../router.js"
import { currentRelay, type Relay } from "../relay.js"
import { AgentTerminal } from "../Terminal.js"
import { isFinal } from "../wire.js"

const MAX_LINES = 2_000

function LiveLog({ relay, spawnId }: { relay: Relay; spawnId: string }) {
  const [lines, setLines] = useState<ReadonlyArray<string>>([])
  const [ended, setEnded] = useState<string | undefined>(undefined)
  const box = useRef<HTMLPreElement>(null)
  useEffect(() => {
    setLines([])
    setEnded(undefined)
    const stream = relay.logs(
      { spawnId },
      (more) => setLines((old) => [...old, ...more].slice(-MAX_LINES)),
      (reason) => setEnded(reason)
    )
    return () => stream.close()
  }, [relay, spawnId])
  useEffect(() => {
    const el = box.current
    if (el !== null) el.scrollTop = el.scrollHeight
  }, [lines])
  return (
    <section class="log" aria-label="Live log">
      <div class="panel-head">
        <h3>Live log</h3>
        {ended !== undefined && (
          <span class="muted" data-testid="log-status">
            {ended}
          </span>
        )}
      </div>
      <pre ref={box} tabIndex={0} data-testid="log" aria-live="off">
        {lines.join("\n")}
      </pre>
    </section>
  )
}

export function AgentView({ peerId }: { peerId: string }) {
  const session = useSession()
  const state = useSessionState()
  useTick(5_000)
  const peer = state.peers.get(peerId)
  const spawn = peer?.spawnId !== undefined ? state.spawns.get(peer.spawnId) : [...state.spawns.values()].find((s) => s.peerId === peerId)
  const relay = currentRelay(session.currentToken)
  if (peer === undefined) {
    return (
      <section aria-labelledby="agent-title">
        <h2 id="agent-title" tabIndex={-1}>
          Agent not found
        </h2>
        <p class="empty">
          No peer <code>{peerId}</code> in this tenant. <a href={href("peers")} onClick={onLinkClick("peers")}>Back to peers</a>
        </p>
      </section>
    )
  }
  return (
    <section aria-labelledby="agent-title" class="agent">
      <div class="view-head">
        <h2 id="agent-title" tabIndex={-1}>
          {peer.name}
        </h2>
        <span class={`badge ${peer.status}`}>{peer.status}</span>
        <div class="actions">
          <a class="button" href={href(`conversations?with=peer:${encodeURIComponent(peer.id)}`)} onClick={onLinkClick(`conversations?with=peer:${encodeURIComponent(peer.id)}`)}>
            Message
          </a>
          {spawn !== undefined && !isFinal(spawn.status) && (
            <button type="button" class="danger" onClick={() => void session.stopSpawn(spawn.id)}>
              Stop agent
            </button>
          )}
        </div>
      </div>
      <dl class="facts card">
        <dt>Summary</dt>
        <dd>{peer.summary || "—"}</dd>
        <dt>Agent</dt>
        <dd>{peer.agent}</dd>
        <dt>Host</dt>
        <dd>{peer.host || "—"}</dd>
        <dt>Directory</dt>
        <dd>
          <code>{peer.cwd || "—"}</code>
        </dd>
        <dt>Teams</dt>
        <dd>{peer.teams.join(", ") || "—"}</dd>
        <dt>Last seen</dt>
        <dd>{ago(peer.lastSeenAt)}</dd>
        <dt>Peer id</dt>
        <dd>
          <code>{peer.id}</code>
        </dd>
        {spawn !== undefined && (
          <>
            <dt>Spawn</dt>
            <dd>
              <code>{spawn.id}</code> on {spawn.runnerId} · <span class={`badge ${spawn.status}`}>{spawn.status}</span>
              {spawn.pid !== undefined && ` · pid ${spawn.pid}`}
            </dd>
          </>
        )}
      </dl>
      {spawn === undefined ? (
        <p class="muted">This peer was not spawned through the broker: its log and terminal are on its own machine.</p>
      ) : relay.unavailable !== undefined ? (
        <p class="notice info" data-testid="relay-unavailable">
          {relay.unavailable}
        </p>
      ) : (
        <div class="agent-panels">
          <LiveLog relay={relay} spawnId={spawn.id} />
          <AgentTerminal relay={relay} spawnId={spawn.id} label={peer.name} />
        </div>
      )}
    </section>
  )
}
