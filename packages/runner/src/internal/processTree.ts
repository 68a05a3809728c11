/**
 * Process trees: find every descendant of a pid and signal them all. A pseudo-terminal's child
 * leads its own session, but an agent's children may start their own process groups or
 * sessions, so killing the group is not enough: walk the parent links in `/proc` (or `ps`).
 */
import { execFileSync } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"

const parentsFromProc = (): Map<number, number> | undefined => {
  let entries: Array<string>
  try {
    entries = readdirSync("/proc")
  } catch {
    return undefined
  }
  const parents = new Map<number, number>()
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8")
      // The command name may contain spaces and parentheses: fields start after the last ')'.
      const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      parents.set(Number(entry), Number(rest[1]))
    } catch {
      // gone in between
    }
  }
  return parents
}

const parentsFromPs = (): Map<number, number> => {
  const parents = new Map<number, number>()
  try {
    const out = execFileSync("ps", ["-A", "-o", "pid=,ppid="], { encoding: "utf8" })
    for (const line of out.split("\n")) {
      const [pid, ppid] = line.trim().split(/\s+/).map(Number)
      if (pid !== undefined && ppid !== undefined && Number.isFinite(pid)) parents.set(pid, ppid)
    }
  } catch {
    // no ps: only the root and its group get signals
  }
  return parents
}

/** `root` and all its descendants, root first. */
export const treeOf = (root: number): Array<number> => {
  const parents = parentsFromProc() ?? parentsFromPs()
  const children = new Map<number, Array<number>>()
  for (const [pid, ppid] of parents) {
    const list = children.get(ppid)
    if (list === undefined) children.set(ppid, [pid])
    else list.push(pid)
  }
  const out: Array<number> = [root]
  for (let i = 0; i < out.length; i++) for (const child of children.get(out[i]!) ?? []) out.push(child)
  return out
}

/** Whether a process exists (and is not a zombie we could reap). */
export const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z"
  } catch {
    return true
  }
}

/** Send `signal` to each pid and to the process group `root` leads; ignores the gone. */
export const signalAll = (root: number, pids: ReadonlyArray<number>, signal: NodeJS.Signals): void => {
  try {
    process.kill(-root, signal)
  } catch {
    // not a group leader, or already gone
  }
  for (const pid of pids) {
    try {
      process.kill(pid, signal)
    } catch {
      // already gone
    }
  }
}
