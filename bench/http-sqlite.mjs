/**
 * The baseline for the broker's HTTP send path: a message relay of the shape Claude Code users
 * run for the same job (claude-peers-mcp: an HTTP server in front of SQLite). `POST /send`
 * `{from, to, body}` appends the message to SQLite (WAL, synchronous NORMAL — the broker's
 * settings) and answers `{id}` after the insert; `GET /poll?peer=<id>&after=<id>` returns the
 * peer's newer messages. No auth, no schema decoding, no group commit, no live push: one
 * prepared INSERT per request. Prints `http-sqlite listening on <port>` when ready.
 *
 *   node bench/http-sqlite.mjs <database file>
 */
import Database from "better-sqlite3"
import { createServer } from "node:http"

const db = new Database(process.argv[2] ?? ":memory:")
db.pragma("journal_mode = WAL")
db.pragma("synchronous = NORMAL")
db.exec("CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, sender TEXT NOT NULL, recipient TEXT NOT NULL, body TEXT NOT NULL, at INTEGER NOT NULL)")
db.exec("CREATE INDEX IF NOT EXISTS messages_recipient ON messages (recipient, id)")
const insert = db.prepare("INSERT INTO messages (sender, recipient, body, at) VALUES (?, ?, ?, ?)")
const poll = db.prepare("SELECT id, sender, body FROM messages WHERE recipient = ? AND id > ? ORDER BY id LIMIT 500")

const reply = (res, status, value) => {
  const text = JSON.stringify(value)
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) })
  res.end(text)
}

const server = createServer((req, res) => {
  if (req.method === "POST" && req.url === "/send") {
    const chunks = []
    req.on("data", (c) => chunks.push(c))
    req.on("end", () => {
      try {
        const { from, to, body } = JSON.parse(Buffer.concat(chunks).toString("utf8"))
        const { lastInsertRowid } = insert.run(String(from), String(to), String(body), Date.now())
        reply(res, 201, { id: Number(lastInsertRowid) })
      } catch (e) {
        reply(res, 400, { error: String(e) })
      }
    })
    return
  }
  if (req.method === "GET" && req.url?.startsWith("/poll?")) {
    const params = new URL(req.url, "http://x").searchParams
    return reply(res, 200, { messages: poll.all(params.get("peer") ?? "", Number(params.get("after") ?? 0)) })
  }
  reply(res, 404, { error: "not found" })
})
server.keepAliveTimeout = 5_000
server.listen(0, "127.0.0.1", () => console.log(`http-sqlite listening on ${server.address().port}`))
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => server.close(() => process.exit(0)))
