/**
 * An xterm.js terminal attached to an agent through a `Relay`. Fits its box, forwards keys
 * and resizes, and shows output as it comes.
 */
import { FitAddon } from "@xterm/addon-fit"
import { Terminal as XTerm } from "@xterm/xterm"
import "@xterm/xterm/css/xterm.css"
import { useEffect, useRef, useState } from "preact/hooks"
import type { Relay } from "./relay.js"

export interface TerminalProps {
  readonly relay: Relay
  readonly spawnId: string
  readonly label: string
}

export function AgentTerminal({ relay, spawnId, label }: TerminalProps) {
  const box = useRef<HTMLDivElement>(null)
  const [status, setStatus] = useState<string>("attaching…")
  useEffect(() => {
    const element = box.current
    if (element === null) return
    const term = new XTerm({
      convertEol: false,
      cursorBlink: true,
      fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace',
      fontSize: 13,
      scrollback: 5_000
    })
    const fit = new FitAddon()
    term.loadAddon(fit)
    term.open(element)
    try {
      fit.fit()
    } catch {
      // Not laid out yet: the observer below fits it.
    }
    const session = relay.terminal(
      { spawnId },
      { cols: term.cols, rows: term.rows },
      {
        onOutput: (data) => term.write(data),
        onExit: (reason) => {
          setStatus(reason)
          term.write(`\r\n\x1b[2m[${reason}]\x1b[0m\r\n`)
        },
        onOpen: () => setStatus("attached")
      }
    )
    const input = term.onData((data) => session.write(data))
    const resized = term.onResize(({ cols, rows }) => session.resize(cols, rows))
    const observer = new ResizeObserver(() => {
      try {
        fit.fit()
      } catch {
        // Hidden: nothing to fit.
      }
    })
    observer.observe(element)
    return () => {
      observer.disconnect()
      input.dispose()
      resized.dispose()
      session.close()
      term.dispose()
    }
  }, [relay, spawnId])
  return (
    <section class="terminal" aria-label={`Terminal of ${label}`}>
      <div class="panel-head">
        <h3>Terminal</h3>
        <span class="muted" data-testid="terminal-status">
          {status}
        </span>
      </div>
      <div class="terminal-box" ref={box} data-testid="terminal" />
    </section>
  )
}
