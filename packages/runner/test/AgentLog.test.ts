/**
 * The runner's log lines are what a terminal would show, for people: the output is played into
 * a headless terminal and lines are read off its screen. A TUI that positions its words with
 * cursor moves and repaints only the cells that changed (Claude Code) still reads as whole rows
 * of words in the API, SSE and the dashboard's live log; plain output passes through as it was.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { AgentLog } from "../src/internal/agentLog.js"

const ESC = "\u001b"
const at = (row: number, col: number) => `${ESC}[${row};${col}H`

const dirs: Array<string> = []
const logs: Array<AgentLog> = []
afterEach(() => {
  for (const log of logs.splice(0)) log.close()
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

const open = (options: { cols?: number; rows?: number; tailLines?: number; maxBytes?: number; now?: () => number; quietMs?: number } = {}) => {
  const dir = mkdtempSync(join(tmpdir(), "a2a-agentlog-"))
  dirs.push(dir)
  const log = new AgentLog({ dir, id: "a", maxBytes: options.maxBytes ?? 1 << 22, keep: 1, tailLines: options.tailLines ?? 1_000, backlogBytes: 4_096, cols: options.cols ?? 80, rows: options.rows ?? 24, now: options.now, quietMs: options.quietMs })
  logs.push(log)
  const heard: Array<string> = []
  log.onLine((line) => heard.push(line))
  return { log, heard }
}

/**
 * How a cell-diffing renderer (Claude Code's) repaints one row: it moves to the row and writes
 * only the cells that differ from what the row showed, skipping the others with `CSI n G`.
 */
const repaint = (row: number, before: string, after: string) => {
  let out = at(row, 1)
  let skipping = false
  for (let i = 0; i < Math.max(before.length, after.length); i++) {
    const ch = after[i] ?? " "
    if (ch === (before[i] ?? " ")) {
      skipping = true
      continue
    }
    if (skipping) out += `${ESC}[${i + 1}G`
    skipping = false
    out += ch
  }
  return out
}

describe("AgentLog: lines as the screen shows them", () => {
  it("keeps plain output as it was, line by line, repeated and blank lines too", async () => {
    const { log, heard } = open()
    log.write("hello  world!\r\nsame\r\nsame\r\n\r\nafter a blank\r\n")
    await log.settled()
    expect(log.tail(10)).toEqual(["hello  world!", "same", "same", "", "after a blank"])
    expect(heard).toEqual(log.tail(10))
  })

  it("drops colours and puts words where the cursor moves put them", async () => {
    const { log } = open()
    log.write(`${ESC}[31mred${ESC}[0m text\r\n`)
    // Claude Code 2.1: words placed with `CSI n G` and `CSI n C` instead of spaces.
    log.write(`${ESC}[38;5;231m●${ESC}[3G${ESC}[39mREADABLE-ANSWER-42${ESC}[22Gfrom${ESC}[27Gthe${ESC}[1Cfake${ESC}[36Gmodel\r\n`)
    log.write(`abc${ESC}[2Dx\r\n`)
    await log.settled()
    expect(log.tail(3)).toEqual(["red text", "● READABLE-ANSWER-42 from the fake model", "axc"])
  })

  it("a row repainted cell by cell reads as the whole new row, never as the fragments written", async () => {
    const { log } = open()
    const first = "● READABLE-ANSWER-42 from the fake model"
    const second = "● SECOND-ANSWER-7 via the terminal"
    // A full-screen TUI: the alternate screen, a frame, then a frame that rewrites row 3 by diff.
    log.write(`${ESC}[?1049h${ESC}[2J${at(1, 1)}header${at(3, 1)}${first}${at(5, 1)}❯ ${at(5, 3)}`)
    await log.settled()
    log.write(`${repaint(3, first, second)}${at(5, 3)}`)
    await log.settled()
    const lines = log.tail(20)
    expect(lines).toContain(first)
    expect(lines).toContain(second)
    // Nothing but whole rows: no piece of the diff on a line of its own. (The prompt row "❯" is a
    // whole row of the screen too: under load the screen can stand still long enough between two
    // pieces of the first frame for it to be read.)
    expect(lines.filter((l) => l !== first && l !== second && l !== "header" && l !== "❯")).toEqual([])
    // The byte stream itself never holds the second answer in one piece.
    expect(repaint(3, first, second)).not.toContain("SECOND-ANSWER-7 via the terminal")
  })

  it("a TUI's repainted or scrolled rows are not repeated; blank rows of a TUI are left out", async () => {
    const { log } = open()
    log.write(`${ESC}[?1049h${at(1, 1)}alpha${at(2, 1)}beta${at(3, 1)}gamma${at(10, 1)}`)
    await log.settled()
    // The content moves up one row and a new row appears below it.
    log.write(`${ESC}[2J${at(1, 1)}beta${at(2, 1)}gamma${at(3, 1)}delta${at(10, 1)}`)
    await log.settled()
    // The same frame again (a spinner's tick elsewhere on the screen).
    log.write(`${ESC}[2J${at(1, 1)}beta${at(2, 1)}gamma${at(3, 1)}delta${at(10, 1)}`)
    await log.settled()
    expect(log.tail(20)).toEqual(["alpha", "beta", "gamma", "delta"])
  })

  it("overwrites on carriage return and erases what the terminal erases", async () => {
    const { log } = open()
    log.write("50%\r100%\r\n")
    log.write(`abcdef\r${ESC}[Kxy\r\n`)
    log.write(`abcdef${ESC}[3G${ESC}[2X\r\n`)
    log.write("ab\bc\r\n")
    await log.settled()
    expect(log.tail(4)).toEqual(["100%", "xy", "ab  ef", "ac"])
  })

  it("a line longer than the screen is wide is one line, not its wrapped rows", async () => {
    const { log } = open({ cols: 40 })
    const long = Array.from({ length: 30 }, (_, i) => `w${i}`).join(" ")
    expect(long.length).toBeGreaterThan(80)
    log.write(`${long}\r\nnext\r\n`)
    await log.settled()
    expect(log.tail(2)).toEqual([long, "next"])
  })

  it("the row under the cursor shows once the output pauses, and flush reads it at the end", async () => {
    const { log } = open()
    const prompt = new Promise<string>((resolve) => log.onLine(resolve))
    log.write("type here> ")
    // No newline and no more output: the pause shows the row.
    expect(await prompt).toBe("type here>")
    log.write("half")
    log.flush()
    await log.settled()
    expect(log.tail(1)).toEqual(["type here> half"])
  })

  it("a screen that stood between two frames is read whole, the cursor's row too (a dialog answered at once)", async () => {
    let clock = 1_000
    // No pause-based read in this test: only the gap between the two outputs shows the dialog.
    const { log } = open({ now: () => clock, quietMs: 3_600_000 })
    // Claude Code's start-up dialog: options drawn, then the cursor parked on the selected one.
    log.write(`Loading development channels\r\n\r\n  ❯ 1. I am using this for local development\r\n    2. Exit\r\n\r\n  Enter to confirm\r\n${ESC}[2C${ESC}[4A`)
    await log.settled()
    expect(log.tail(10)).not.toContain("  ❯ 1. I am using this for local development")
    // 60 ms later the dialog is answered and erased.
    clock += 60
    log.write(`${ESC}[2K${ESC}[1A${ESC}[2K${ESC}[1A${ESC}[2K\r`)
    await log.settled()
    expect(log.tail(10)).toContain("  ❯ 1. I am using this for local development")
    // Chunks of one frame (closer than a frame) are not read in between.
    log.write("● half of a ro")
    clock += 1
    log.write("w\r\n")
    await log.settled()
    expect(log.tail(1)).toEqual(["● half of a row"])
  })

  it("a flood far longer than the screen and its scrollback loses no line and keeps the order", async () => {
    const { log } = open({ tailLines: 30_000 })
    const lines = Array.from({ length: 20_000 }, (_, i) => `line ${i}`)
    // One write, as a pty may hand over a large chunk.
    log.write(lines.join("\n") + "\n")
    await log.settled()
    expect(log.tail(30_000)).toEqual(lines)
  })

  /**
   * The characters a flood of one repeated character left in the lines: a line read while it was
   * still being written (at a pause) shows again, longer, once it is done; it counts once.
   */
  const floodChars = (lines: ReadonlyArray<string>) =>
    lines.reduce((n, line, i) => {
      const next = lines[i + 1]
      return next !== undefined && next.length > line.length && next.startsWith(line) ? n : n + line.length
    }, 0)

  it("megabytes without a newline become lines of bounded length, every character kept, across file rotations", async () => {
    // The file rotates every 256 KiB during the flood; the lines go on. Under load the screen may
    // be read before the flood is parsed (the cursor's row at the latest a second after output began).
    const { log, heard } = open({ cols: 120, tailLines: 10_000, maxBytes: 256 * 1024 })
    for (let i = 0; i < 2_000; i++) log.write("x".repeat(1_000))
    log.write("\r\nafter the flood\r\n")
    await log.settled()
    const lines = log.tail(10_000)
    expect(lines).toEqual(heard)
    expect(lines.at(-1)).toBe("after the flood")
    const xs = lines.slice(0, -1)
    expect(xs.every((l) => /^x+$/.test(l) && l.length <= 16_384 + 120)).toBe(true)
    expect(floodChars(xs)).toBe(2_000_000)
  })

  it("a line read unfinished at a pause shows again once done, even when its text repeats an earlier line", async () => {
    let clock = 1_000
    // No pause-based read: only the gap between the two halves reads the unfinished line.
    const { log, heard } = open({ cols: 120, tailLines: 10_000, now: () => clock, quietMs: 3_600_000 })
    for (let i = 0; i < 1_000; i++) log.write("x".repeat(1_000))
    await log.settled()
    clock += 60
    for (let i = 0; i < 1_000; i++) log.write("x".repeat(1_000))
    log.write("\r\nafter the flood\r\n")
    await log.settled()
    expect(heard.at(-1)).toBe("after the flood")
    const xs = heard.slice(0, -1)
    const full = Math.ceil(16_384 / 120) * 120
    // The half-way line (1,000,000 = 60 whole lines + 13,600) was read at the gap, then whole.
    const unfinished = 1_000_000 % full
    const at = xs.findIndex((l) => l.length === unfinished)
    expect(at).toBeGreaterThan(0)
    expect(xs[at + 1]).toHaveLength(full)
    expect(floodChars(xs)).toBe(2_000_000)
  })

  it("notes are lines of their own in order; a restart starts from a clean screen", async () => {
    const { log } = open()
    log.note("started pid 1")
    log.write(`${ESC}[?1049h${at(1, 1)}tui row${at(5, 1)}`)
    log.flush()
    log.note("exited with code 1")
    // The next process starts on a clean normal screen (the first left the alternate one on).
    log.reset()
    log.note("started pid 2")
    log.write("plain again\r\n")
    await log.settled()
    expect(log.tail(10)).toEqual(["[a2a-runner] started pid 1", "tui row", "[a2a-runner] exited with code 1", "[a2a-runner] started pid 2", "plain again"])
    // The terminal backlog keeps the raw bytes, notes included, for an attach.
    expect(log.rawBacklog()).toContain(`${ESC}[?1049h`)
    expect(log.rawBacklog()).toContain("[a2a-runner] started pid 2\r\n")
  })
})
