import { useEffect, useMemo, useRef, useState } from "preact/hooks"
import { clock } from "../format.js"
import { useSession, useSessionState } from "../hooks.js"
import { navigate } from "../router.js"
import { describe, threadOf, type State, type ThreadKey } from "../session.js"

const titleOf = (key: ThreadKey, state: State) => (key.startsWith("team:") ? `# ${key.slice(5)}` : (state.peers.get(key.slice(5))?.name ?? key.slice(5)))

export function ConversationsView({ initial }: { initial: string | undefined }) {
  const session = useSession()
  const state = useSessionState()
  const operatorId = state.operator?.id ?? ""
  const selected = initial !== undefined && /^(peer|team):.+/.test(initial) ? (initial as ThreadKey) : undefined

  const threads = useMemo(() => {
    const last = new Map<ThreadKey, string>()
    for (const m of state.messages) last.set(threadOf(m, operatorId), m.sentAt)
    if (selected !== undefined && !last.has(selected)) last.set(selected, "")
    return [...last.entries()].sort((a, b) => (a[1] < b[1] ? 1 : -1)).map(([key]) => key)
  }, [state.messages, operatorId, selected])

  const open = selected ?? threads[0]
  const messages = open === undefined ? [] : state.messages.filter((m) => threadOf(m, operatorId) === open)
  const select = (key: string) => navigate(`conversations?with=${encodeURIComponent(key)}`, true)

  const [draft, setDraft] = useState("")
  const [error, setError] = useState<string | undefined>(undefined)
  const [sending, setSending] = useState(false)
  const end = useRef<HTMLLIElement>(null)
  useEffect(() => end.current?.scrollIntoView({ block: "end" }), [messages.length, open])

  const send = async (e?: Event) => {
    e?.preventDefault()
    if (open === undefined || draft.trim().length === 0 || sending) return
    setSending(true)
    setError(undefined)
    try {
      await session.send(open, draft)
      setDraft("")
    } catch (err) {
      setError(describe(err))
    } finally {
      setSending(false)
    }
  }

  const others = [...state.peers.values()].filter((p) => p.id !== operatorId).sort((a, b) => a.name.localeCompare(b.name))
  return (
    <section aria-labelledby="conv-title" class="conversations">
      <div class="view-head">
        <h2 id="conv-title" tabIndex={-1}>
          Conversations
        </h2>
        <label class="inline">
          New
          <select
            value=""
            onChange={(e) => {
              const v = (e.target as HTMLSelectElement).value
              if (v !== "") select(v)
            }}
            name="new-thread"
          >
            <option value="">Start a conversation…</option>
            <optgroup label="Peers">
              {others.map((p) => (
                <option key={p.id} value={`peer:${p.id}`}>
                  {p.name} {p.status === "offline" ? "(offline)" : ""}
                </option>
              ))}
            </optgroup>
            <optgroup label="Teams">
              {state.teams.map((t) => (
                <option key={t.name} value={`team:${t.name}`}>
                  # {t.name}
                </option>
              ))}
            </optgroup>
          </select>
        </label>
      </div>
      <div class="split">
        <nav class="threads" aria-label="Threads">
          {threads.length === 0 ? (
            <p class="empty">No messages yet. Start a conversation with a peer or a team.</p>
          ) : (
            <ul>
              {threads.map((key) => (
                <li key={key}>
                  <button type="button" class={key === open ? "thread active" : "thread"} aria-current={key === open ? "true" : undefined} onClick={() => select(key)} data-thread={key}>
                    {titleOf(key, state)}
                  </button>
                </li>
              ))}
            </ul>
          )}
        </nav>
        {open !== undefined && (
          <div class="thread-view">
            <h3 class="thread-title" data-testid="thread-title">
              {titleOf(open, state)}
            </h3>
            <ol class="messages" aria-live="polite" data-testid="messages">
              {messages.map((m) => (
                <li key={m.id} class={m.from === operatorId ? "mine" : "theirs"} data-message={m.id}>
                  <div class="meta">
                    <strong>{m.from === operatorId ? "you" : m.fromName}</strong> <time dateTime={m.sentAt}>{clock(m.sentAt)}</time>
                  </div>
                  <div class="body">{m.body}</div>
                </li>
              ))}
              <li ref={end} class="end" aria-hidden="true" />
            </ol>
            <form class="composer" onSubmit={send}>
              <label class="sr-only" for="composer">
                Message to {titleOf(open, state)}
              </label>
              <textarea
                id="composer"
                name="body"
                rows={2}
                placeholder="Write a message — Enter sends, Shift+Enter for a new line"
                value={draft}
                onInput={(e) => setDraft((e.target as HTMLTextAreaElement).value)}
                onKeyDown={(e) => {
                  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) void send(e)
                }}
              />
              <button type="submit" class="primary" disabled={sending || draft.trim().length === 0}>
                Send
              </button>
            </form>
            {error !== undefined && (
              <p class="error" role="alert">
                {error}
              </p>
            )}
          </div>
        )}
      </div>
    </section>
  )
}
