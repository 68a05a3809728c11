import { createContext } from "preact"
import { useContext, useEffect, useState } from "preact/hooks"
import type { Session, State } from "./session.js"

export const SessionContext = createContext<Session | undefined>(undefined)

export const useSession = (): Session => {
  const session = useContext(SessionContext)
  if (session === undefined) throw new Error("no session")
  return session
}

/** The session's state; re-renders on every change. */
export const useSessionState = (): State => {
  const session = useSession()
  const [state, setState] = useState(session.get())
  useEffect(() => {
    setState(session.get())
    return session.subscribe(() => setState(session.get()))
  }, [session])
  return state
}

/** Re-render every `ms` (for "seen 5 s ago"). */
export const useTick = (ms: number) => {
  const [, setTick] = useState(0)
  useEffect(() => {
    const id = setInterval(() => setTick((t) => t + 1), ms)
    return () => clearInterval(id)
  }, [ms])
}
