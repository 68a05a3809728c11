import { useState } from "preact/hooks"
import { useSession, useSessionState } from "../hooks.js"

/** Paste a token once; it stays in this tab's sessionStorage, never in the URL. */
export function LoginView() {
  const session = useSession()
  const state = useSessionState()
  const [token, setToken] = useState("")
  const [name, setName] = useState("")
  const busy = state.phase === "connecting"
  const submit = async (e: Event) => {
    e.preventDefault()
    const ok = await session.login(token, name)
    if (ok) setToken("")
  }
  return (
    <main class="login" id="main">
      <form class="card" onSubmit={submit} aria-describedby="login-help">
        <h2 tabIndex={-1}>a2a dashboard</h2>
        <p id="login-help" class="muted">
          Paste a broker token (<code>a2a-broker token create --role peer</code>, or the admin token in <code>~/.a2a/broker.token</code>). It is kept in this tab only.
        </p>
        <label>
          Token
          <input
            type="password"
            name="token"
            autoComplete="off"
            spellcheck={false}
            required
            value={token}
            onInput={(e) => setToken((e.target as HTMLInputElement).value)}
            aria-invalid={state.loginError !== undefined}
            autoFocus
          />
        </label>
        <label>
          Operator name <span class="muted">(optional)</span>
          <input
            type="text"
            name="operator"
            placeholder="operator-…"
            pattern="[A-Za-z0-9][A-Za-z0-9_.@\-]{0,63}"
            value={name}
            onInput={(e) => setName((e.target as HTMLInputElement).value)}
          />
        </label>
        {state.loginError !== undefined && (
          <p class="error" role="alert" data-testid="login-error">
            {state.loginError}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Connecting…" : "Log in"}
        </button>
      </form>
    </main>
  )
}
