/** "5 s ago", "3 min ago", … relative to `now`. */
export const ago = (iso: string, now = Date.now()): string => {
  const t = Date.parse(iso)
  if (!Number.isFinite(t)) return "—"
  const s = Math.max(0, Math.round((now - t) / 1000))
  if (s < 60) return `${s} s ago`
  if (s < 3600) return `${Math.floor(s / 60)} min ago`
  if (s < 86_400) return `${Math.floor(s / 3600)} h ago`
  return `${Math.floor(s / 86_400)} d ago`
}

export const clock = (iso: string): string => {
  const d = new Date(iso)
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
}

/** Split a command line into arguments: spaces separate, double or single quotes group. */
export const splitArgs = (line: string): Array<string> => {
  const out: Array<string> = []
  const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g
  for (let m = re.exec(line); m !== null; m = re.exec(line)) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : (m[2] ?? m[3]!))
  return out
}

/** `k=v, k2=v2` → a record; undefined when empty. */
export const parseLabels = (text: string): Record<string, string> | undefined => {
  const pairs = text
    .split(/[,\n]/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
  if (pairs.length === 0) return undefined
  const out: Record<string, string> = {}
  for (const pair of pairs) {
    const i = pair.indexOf("=")
    if (i <= 0) throw new Error(`label "${pair}" is not key=value`)
    out[pair.slice(0, i).trim()] = pair.slice(i + 1).trim()
  }
  return out
}
