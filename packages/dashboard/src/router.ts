/** Client-side routes under the page's base (`/ui/`): `peers`, `conversations?with=…`, `agents/<id>`, … */
import { useEffect, useState } from "preact/hooks"

const BASE = import.meta.env.BASE_URL.replace(/\/$/, "")

export interface Route {
  readonly path: string
  readonly params: URLSearchParams
}

const current = (): Route => {
  const path = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : location.pathname
  return { path: path.replace(/^\/+|\/+$/g, ""), params: new URLSearchParams(location.search) }
}

const listeners = new Set<() => void>()
addEventListener("popstate", () => listeners.forEach((l) => l()))

export const href = (path: string) => `${BASE}/${path}`

export const navigate = (path: string, replace = false) => {
  if (replace) history.replaceState(null, "", href(path))
  else history.pushState(null, "", href(path))
  listeners.forEach((l) => l())
}

export const useRoute = (): Route => {
  const [route, setRoute] = useState(current)
  useEffect(() => {
    const listener = () => setRoute(current())
    listeners.add(listener)
    return () => void listeners.delete(listener)
  }, [])
  return route
}

/** A link that navigates inside the app (plain clicks) and stays a real link otherwise. */
export const onLinkClick = (path: string) => (event: MouseEvent) => {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return
  event.preventDefault()
  navigate(path)
}
