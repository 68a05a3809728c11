import { useEffect, useRef } from "preact/hooks"
import { SessionContext, useSessionState } from "./hooks.js"
import { href, navigate, onLinkClick, useRoute } from "./router.js"
import type { Session } from "./session.js"
import { A2aView } from "./views/A2a.js"
import { AgentView } from "./views/Agent.js"
import { ConversationsView } from "./views/Conversations.js"
import { LoginView } from "./views/Login.js"
import { PeersView } from "./views/Peers.js"
import { RunnersView } from "./views/Runners.js"
import { SpawnsView } from "./views/Spawns.js"
import { TasksView } from "./views/Tasks.js"
import { TeamsView } from "./views/Teams.js"

const NAV: ReadonlyArray<{ path: string; label: string; key: string }> = [
  { path: "peers", label: "Peers", key: "1" },
  { path: "conversations", label: "Conversations", key: "2" },
  { path: "teams", label: "Teams", key: "3" },
  { path: "runners", label: "Runners", key: "4" },
  { path: "spawns", label: "Spawns", key: "5" },
  { path: "a2a", label: "A2A", key: "6" },
  { path: "tasks", label: "Tasks", key: "7" }
]

export function App({ session }: { session: Session }) {
  return (
    <SessionContext.Provider value={session}>
      <Shell session={session} />
    </SessionContext.Provider>
  )
}

function Shell({ session }: { session: Session }) {
  const state = useSessionState()
  const route = useRoute()
  const main = useRef<HTMLElement>(null)

  // A token kept for this tab logs in again after a reload.
  useEffect(() => {
    const stored = session.storedLogin()
    if (stored !== undefined && session.get().phase === "login") void session.login(stored.token, stored.name)
  }, [session])

  // Alt+1…7 switch views.
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (!e.altKey || e.ctrlKey || e.metaKey) return
      const item = NAV.find((n) => n.key === e.key)
      if (item !== undefined && session.get().phase === "ready") {
        e.preventDefault()
        navigate(item.path)
      }
    }
    addEventListener("keydown", onKey)
    return () => removeEventListener("keydown", onKey)
  }, [session])

  // Move focus to the new view's heading, for keyboard and screen-reader users.
  useEffect(() => {
    main.current?.querySelector<HTMLElement>("h2")?.focus()
  }, [route.path, state.phase])

  if (state.phase !== "ready") return <LoginView />

  const [section, id] = route.path.split("/")
  let view
  switch (section) {
    case "conversations":
      view = <ConversationsView initial={route.params.get("with") ?? undefined} />
      break
    case "teams":
      view = <TeamsView />
      break
    case "runners":
      view = <RunnersView />
      break
    case "spawns":
      view = <SpawnsView />
      break
    case "a2a":
      view = <A2aView />
      break
    case "tasks":
      view = <TasksView initial={route.params.get("team") ?? undefined} />
      break
    case "agents":
      view = <AgentView peerId={decodeURIComponent(id ?? "")} />
      break
    default:
      view = <PeersView />
  }
  const active = section === "agents" ? "peers" : section === "" || section === undefined ? "peers" : section
  return (
    <div class="shell">
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <h1 class="brand">a2a</h1>
        <nav aria-label="Views">
          <ul>
            {NAV.map((n) => (
              <li key={n.path}>
                <a href={href(n.path)} onClick={onLinkClick(n.path)} aria-current={active === n.path ? "page" : undefined} aria-keyshortcuts={`Alt+${n.key}`} data-nav={n.path}>
                  {n.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <div class="whoami">
          <span class={`dot ${state.channel}`} title={`live channel ${state.channel}`} aria-label={`live channel ${state.channel}`} data-testid="channel" data-state={state.channel} />
          <span class="operator" data-testid="operator" title="The peer this dashboard sends as">
            {state.operator?.name}
          </span>
          <button type="button" class="link" onClick={() => session.logout()}>
            Log out
          </button>
        </div>
      </header>
      {state.notice !== undefined && (
        <div class={`notice ${state.notice.kind}`} role={state.notice.kind === "error" ? "alert" : "status"} data-testid="notice">
          <span>{state.notice.text}</span>
          <button type="button" class="link" onClick={() => session.clearNotice()} aria-label="Dismiss">
            ×
          </button>
        </div>
      )}
      <main id="main" ref={main}>
        {view}
      </main>
    </div>
  )
}
